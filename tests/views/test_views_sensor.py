"""The tactile / sensor generator: windows, warps, dropout, layouts, input checks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import multiview.views as mv
from multiview.views.sensor import time_warp


def _signal(c: int = 6, t: int = 100) -> torch.Tensor:
    return torch.randn(c, t, generator=torch.Generator().manual_seed(0))


def test_windows_shapes_and_modality():
    gen = mv.create("tactile", n_views=3, window=40)
    out = gen({"__key__": "s", "tactile": _signal()})
    assert [tuple(out[n].shape) for n in gen.view_names] == [(6, 40)] * 3
    assert gen.modality_of("view2") == "sensor" and "sensor" in mv.names()


def test_eval_is_the_centre_window_untouched():
    x = _signal()
    out = mv.create("tactile", window=40, train=False)({"tactile": x})
    assert torch.equal(out["view0"], x[:, 30:70]) and torch.equal(out["view1"], x[:, 30:70])


def test_without_augmentation_a_view_is_a_window_of_the_input():
    x = _signal()
    gen = mv.create("tactile", window=25, jitter=0, scale=0, magnitude_warp=0, time_warp=0, channel_dropout=0)
    out = gen({"tactile": x}, generator=torch.Generator().manual_seed(3))
    start = out["__meta__"]["view0"]["start"]
    assert torch.equal(out["view0"], x[:, start : start + 25])


def test_augmentations_change_the_signal_moderately():
    x = _signal(6, 200)
    gen = mv.create("tactile", window=None, channel_dropout=0.0)
    v = gen({"tactile": x}, generator=torch.Generator().manual_seed(0))["view0"]
    rel = (v - x).norm() / x.norm()
    assert 0.01 < rel < 1.5


def test_channel_dropout_zeroes_channels_but_keeps_one():
    gen = mv.create("tactile", n_views=1, channel_dropout=1.0, jitter=0, scale=0, magnitude_warp=0, time_warp=0)
    v = gen({"tactile": _signal() + 5}, generator=torch.Generator().manual_seed(0))["view0"]
    assert (v.abs().sum(dim=1) > 0).sum() == 1
    half = mv.create("tactile", n_views=1, channel_dropout=0.5, jitter=0, scale=0, magnitude_warp=0, time_warp=0)
    kept = [
        int(
            (
                half({"tactile": _signal() + 5}, generator=torch.Generator().manual_seed(s))["view0"].abs().sum(1) > 0
            ).sum()
        )
        for s in range(40)
    ]
    assert 2 < sum(kept) / len(kept) < 4.5


def test_time_warp_is_monotone_and_keeps_the_ends():
    ramp = torch.linspace(0, 1, 50).unsqueeze(0)
    warped = time_warp(ramp, 0.5, 4, torch.Generator().manual_seed(0))
    assert torch.all(warped[0, 1:] >= warped[0, :-1] - 1e-6)
    torch.testing.assert_close(warped[0, [0, -1]], torch.tensor([0.0, 1.0]))
    assert not torch.allclose(warped, ramp, atol=1e-3)


def test_taxel_grids_flatten_or_stay_image_like():
    grid = torch.randn(4, 5, 30)
    flat = mv.create("tactile", window=20)({"tactile": grid})["view0"]
    image = mv.create("tactile", window=20, layout="image")({"tactile": grid})["view0"]
    assert flat.shape == (20, 20) and image.shape == (20, 4, 5)
    seq_image = mv.create("tactile", layout="image")({"tactile": _signal()})["view0"]
    assert seq_image.shape == (1, 6, 100)
    ev = mv.create("tactile", layout="image", train=False)({"tactile": grid})["view0"]
    assert torch.equal(ev, grid.permute(2, 0, 1))


def test_short_sequences_are_zero_padded():
    v = mv.create("tactile", window=30, train=False)({"tactile": torch.ones(2, 10)})["view0"]
    assert v.shape == (2, 30) and v[:, :10].eq(1).all() and v[:, 10:].eq(0).all()


@pytest.mark.parametrize(
    "value, match",
    [
        (torch.zeros(5), r"expected shape \[C, T\] or \[H, W, T\].*\(5,\)"),
        (torch.zeros(2, 3, 4, 5), r"got \(2, 3, 4, 5\)"),
        (torch.zeros(2, 5, dtype=torch.bool), "real-valued array, got dtype torch.bool"),
        ([1, 2, 3], "got list"),
    ],
)
def test_bad_arrays_are_refused(value, match):
    with pytest.raises(ValueError, match=match):
        mv.create("tactile")({"__key__": "t1", "tactile": value})


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="layout must be"):
        mv.create("tactile", layout="grid")
    with pytest.raises(ValueError, match="channel_dropout must be a probability"):
        mv.create("tactile", channel_dropout=2)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.one_of(
        st.tuples(st.integers(1, 8), st.integers(1, 80)),
        st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 40)),
    ),
    window=st.one_of(st.none(), st.integers(1, 50)),
    seed=st.integers(0, 1000),
)
def test_any_shape_gives_finite_views_of_the_window(shape, window, seed):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    out = mv.create("tactile", window=window)({"tactile": x}, generator=torch.Generator().manual_seed(seed))
    channels = shape[0] if len(shape) == 2 else shape[0] * shape[1]
    assert out["view0"].shape == (channels, window or shape[-1]) and torch.isfinite(out["view0"]).all()
