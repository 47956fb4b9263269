"""The CPU ray caster: silhouettes against closed-form projections, pose consistency, lighting, determinism."""

import math

import pytest
import torch

from multiview.builders.render import (
    SceneBatch,
    camera_pose,
    cameras_to_tensors,
    project,
    render,
    ring_cameras,
)

SIZE = 48
D, FOV = 4.0, 40.0


def _one(shape, centre, scale, cams, **kw):
    scene = SceneBatch.single(shapes=[shape], centres=[centre], scales=[scale], colours=[[0.8, 0.2, 0.2]], **kw)
    return render(scene, cameras_to_tensors([cams]), size=SIZE)


def _pixels_per_unit(depth: float) -> float:
    """Pixels spanned by one world unit, perpendicular to the view axis, at ``depth``."""
    return SIZE / 2 / (depth * math.tan(math.radians(FOV) / 2))


def _centroid(mask: torch.Tensor) -> torch.Tensor:
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return torch.stack([cols.float().mean(), rows.float().mean()])


def test_sphere_silhouette_matches_its_projected_disc():
    cam = camera_pose(0.0, 0.0, D, FOV, look_at=(0, 0.8, 0))  # the sphere rests on the ground: y = r
    out = _one("sphere", [0, 0.8, 0], 0.8, [cam])
    area = (out["object"][0, 0] == 0).sum().item()
    # a sphere of radius r at distance D subtends a cone of half-angle asin(r / D)
    radius_px = math.tan(math.asin(0.8 / D)) / math.tan(math.radians(FOV) / 2) * SIZE / 2
    assert area == pytest.approx(math.pi * radius_px**2, rel=0.06)
    assert torch.allclose(_centroid(out["object"][0, 0] == 0), torch.tensor([SIZE / 2 - 0.5] * 2), atol=0.3)


def test_cube_seen_face_on_is_a_square_of_the_front_face_width():
    out = _one("cube", [0, 0.6, 0], 0.6, [camera_pose(0.0, 0.0, D, FOV, look_at=(0, 0.6, 0))])
    mask = out["object"][0, 0] == 0
    cols = torch.nonzero(mask.any(0)).flatten()
    rows = torch.nonzero(mask.any(1)).flatten()
    expected = 2 * 0.6 * _pixels_per_unit(D - 0.6)  # the front face sits at z = +0.6, nearer the camera
    assert len(cols) == pytest.approx(expected, abs=1.5)
    assert len(rows) == pytest.approx(expected, abs=1.5)
    assert mask.sum() == pytest.approx(len(cols) * len(rows), rel=0.05)  # filled: a square, not a ring


def test_flat_torus_from_above_has_a_hole_and_a_ring():
    out = _one("torus", [0, 0.3, 0], 1.0, [camera_pose(0.0, 89.0, D, FOV, look_at=(0, 0.3, 0))])
    mask = out["object"][0, 0] == 0
    c = SIZE // 2
    ring_px = round(0.7 * _pixels_per_unit(D - 0.3))
    assert not mask[c - 1 : c + 1, c - 1 : c + 1].any()  # the hole in the middle
    assert mask[c, c + ring_px] and mask[c, c - ring_px - 1]


