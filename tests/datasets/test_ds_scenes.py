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
