"""Image generators: shapes, ranges, shared randomness, colour-split co-registration, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import multiview.views as mv
from multiview.views.image import lab_to_rgb, rgb_to_lab, rgb_to_ycbcr, ycbcr_to_rgb
from multiview.views.photometric import IMAGENET_MEAN, IMAGENET_STD, resized_crop


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_amdim_shapes_dtypes_and_normalised_range(sample):
    gen = mv.create("amdim", size=32, n_views=3)
    out = gen(sample, generator=_g(0))
    assert gen.view_names == ("view0", "view1", "view2") and set(out) == {*gen.view_names, "__meta__"}
    lo = min((0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
    hi = max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
    for name in gen.view_names:
        v = out[name]
        assert v.shape == (3, 32, 32) and v.dtype == torch.float32
        assert lo - 1e-5 <= v.min() and v.max() <= hi + 1e-5
        assert gen.modality_of(name) == "image"


def test_amdim_flip_is_shared_by_all_views(sample):
    gen = mv.create("amdim", size=16, n_views=3)
    flips = []
    for seed in range(40):
        meta = gen(sample, generator=_g(seed))["__meta__"]
        states = {meta[v]["flip"] for v in gen.view_names}
        assert len(states) == 1
        flips.append(states.pop())
    assert 5 < sum(flips) < 35  # both states occur


def test_simclr_flips_are_per_view(sample):
    gen = mv.create("simclr", size=16)
    metas = [gen(sample, generator=_g(s))["__meta__"] for s in range(40)]
    assert any(m["view0"]["flip"] != m["view1"]["flip"] for m in metas)


def test_amdim_views_follow_the_drawn_crop_box_without_colour(sample):
    # With colour off, a view is exactly the flipped, resized crop of its box: the metadata is truthful.
    gen = mv.create("amdim", size=24, jitter_p=0.0, gray_p=0.0, normalize=False)
    for seed in range(5):
        out = gen(sample, generator=_g(seed))
        for name in gen.view_names:
            meta = out["__meta__"][name]
            want = resized_crop(sample["image"], meta["box"], (24, 24))
            want = want.flip(-1) if meta["flip"] else want
            assert out[name].dtype == torch.uint8 and torch.equal(out[name], want)


def test_amdim_box_respects_scale_and_ratio(sample):
    gen = mv.create("amdim", size=16)
    h, w = sample["image"].shape[1:]
    for seed in range(30):
        for meta in gen(sample, generator=_g(seed))["__meta__"].values():
            _, _, bh, bw = meta["box"]
            assert 0.28 <= bh * bw / (h * w) <= 1.0 and 0.6 <= bw / bh <= 1.5


def test_amdim_translate_mode_keeps_size_and_moves_at_most_4_px():
    img = torch.arange(32 * 32, dtype=torch.int64).reshape(1, 32, 32).expand(3, -1, -1).remainder(251).to(torch.uint8)
    gen = mv.create("amdim", size=None, crop="translate", normalize=False, jitter_p=0.0, gray_p=0.0)
    moved = 0
    for seed in range(30):
        out = gen({"__key__": "c", "image": img}, generator=_g(seed))
        for name in gen.view_names:
            top, left, h, w = out["__meta__"][name]["box"]
            assert (h, w) == (32, 32) and 0 <= top <= 8 and 0 <= left <= 8
            moved += (top, left) != (4, 4)
            assert out[name].shape == (3, 32, 32)
    assert 30 < moved < 60  # p = 0.8 of 60 views, roughly
    ev = gen.eval_transform()({"image": img})
    assert torch.equal(ev["view0"], img)


def test_grayscale_views_have_equal_channels(sample):
    gen = mv.create("amdim", size=16, gray_p=1.0, jitter_p=0.0, normalize=False)
    v = gen(sample, generator=_g(0))["view0"].int()
    assert torch.all((v[0] - v[1]).abs() <= 1) and torch.all((v[1] - v[2]).abs() <= 1)


def test_multicrop_names_sizes_and_dino_defaults(sample):
    gen = mv.create("multicrop", global_size=24, local_size=12, n_global=2, n_local=3)
    out = gen(sample, generator=_g(0))
    assert gen.view_names == ("global0", "global1", "local0", "local1", "local2")
    assert [tuple(out[n].shape) for n in gen.view_names] == [(3, 24, 24)] * 2 + [(3, 12, 12)] * 3
    assert gen.specs[0].colour.blur_p == 1.0 and gen.specs[1].colour.solarize_p == 0.2


def test_simclr_and_multicrop_defaults_follow_lightly():
    lightly = pytest.importorskip("lightly.transforms")
    import inspect

    simclr = inspect.signature(lightly.SimCLRTransform.__init__).parameters
    ours = mv.create("simclr")
    assert ours.spec.size == simclr["input_size"].default
    assert ours.spec.scale == (simclr["min_scale"].default, 1.0)
    assert ours.spec.colour.gray_p == simclr["random_gray_scale"].default
    assert ours.spec.colour.blur_p == simclr["gaussian_blur"].default
    assert ours.spec.colour.brightness == pytest.approx(simclr["cj_bright"].default * simclr["cj_strength"].default)
    dino = inspect.signature(lightly.DINOTransform.__init__).parameters
    mc = mv.create("multicrop")
    assert (mc.n_local, mc.specs[0].size, mc.specs[-1].size) == (
        dino["n_local_views"].default,
        dino["global_crop_size"].default,
        dino["local_crop_size"].default,
    )
    strength = dino["cj_strength"].default
    assert mc.specs[0].colour.saturation == pytest.approx(dino["cj_sat"].default * strength)


def test_pil_and_numpy_inputs_give_the_tensor_views(rgb):
    gen = mv.create("amdim", size=16)
    hwc = rgb.permute(1, 2, 0).numpy()
    want = gen(rgb, generator=_g(0))["view0"]
    assert torch.equal(gen(Image.fromarray(hwc), generator=_g(0))["view0"], want)
    assert torch.equal(gen({"image": np.ascontiguousarray(hwc)}, generator=_g(0))["view0"], want)


def test_grey_images_keep_one_channel_or_expand_to_three(rgb):
    grey = rgb[:1]
    assert mv.create("amdim", size=16)(grey)["view0"].shape == (1, 16, 16)
    assert mv.create("amdim", size=16, channels=3)(grey)["view0"].shape == (3, 16, 16)


@pytest.mark.parametrize(
    "value, match",
    [
        (torch.zeros(4, 20, 20, dtype=torch.uint8), "expected 1 or 3 channels, got 4"),
        (torch.zeros(3, 20, 20), "expected dtype torch.uint8, got torch.float32"),
        (torch.zeros(1, 3, 20, 20, dtype=torch.uint8), "expected rank 3"),
        ("not an image", "got str"),
    ],
)
def test_bad_images_are_refused_with_what_was_seen(value, match):
    with pytest.raises(ValueError, match=match):
        mv.create("amdim", size=16)({"__key__": "bad-7", "image": value})


def test_missing_field_names_the_sample_and_the_fields(rgb):
    with pytest.raises(ValueError, match=r"sample 'k9' has no field 'image'.*\['rgb'\]"):
        mv.create("amdim", size=16)({"__key__": "k9", "rgb": rgb})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 0}, "size must be > 0, got 0"),
        ({"n_views": 1.5}, "n_views must be an int"),
        ({"crop": "zoom"}, "crop must be 'resized' or 'translate', got 'zoom'"),
        ({"scale": (0.5, 0.2)}, "scale must satisfy"),
        ({"jitter_p": 1.5}, "jitter_p must be a probability"),
        ({"channels": 2}, "channels must be None, 1 or 3, got 2"),
        ({"mean": (0.5, 0.5)}, "mean has 2 values, expected 3"),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mv.create("amdim", **{"size": 16, **kwargs, "channels": kwargs.get("channels", 3)})


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(4, 70),
    width=st.integers(4, 70),
    channels=st.sampled_from([1, 3]),
    size=st.integers(4, 40),
    seed=st.integers(0, 1000),
)
def test_any_input_shape_gives_the_requested_views(height, width, channels, size, seed):
    img = torch.randint(0, 256, (channels, height, width), dtype=torch.uint8, generator=_g(seed))
    for gen in (mv.create("amdim", size=size), mv.create("simclr", size=size)):
        out = gen(img, generator=_g(seed))
        for name in gen.view_names:
            assert out[name].shape == (channels, size, size) and torch.isfinite(out[name]).all()


# -- colorsplit ---------------------------------------------------------------------------------------------
def test_lab_and_ycbcr_round_trip_and_reference_values():
    x = torch.rand(2, 3, 8, 8, generator=_g(0))
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(x)), x, atol=2e-4, rtol=0)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-5, rtol=0)
    white, red = torch.ones(3, 1, 1), torch.tensor([1.0, 0, 0]).reshape(3, 1, 1)
    torch.testing.assert_close(rgb_to_lab(white).flatten(), torch.tensor([100.0, 0.0, 0.0]), atol=0.05, rtol=0)
    # sRGB red in CIE Lab (D65): L 53.24, a 80.09, b 67.20.
    torch.testing.assert_close(rgb_to_lab(red).flatten(), torch.tensor([53.24, 80.09, 67.20]), atol=0.05, rtol=0)
    torch.testing.assert_close(rgb_to_ycbcr(red).flatten(), torch.tensor([76.245, 84.972, 255.5]), atol=0.01, rtol=0)


@pytest.mark.parametrize("space, names", [("lab", ("L", "ab")), ("ycbcr", ("Y", "CbCr"))])
def test_colorsplit_views_are_co_registered(space, names, sample):
    gen = mv.create("colorsplit", size=24, space=space, normalize=False)
    to_rgb = lab_to_rgb if space == "lab" else ycbcr_to_rgb
    for seed in range(4):
        out = gen(sample, generator=_g(seed))
        first, second = (out[n] for n in names)
        assert first.shape == (1, 24, 24) and second.shape == (2, 24, 24)
        meta = out["__meta__"]
        assert meta[names[0]]["box"] == meta[names[1]]["box"]
        assert meta[names[0]]["flip"] == meta[names[1]]["flip"]
        # Put the two views back together: they rebuild the RGB crop of the shared box, pixel for pixel.
        crop = resized_crop(sample["image"], meta[names[0]]["box"], (24, 24)).float() / 255
        crop = crop.flip(-1) if meta[names[0]]["flip"] else crop
        torch.testing.assert_close(to_rgb(torch.cat([first, second])), crop, atol=1e-3, rtol=0)


def test_colorsplit_normalised_range_and_names(sample):
    out = mv.create("colorsplit", size=16)(sample)
    assert out["L"].abs().max() <= 1.0 + 1e-5 and out["ab"].abs().max() <= 1.0
    with pytest.raises(ValueError, match="expected 3 channels, got 1"):
        mv.create("colorsplit", size=16)(sample["image"][:1])
    assert mv.create("colorsplit", size=16, names=("a", "b")).view_names == ("a", "b")
