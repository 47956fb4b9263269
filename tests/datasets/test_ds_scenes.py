"""Scene sampling and the scenes builder: fields, labels, poses, batch independence, shards end to end."""

import math

import numpy as np
import pytest
import torch

from multiview.builders import scenes
from multiview.builders.render import SHAPES, project

CONFIG = scenes.ScenesConfig(n_cameras=3, size=32)


def _samples(n, split="train", seed=0, config=CONFIG, batch_size=8, start=0):
    return list(scenes.iter_scene_samples(n, split, seed, config, batch_size, start))


def test_sample_fields_labels_and_camera_poses():
    samples = _samples(12)
    for s in samples:
        assert sorted(s) == [
            "__key__",
            "cam0.png",
            "cam1.png",
            "cam2.png",
            "cams.json",
            "colour.cls",
            "label.cls",
            "meta.json",
        ]
        assert all(s[f"cam{k}.png"].shape == (32, 32, 3) and s[f"cam{k}.png"].dtype == np.uint8 for k in range(3))
        main = s["meta.json"]["main"]
        assert 0 <= s["label.cls"] < len(SHAPES) and SHAPES[s["label.cls"]] == main["shape"]
        assert 0 <= s["colour.cls"] < len(scenes.COLOURS) and list(scenes.COLOURS)[s["colour.cls"]] == main["colour"]
        cams = s["cams.json"]
        assert len(cams) == 3
        for cam in cams:
            assert {"azimuth", "elevation", "distance", "position", "look_at", "fov"} <= set(cam)
            offset = np.subtract(cam["position"], cam["look_at"])
            assert np.linalg.norm(offset) == pytest.approx(CONFIG.distance)
            assert math.degrees(math.asin(offset[1] / CONFIG.distance)) == pytest.approx(cam["elevation"])
            assert math.degrees(math.atan2(offset[0], offset[2])) % 360 == pytest.approx(cam["azimuth"], abs=1e-6)
        gaps = np.diff(sorted(c["azimuth"] for c in cams))
        assert np.allclose(gaps, 120.0)  # a ring of 3 evenly spaced cameras
    labels = {s["label.cls"] for s in samples}
    assert len(labels) >= 3  # labels are drawn, not constant


def test_main_object_is_seen_by_every_camera_from_a_different_viewpoint():
    config = scenes.ScenesConfig(n_cameras=4, size=32, max_distractors=0)
    descs = [scenes.sample_scene(scenes.scene_rng(0, "train", i), config) for i in range(6)]
    out = scenes.render_scenes(descs, config)
    for s, desc in enumerate(descs):
        centre = torch.tensor([desc["objects"][0]["position"]])
        for k, cam in enumerate(desc["cameras"]):
            mask = out["object"][s, k] == 0
            assert mask.sum() > 4, f"scene {s} camera {k}: main object not visible"
            col, row = project(centre, cam, config.size)[0].round().long().tolist()
            near = mask[max(row - 2, 0) : row + 3, max(col - 2, 0) : col + 3]
            assert near.any(), f"scene {s} camera {k}: object not where its pose projects it"
        assert len({out["rgb"][s, k].numpy().tobytes() for k in range(4)}) == 4  # every view differs


def test_a_scene_does_not_depend_on_its_batch_and_splits_differ():
    alone = _samples(1, start=5, batch_size=1)[0]
    batched = _samples(8, batch_size=8)[5]
    assert alone["__key__"] == batched["__key__"] == "scene000005"
    for k in range(3):
        assert np.array_equal(alone[f"cam{k}.png"], batched[f"cam{k}.png"])
    assert alone["meta.json"] == batched["meta.json"]
    test = _samples(1, split="test", start=5, batch_size=1)[0]
    assert test["meta.json"]["objects"] != alone["meta.json"]["objects"]
    reseeded = _samples(1, seed=1, start=5, batch_size=1)[0]
    assert reseeded["meta.json"]["objects"] != alone["meta.json"]["objects"]


