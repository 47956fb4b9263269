"""The cameras generator: random / adjacent / fixed selection, poses, per-view augmentation, errors."""

from __future__ import annotations

import pytest
import torch

import multiview.views as mv
from multiview.views.cameras import angles_deg, parse_poses


def _ring(k: int = 8, with_poses: bool = True, form: str = "angles") -> dict:
    """K cameras on a ring (45 degrees apart at k = 8); camera i's image is filled with the value 10 * i."""
    sample = {"__key__": "scene-3"}
    for i in range(k):
        sample[f"cam{i}"] = torch.full((3, 12, 12), 10 * i, dtype=torch.uint8)
    if with_poses:
        if form == "angles":
            sample["cams"] = [{"azimuth": 360 / k * i, "elevation": 0.0, "fov": 40} for i in range(k)]
        else:
            ring = torch.deg2rad(torch.arange(k) * 360.0 / k)
            sample["cams"] = {
                "cameras": [
                    {"position": [3 * float(c), 3 * float(s), 0.0]} for c, s in zip(torch.cos(ring), torch.sin(ring))
                ]
            }
    return sample


def _cameras(out: dict) -> list[int]:
    return [m["camera"] for m in out["__meta__"].values()]


@pytest.mark.parametrize("form", ["angles", "positions"])
def test_adjacent_views_lie_within_max_angle(form):
    sample = _ring(8, form=form)
    gen = mv.create("cameras", n_views=3, mode="adjacent", max_angle=50.0, normalize=False)
    directions = parse_poses(sample["cams"], 8, "cam", "test")
    seen = set()
    for seed in range(30):
        out = gen(sample, generator=torch.Generator().manual_seed(seed))
        cams = _cameras(out)
        assert len(set(cams)) == 3
        ang = angles_deg(directions)
        assert all(ang[cams[0], c] <= 50.0 + 1e-4 for c in cams[1:])  # anchor and its neighbours
        for name, cam in zip(gen.view_names, cams):
            assert torch.equal(out[name], sample[f"cam{cam}"])  # the view is that camera's image
            torch.testing.assert_close(out["__meta__"][name]["direction"], directions[cam])
        seen.add(cams[0])
    assert len(seen) >= 6  # every camera can be the anchor


def test_adjacent_without_poses_uses_ring_index_steps():
    gen = mv.create("cameras", n_views=2, mode="adjacent", max_step=1)
    for seed in range(20):
        a, b = _cameras(gen(_ring(6, with_poses=False), generator=torch.Generator().manual_seed(seed)))
        assert min(abs(a - b), 6 - abs(a - b)) == 1
    no_ring = mv.create("cameras", n_views=3, mode="adjacent", max_step=1, ring=False)
    for seed in range(10):
        cams = _cameras(no_ring(_ring(6, with_poses=False), generator=torch.Generator().manual_seed(seed)))
        assert cams[0] not in (0, 5) and all(abs(c - cams[0]) == 1 for c in cams[1:])


def test_random_mode_draws_distinct_cameras_and_covers_all():
    gen = mv.create("cameras", n_views=2)
    seen = set()
    for seed in range(40):
        cams = _cameras(gen(_ring(5, with_poses=False), generator=torch.Generator().manual_seed(seed)))
        assert cams[0] != cams[1]
        seen.update(cams)
        direction = gen(_ring(5, with_poses=False))["__meta__"]["view0"]["direction"]
    assert seen == set(range(5)) and torch.isnan(direction).all()


def test_fixed_pairs_and_eval_mode():
    pairs = [(0, 4), (1, 5)]
    gen = mv.create("cameras", n_views=2, mode="fixed", pairs=pairs)
    got = {tuple(_cameras(gen(_ring(), generator=torch.Generator().manual_seed(s)))) for s in range(20)}
    assert got == set(pairs)
    ev = gen.eval_transform()
    assert all(_cameras(ev(_ring(), generator=torch.Generator().manual_seed(s))) == [0, 4] for s in range(3))
    adj = mv.create("cameras", n_views=3, mode="adjacent", max_angle=50.0, train=False)
    assert _cameras(adj(_ring())) == [0, 1, 7]  # the anchor 0 and its nearest neighbours, deterministic


def test_per_view_augmentation_and_resize():
    gen = mv.create("cameras", n_views=2, augment={"name": "amdim", "size": 8})
    out = gen(_ring())
    assert out["view0"].shape == (3, 8, 8) and out["view0"].dtype == torch.float32
    assert gen.augment.n_views == 1
    plain = mv.create("cameras", n_views=2, size=6)(_ring())
    assert plain["view1"].shape == (3, 6, 6)


@pytest.mark.parametrize(
    "kwargs, sample, match",
    [
        ({"mode": "fixed", "pairs": [(0, 9)]}, _ring(4), "camera index 9 out of range; the sample has 4 cameras"),
        ({"n_views": 5}, _ring(4), "4 cameras, expected at least n_views=5"),
        ({"n_cameras": 6}, _ring(4), r"missing camera fields \['cam4', 'cam5'\]"),
        ({"mode": "adjacent", "max_angle": 10.0}, _ring(4), "no camera has 1 neighbours within max_angle=10.0"),
        ({}, {"__key__": "s", "image": torch.zeros(3, 4, 4, dtype=torch.uint8)}, "no camera field cam0"),
        ({}, {**_ring(4, with_poses=False), "cams": [{"azimuth": 0}] * 4}, "expected {'azimuth', 'elevation'}"),
        (
            {},
            {**_ring(4, with_poses=False), "cams": [{"azimuth": 0, "elevation": 0}] * 3},
            "poses for 4 cameras, got 3",
        ),
        ({}, {**_ring(4, with_poses=False), "cam1": torch.zeros(3, 4, 4)}, "field 'cam1'.*torch.uint8"),
    ],
)
def test_bad_samples_are_refused(kwargs, sample, match):
    with pytest.raises(ValueError, match=match):
        mv.create("cameras", **kwargs)(sample)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="needs pairs"):
        mv.create("cameras", mode="fixed")
    with pytest.raises(ValueError, match="tuples of 2 camera indices"):
        mv.create("cameras", mode="fixed", pairs=[(0, 1, 2)])
    with pytest.raises(ValueError, match="mode must be one of"):
        mv.create("cameras", mode="nearest")
