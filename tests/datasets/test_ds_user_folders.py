"""A user's own multi-camera data (a folder per scene) through ``multiview shards write``, as docs/datasets.md says."""

import json

import numpy as np
import torch
from PIL import Image

from multiview.builders import scenes


def _write_scene_folders(root, split, n, config):
    """What a user brings: root/<split>/<scene>/cam0.png .. camK-1.png + cams.json + label.cls."""
    expected = {}
    for sample in scenes.iter_scene_samples(n, split, seed=3, config=config):
        folder = root / split / sample["__key__"]
        folder.mkdir(parents=True)
        for k in range(config.n_cameras):
            Image.fromarray(sample[f"cam{k}.png"]).save(folder / f"cam{k}.png")
        (folder / "cams.json").write_text(json.dumps(sample["cams.json"]))
        (folder / "label.cls").write_text(str(sample["label.cls"]))
        expected[sample["__key__"]] = sample
    return expected


def test_scene_folders_go_through_shards_write(tmp_path):
    from multiview.cli import main
    from multiview.data import iter_samples, load_manifest

    config = scenes.ScenesConfig(n_cameras=3, size=24)
    expected = {
        split: _write_scene_folders(tmp_path / "src", split, n, config) for split, n in (("train", 3), ("test", 2))
    }
    out = tmp_path / "shards"
    assert main(["shards", "write", "--from-folder", str(tmp_path / "src"), "--split-dirs", str(out)]) == 0
    manifest = load_manifest(out)
    assert manifest["splits"]["train"]["count"] == 3 and manifest["splits"]["test"]["count"] == 2
    assert {manifest["fields"][f"cam{k}.png"]["modality"] for k in range(3)} == {"camera"}
    assert manifest["fields"]["cam2.png"]["camera_group"] == "cam"
    for split in ("train", "test"):
        for sample in iter_samples(out, split):
            want = expected[split][sample["__key__"]]
            assert sample["cams"] == want["cams.json"] and sample["label"] == want["label.cls"]
            for k in range(3):
                img = torch.from_numpy(np.ascontiguousarray(want[f"cam{k}.png"])).permute(2, 0, 1)
                assert torch.equal(sample[f"cam{k}"], img)