def test_sphere_layout_draws_elevations_in_range():
    config = scenes.ScenesConfig(n_cameras=5, size=16, layout="sphere", elevation_range=(15.0, 50.0))
    cams = [c for i in range(10) for c in scenes.sample_scene(scenes.scene_rng(0, "train", i), config)["cameras"]]
    elevations = np.array([c["elevation"] for c in cams])
    assert elevations.min() >= 15.0 and elevations.max() <= 50.0 and elevations.std() > 3.0


def test_config_validation_names_the_value():
    with pytest.raises(ValueError, match="'cube'"):
        scenes.ScenesConfig(layout="cube")
    with pytest.raises(ValueError, match="got 0"):
        scenes.ScenesConfig(n_cameras=0)
    with pytest.raises(ValueError, match="'validation'"):
        scenes.scene_rng(0, "validation", 0)


def test_build_writes_camera_shards_that_read_back(tmp_path):
    import multiview.data as data

    manifest = scenes.build(tmp_path, n_train=6, n_test=3, config=CONFIG, batch_size=4)
    assert manifest["splits"]["train"]["count"] == 6 and manifest["splits"]["test"]["count"] == 3
    assert manifest["fields"]["cam0.png"]["modality"] == "camera"
    assert manifest["extra"]["shapes"] == list(SHAPES)
    read = list(data.iter_samples(tmp_path, "test"))
    expected = _samples(3, split="test")
    for got, want in zip(read, expected):
        assert got["__key__"] == want["__key__"]
        assert got["cam1"].shape == (3, 32, 32)
        assert torch.equal(got["cam1"], torch.from_numpy(want["cam1.png"]).permute(2, 0, 1))
        assert got["cams"] == want["cams.json"] and got["label"] == want["label.cls"]


# ------------------------------------------------------------------------------------------------ masks

MASKED = scenes.ScenesConfig(n_cameras=3, size=32, masks=True)


def test_masks_leave_every_other_field_as_it_was():
    plain, masked = _samples(6), _samples(6, config=MASKED)
    for a, b in zip(plain, masked):
        assert sorted(b) == sorted([*a, "cam0_mask.png", "cam1_mask.png", "cam2_mask.png"])
        for field, value in a.items():
            same = np.array_equal(value, b[field]) if isinstance(value, np.ndarray) else value == b[field]
            assert same, field
        for k in range(3):
            mask = b[f"cam{k}_mask.png"]
            assert mask.shape == (32, 32) and mask.dtype == np.uint8  # the camera image's size
            n_objects = b["meta.json"]["n_objects"]
            assert set(np.unique(mask).tolist()) <= set(range(n_objects + 1))  # 0, the main object 1, distractors
            assert (mask == 1).any()  # the main object is always in view


def _without_main_object(desc: dict) -> dict:
    """The same scene with the main object's slot emptied (the renderer skips slots with shape -1)."""
    gone = {**desc["objects"][0], "shape_id": -1, "position": [0.0, -100.0, 0.0]}
    return {**desc, "objects": [gone, *desc["objects"][1:]]}


def test_mask_is_one_exactly_where_the_main_object_changes_the_image():
    config = scenes.ScenesConfig(n_cameras=3, size=32, max_distractors=2, shadows=False, masks=True)
    descs = [scenes.sample_scene(scenes.scene_rng(0, "test", i), config) for i in range(6)]
    full = scenes.render_scenes(descs, config)
    empty = scenes.render_scenes([_without_main_object(d) for d in descs], config)
    changed = (full["rgb"] != empty["rgb"]).any(-1)  # [S, K, H, W]; no shadows: only where it is seen
    assert torch.equal(full["mask"] == 1, changed)
    assert torch.equal(full["mask"], (full["object"] + 1).to(torch.uint8))  # no supersampling: the pixel centre
    distractors = [len(d["objects"]) - 1 for d in descs]
    assert max(distractors) > 0 and (full["mask"] >= 2).any()  # the scenes drawn here do hold distractors
    for s, n in enumerate(distractors):
        assert int(full["mask"][s].max()) <= 1 + n


