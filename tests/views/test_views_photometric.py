"""The seeded crop and colour primitives against torchvision's definitions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from multiview.views import photometric as P
from multiview.views.base import Uniforms


def _images(n: int = 4, side: int = 24) -> torch.Tensor:
    """Float images on the uint8 grid, with grey pixels and every kind of tie between channels."""
    x = torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(0))
    x[0, :, :4] = 0.5  # grey: hue undefined
    x[1, 0] = x[1, 1]  # R == G
    x[2, 2] = x[2, 0]  # R == B (the wrap-around of the hue circle)
    x[3, 1] = x[3, 2]  # G == B
    return (x * 255).round() / 255


@pytest.mark.parametrize("shift", [-0.5, -0.2, 0.0, 0.13, 0.5])
def test_hue_matches_torchvision(shift):
    x = _images()
    ours = P.adjust_hue(x.clone(), torch.full((4, 1, 1, 1), shift))
    ref = torch.stack([F.adjust_hue(v, shift) for v in x])
    torch.testing.assert_close(ours, ref, atol=2e-6, rtol=0)


def test_hue_takes_one_shift_per_view():
    x = _images()
    shifts = torch.tensor([-0.3, 0.1, 0.25, 0.0]).reshape(4, 1, 1, 1)
    ref = torch.stack([F.adjust_hue(v, float(s)) for v, s in zip(x, shifts.flatten())])
    torch.testing.assert_close(P.adjust_hue(x.clone(), shifts), ref, atol=2e-6, rtol=0)


@pytest.mark.parametrize(
    "ours, ref",
    [
        (P.adjust_brightness, F.adjust_brightness),
        (P.adjust_contrast, F.adjust_contrast),
        (P.adjust_saturation, F.adjust_saturation),
    ],
)
def test_blends_match_torchvision(ours, ref):
    x = _images()
    factors = [0.0, 0.6, 1.0, 1.4]
    got = ours(x.clone(), torch.tensor(factors).reshape(4, 1, 1, 1))
    want = torch.stack([ref(v, f) for v, f in zip(x, factors)])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_grayscale_matches_torchvision():
    x = _images()
    torch.testing.assert_close(P.grayscale(x), F.rgb_to_grayscale(x), atol=1e-6, rtol=0)


def test_resized_crop_equals_torchvision():
    img = torch.randint(0, 256, (3, 50, 60), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for box in [(3, 5, 40, 30), (0, 0, 50, 60), (10, 20, 7, 9)]:
        want = F.resized_crop(img, *box, [24, 24], InterpolationMode.BICUBIC, antialias=True)
        assert torch.equal(P.resized_crop(img, box, (24, 24)), want)


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    lo=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**31),
)
def test_crop_box_stays_inside_and_respects_scale(height, width, lo, seed):
    scale, ratio = (lo, 1.0), (0.7, 1.4)
    top, left, h, w = P.sample_crop_box(Uniforms(torch.Generator().manual_seed(seed)), height, width, scale, ratio)
    assert top >= 0 and top + h <= height and left >= 0 and left + w <= width and h > 0 and w > 0


def test_crop_box_distribution_follows_scale_and_ratio():
    u = Uniforms(torch.Generator().manual_seed(0))
    boxes = [P.sample_crop_box(u, 200, 200, (0.3, 1.0), (0.7, 1.4)) for _ in range(300)]
    areas = [h * w / 200**2 for _, _, h, w in boxes]
    ratios = [w / h for _, _, h, w in boxes]
    assert min(areas) >= 0.29 and max(areas) <= 1.0 and 0.5 < sum(areas) / len(areas) < 0.8
    assert min(ratios) >= 0.68 and max(ratios) <= 1.43
    assert len({(t, l) for t, l, _, _ in boxes}) > 100  # positions vary


def _plan(ops):
    return P.ColourPlan([(op, 1.0 + 0.1 * op) for op in ops])


@settings(max_examples=80, deadline=None)
@given(st.lists(st.permutations(range(4)).flatmap(lambda p: st.integers(0, 4).map(lambda n: p[:n])), max_size=5))
def test_merged_orders_keep_every_views_order(orders):
    plans = [_plan(o) for o in orders]
    merged = P.merge_orders(plans)
    for v, plan in enumerate(plans):
        assert [(op, f[v]) for op, f in merged if v in f] == plan.jitter
    if len(orders) == 2 and all(3 in o for o in orders):
        assert sum(op == 3 for op, _ in merged) == 1  # the costly hue rotation runs once for both views


def test_merged_and_grouped_jitter_agree_with_per_view_torchvision():
    x = _images(6)
    u = Uniforms(torch.Generator().manual_seed(3))
    recipe = P.Photometric(0.4, 0.4, 0.4, 0.2, jitter_p=1.0)
    plans = [P.sample_colour_plan(u, recipe) for _ in range(6)]
    ref_ops = {0: F.adjust_brightness, 1: F.adjust_contrast, 2: F.adjust_saturation, 3: F.adjust_hue}
    want = []
    for v, plan in zip(x, plans):
        for op, factor in plan.jitter:
            v = ref_ops[op](v, factor)
        want.append(v)
    want = torch.stack(want)
    torch.testing.assert_close(P.colour_jitter(x.clone(), plans), want, atol=5e-6, rtol=0)  # grouped (6 views)
    torch.testing.assert_close(P.colour_jitter(x[:2].clone(), plans[:2]), want[:2], atol=5e-6, rtol=0)  # merged


def test_colour_plan_factors_follow_colorjitter_ranges():
    u = Uniforms(torch.Generator().manual_seed(0))
    recipe = P.Photometric(0.4, 0.4, 0.4, 0.2, jitter_p=0.8, gray_p=0.25)
    plans = [P.sample_colour_plan(u, recipe) for _ in range(2000)]
    jittered = sum(bool(p.jitter) for p in plans) / len(plans)
    gray = sum(p.gray for p in plans) / len(plans)
    assert abs(jittered - 0.8) < 0.04 and abs(gray - 0.25) < 0.04
    for p in plans:
        for op, f in p.jitter:
            assert (-0.2 <= f <= 0.2) if op == 3 else (0.6 <= f <= 1.4)
    orders = {tuple(op for op, _ in p.jitter) for p in plans if p.jitter}
    assert len(orders) == math.factorial(4)  # every order of the four ops occurs
