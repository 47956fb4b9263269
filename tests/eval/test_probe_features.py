"""Probe features read from the trunk's intermediate maps (``trunk_maps``, preset ``maps7``): the columns the peer
benchmark's headline probe uses, reproducible from any checkpoint with ``multiview eval linear``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from multiview.encoders import create as create_encoder
from multiview.eval.bundle import MAPS7_GRID, EvalBundle, parse_grid


def amdim_bundle() -> EvalBundle:
    torch.manual_seed(0)
    encoder = create_encoder("amdim", model_name="amdim_small", in_chans=1, n_rkhs=16,
                             trunk_kwargs={"ndf": 4, "embed_dim": 24, "n_depth": 1}).eval()  # fmt: skip
    return EvalBundle(encoders={"image": encoder}, transforms={"image": lambda s: s["image"]})


def test_maps7_is_r7_whole_r5_two_by_two_and_r1_in_channel_major_order():
    bundle = amdim_bundle()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        out = bundle.with_probe_features("trunk_maps", MAPS7_GRID).encoders["image"](x).global_
        r7, r5, r1 = bundle.encoders["image"].trunk.forward_intermediates(x, intermediates_only=True)
    c7, c5 = r7.shape[1], r5.shape[1]
    assert MAPS7_GRID == [7, 2, 1] and out.shape == (3, 49 * c7 + 4 * c5 + r1.shape[1])
    torch.testing.assert_close(out[:, : 49 * c7], r7.flatten(1))
    torch.testing.assert_close(out[:, 49 * c7 : 49 * c7 + 4 * c5], F.adaptive_avg_pool2d(r5, 2).flatten(1))
    torch.testing.assert_close(out[:, 49 * c7 + 4 * c5 :], r1.mean((2, 3)))
    one = bundle.with_probe_features("trunk_maps", 1).encoders["image"](x).global_
    assert one.shape == (3, c7 + c5 + r1.shape[1])  # one grid for every map


def test_trunk_maps_errors_name_the_field_and_the_fix():
    bundle = amdim_bundle()
    with pytest.raises(ValueError, match="grid \\[7, 2\\] gives 2 sizes for the trunk's 3 maps"):
        bundle.with_probe_features("trunk_maps", [7, 2]).encoders["image"](torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="per-map: trunk_maps"):
        bundle.with_probe_features("maps", [7, 2, 1])
    mlp = EvalBundle(encoders={"v": torch.nn.Linear(3, 2)}, transforms={"v": lambda s: s})
    with pytest.raises(ValueError, match="field 'v': its encoder .*no trunk with forward_intermediates"):
        mlp.with_probe_features("trunk_maps", 2)
    assert parse_grid("7,2,1") == [7, 2, 1] and parse_grid("3") == 3
    with pytest.raises(ValueError, match="expected an int or ints separated by commas"):
        parse_grid("7x7")