def test_supersampled_mask_is_the_majority_of_the_sub_pixels():
    config = scenes.ScenesConfig(n_cameras=2, size=16, supersample=2, masks=True)
    fine = scenes.ScenesConfig(n_cameras=2, size=32, supersample=1, masks=True)
    descs = [scenes.sample_scene(scenes.scene_rng(0, "train", i), config) for i in range(4)]
    coarse = scenes.render_scenes(descs, config)["mask"]
    # the same rays at full resolution: render(size=16, supersample=2) traces the 32 x 32 pixel centres
    sub = scenes.render_scenes(descs, fine)["mask"].numpy()
    expected = np.zeros(coarse.shape, dtype=np.uint8)
    for index in np.ndindex(*coarse.shape):
        s, k, r, c = index
        votes = np.bincount(sub[s, k, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2].ravel(), minlength=8)
        expected[index] = np.argmax(votes)  # the first of equal counts: the lower label
    assert np.array_equal(coarse.numpy(), expected)
    assert (coarse == 1).any()


def test_main_object_area_in_the_mask_shrinks_as_the_camera_moves_away():
    near = scenes.ScenesConfig(n_cameras=2, size=48, max_distractors=0, masks=True, distance=4.0)
    far = scenes.ScenesConfig(n_cameras=2, size=48, max_distractors=0, masks=True, distance=8.0)
    a = _samples(4, config=near)
    b = _samples(4, config=far)
    for x, y in zip(a, b):
        assert x["meta.json"]["objects"] == y["meta.json"]["objects"]  # the distance draws nothing: same scene
        for k in range(2):
            area_near = (x[f"cam{k}_mask.png"] == 1).sum()
            area_far = (y[f"cam{k}_mask.png"] == 1).sum()
            assert area_far < 0.45 * area_near  # about (4 / 8)^2 of it, perspective aside


def test_build_with_masks_records_them_and_they_read_back(tmp_path):
    import multiview.data as data

    manifest = scenes.build(tmp_path, n_train=4, n_test=2, config=MASKED, batch_size=4)
    assert manifest["builder_args"]["masks"] is True and "0 ground and sky" in manifest["extra"]["mask"]
    entry = manifest["fields"]["cam2_mask.png"]
    assert entry["modality"] == "mask" and entry["shape"] == [1, 32, 32] and entry["dtype"] == "uint8"
    assert sum(info["modality"] == "camera" for info in manifest["fields"].values()) == 3  # masks are not cameras
    read = list(data.iter_samples(tmp_path, "test"))
    for got, want in zip(read, _samples(2, split="test", config=MASKED)):
        assert torch.equal(got["cam0_mask"][0], torch.from_numpy(want["cam0_mask.png"]))


def test_vocabulary_describes_masks_only_when_they_are_written():
    assert "mask" not in scenes.vocabulary(CONFIG) and scenes.vocabulary(CONFIG)["config"]["masks"] is False
    assert "1 the main object" in scenes.vocabulary(MASKED)["mask"]


def test_builder_command_line_takes_masks(tmp_path):
    import json

    from multiview.builders._common import run_builder

    args = ["--out", str(tmp_path), "--train", "2", "--test", "1", "--cameras", "2", "--size", "16", "--masks"]
    assert run_builder("scenes", [*args, "--quiet"]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["builder_args"]["masks"] is True
    assert {"cam0_mask.png", "cam1_mask.png"} <= set(manifest["fields"])


def test_render_docstring_examples():
    import doctest

    from multiview.builders import render

    result = doctest.testmod(render)
    assert result.attempted > 0 and result.failed == 0