@pytest.mark.parametrize("shape", ["cylinder", "cone"])
def test_side_view_silhouettes_have_the_right_height_and_shape(shape):
    out = _one(shape, [0, 0.7, 0], 0.7, [camera_pose(0.0, 0.0, D, FOV, look_at=(0, 0.7, 0))])
    mask = out["object"][0, 0] == 0
    rows = torch.nonzero(mask.any(1)).flatten()
    # the cylinder's top and bottom rims and the cone's base rim are nearest at their front edge (depth D - r);
    # the cone's apex is on the axis (depth D)
    top_depth = D - 0.7 if shape == "cylinder" else D
    height = 0.7 * _pixels_per_unit(top_depth) + 0.7 * _pixels_per_unit(D - 0.7)
    assert len(rows) == pytest.approx(height, abs=1.5)
    widths = mask.sum(1)[rows]
    top, bottom = widths[: len(widths) // 4].float().mean().item(), widths[-len(widths) // 4 :].float().mean().item()
    if shape == "cylinder":
        assert top == pytest.approx(bottom, rel=0.15)
    else:  # the apex is up: narrow at the top, wide at the base
        assert top < 0.5 * bottom


def test_silhouette_moves_with_azimuth_where_the_pose_projects_it():
    centre = [1.0, 0.3, 0.0]
    cams = ring_cameras(6, elevation=20.0, distance=D, fov=FOV, azimuth_offset=10.0)
    out = _one("sphere", centre, 0.3, cams)
    centroids = []
    for k, cam in enumerate(cams):
        mask = out["object"][0, k] == 0
        assert mask.sum() > 10, f"camera {k} does not see the object"
        seen = _centroid(mask)
        expected = project(torch.tensor([centre]), cam, SIZE)[0]
        assert torch.allclose(seen, expected, atol=1.0), (k, seen, expected)
        centroids.append(seen)
    spread = torch.stack(centroids)[:, 0]
    assert spread.max() - spread.min() > SIZE / 4  # the off-centre object swings across the image


def test_same_camera_twice_gives_identical_images_and_other_cameras_differ():
    cam_a, cam_b = camera_pose(30.0, 25.0, D, FOV), camera_pose(120.0, 25.0, D, FOV)
    out = _one("cone", [0.3, 0.5, -0.2], 0.5, [cam_a, cam_b, cam_a])
    rgb = out["rgb"][0]
    assert torch.equal(rgb[0], rgb[2])
    assert not torch.equal(rgb[0], rgb[1])


def test_lit_side_is_brighter_and_shadows_darken_the_ground():
    cams = [camera_pose(0.0, 30.0, D, FOV)]
    light = (1.0, 1.0, 0.0)  # from +x, above
    kw = {"light_dir": light, "ambient": 0.2}
    lit = _one("sphere", [0, 0.6, 0], 0.6, cams, **kw)
    mask = lit["object"][0, 0] == 0
    grey = lit["rgb"][0, 0].float().mean(-1)
    cols = torch.nonzero(mask.any(0)).flatten()
    left, right = cols.min().item(), cols.max().item()
    third = (right - left) // 3
    right_mean = grey[:, right - third : right + 1][mask[:, right - third : right + 1]].mean()
    left_mean = grey[:, left : left + third + 1][mask[:, left : left + third + 1]].mean()
    assert right_mean > left_mean + 20
    scene = SceneBatch.single(shapes=["sphere"], centres=[[0, 0.6, 0]], scales=[0.6], colours=[[1, 1, 1]], **kw)
    with_shadow = render(scene, cameras_to_tensors([cams]), size=SIZE, shadows=True)["rgb"].float().sum()
    without = render(scene, cameras_to_tensors([cams]), size=SIZE, shadows=False)["rgb"].float().sum()
    assert with_shadow < without


def test_supersampling_keeps_the_image_size_and_smooths_edges():
    cams = cameras_to_tensors([[camera_pose(0.0, 10.0, D, FOV)]])
    scene = SceneBatch.single(shapes=["cube"], centres=[[0, 0.5, 0]], scales=[0.5], colours=[[1, 1, 1]], yaws_deg=[30])
    plain = render(scene, cams, size=SIZE)["rgb"]
    smooth = render(scene, cams, size=SIZE, supersample=2)["rgb"]
    assert smooth.shape == plain.shape == (1, 1, SIZE, SIZE, 3)
    n_levels = lambda img: len(torch.unique(img))  # noqa: E731 - anti-aliased edges add intermediate values
    assert n_levels(smooth) > n_levels(plain)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="fov must be in"):
        camera_pose(0.0, 0.0, D, 200.0)
    with pytest.raises(ValueError, match="got -1"):
        camera_pose(0.0, 0.0, -1, FOV)
    with pytest.raises(ValueError, match="'pyramid'"):
        SceneBatch.single(shapes=["pyramid"], centres=[[0, 0, 0]], scales=[1], colours=[[1, 1, 1]])
    cams = cameras_to_tensors([[camera_pose(0.0, 0.0, D, FOV)]])
    scene = SceneBatch.single(shapes=["sphere"], centres=[[0, 0, 0]], scales=[1], colours=[[1, 1, 1]])
    with pytest.raises(ValueError, match="size=0"):
        render(scene, cams, size=0)
