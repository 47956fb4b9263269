"""Fashion-MNIST and BasicMotions builders on small slices; skipped when their apt / pip source is missing."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from multiview.builders import basicmotions, fashion_mnist

needs_fashion = pytest.mark.skipif(
    not (fashion_mnist.DEFAULT_ROOT / fashion_mnist.FILES["train"][0]).is_file(),
    reason=f"apt package {fashion_mnist.APT_PACKAGE} not installed ({fashion_mnist.DEFAULT_ROOT} missing)",
)


@needs_fashion
def test_fashion_split_sizes_from_the_idx_headers_and_a_slice():
    data = fashion_mnist.load_split("test", limit=25)
    assert data["images"].shape == (25, 28, 28) and data["images"].dtype == np.uint8
    assert data["labels"].min() >= 0 and data["labels"].max() <= 9
    with gzip.open(fashion_mnist.DEFAULT_ROOT / fashion_mnist.FILES["train"][1]) as f:
        assert int.from_bytes(f.read(8)[4:], "big") == fashion_mnist.SIZES["train"]


@needs_fashion
def test_fashion_build_reads_back(tmp_path):
    from multiview.data import iter_samples

    manifest = fashion_mnist.build(tmp_path, limit=20)
    assert {k: v["count"] for k, v in manifest["splits"].items()} == {"train": 20, "test": 20}
    assert manifest["extra"]["classes"][9] == "Ankle boot"
    expected = fashion_mnist.load_split("train", limit=20)
    for i, sample in enumerate(iter_samples(tmp_path, "train")):
        assert sample["image"].shape == (1, 28, 28)
        assert torch.equal(sample["image"][0], torch.from_numpy(expected["images"][i]))
        assert sample["label"] == expected["labels"][i]


def test_fashion_missing_files_name_the_apt_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        fashion_mnist.load_split("train", root=tmp_path)


def test_fashion_bad_magic_is_named(tmp_path):
    for name in fashion_mnist.FILES["test"]:
        with gzip.open(tmp_path / name, "wb") as f:
            f.write(b"\x00\x00\x08\x01" + b"\x00" * 16)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz: idx magic number 2049, expected 2051"):
        fashion_mnist.load_split("test", root=tmp_path)


def test_basicmotions_channels_labels_and_official_split(tmp_path):
    pytest.importorskip("aeon", reason="pip package aeon (multiview[data]) not installed")
    from multiview.data import iter_samples

    manifest = basicmotions.build(tmp_path)
    assert {k: v["count"] for k, v in manifest["splits"].items()} == {"train": 40, "test": 40}
    assert manifest["fields"]["acc.npy"]["shape"] == [3, 100] and manifest["fields"]["acc.npy"]["modality"] == "sensor"
    raw = basicmotions.load_split("test")
    samples = list(iter_samples(tmp_path, "test"))
    labels = [s["label"] for s in samples]
    assert sorted(set(labels)) == [0, 1, 2, 3] and np.bincount(labels).tolist() == [10] * 4
    for i in (0, 17, 39):
        both = torch.cat([samples[i]["acc"], samples[i]["gyro"]])
        assert torch.equal(both, torch.from_numpy(raw["series"][i]))


def test_dataset_scripts_are_thin_and_documented():
    folder = Path(__file__).resolve().parents[2] / "datasets"
    assert not (folder / "__init__.py").exists()
    for name in ("mfeat", "fashion_mnist", "avdigits", "basicmotions", "scenes"):
        text = (folder / f"{name}.py").read_text()
        assert f"from multiview.builders import {name}" in text and "--out" in text


def _script(name):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "datasets" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"datasets_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scripts_build_and_report_errors(tmp_path, capsys):
    pytest.importorskip("aeon", reason="pip package aeon (multiview[data]) not installed")
    assert _script("basicmotions").main(["--out", str(tmp_path / "bm"), "--quiet"]) == 0
    assert "{'train': 40, 'test': 40}" in capsys.readouterr().out
    assert _script("fashion_mnist").main(["--out", str(tmp_path / "fm"), "--root", str(tmp_path), "--quiet"]) == 1
    assert "apt-get install -y dataset-fashion-mnist" in capsys.readouterr().err
    assert (
        _script("scenes").main(
            ["--out", str(tmp_path / "sc"), "--train", "2", "--test", "1", "--size", "16", "--cameras", "2", "--quiet"]
        )
        == 0
    )
    assert "{'train': 2, 'test': 1}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        _script("avdigits").main(["--help"])


def test_python_m_multiview_builders_runs_the_same_command_line(tmp_path, capsys):
    from multiview.builders.__main__ import main

    assert main(["mfeat", "--out", str(tmp_path / "mf"), "--quiet"]) == 0
    assert "{'train': 1000, 'test': 1000}" in capsys.readouterr().out
    assert main(["nope"]) == 2 and "one of avdigits, basicmotions" in capsys.readouterr().err


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3", "npy", "png"])
def test_table_audio_cells_of_every_decoded_extension_are_file_paths(tmp_path, ext):
    """A ``.flac`` (``.ogg``, ``.mp3``) column holds a file path like ``.wav``, relative to the table's folder."""
    from multiview.data.fields import Audio, encode_value
    from multiview.data.sources import SourceError, table_splits

    value = np.zeros((4, 4), np.uint8) if ext == "png" else Audio(np.zeros((1, 1600), np.float32), 16000)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / f"0.{ext}").write_bytes(encode_value(f"x.{ext}", value)[0])
    (tmp_path / "table.csv").write_text(f"sound.{ext},label.cls\nfiles/0.{ext},1\n")
    (sample,) = table_splits(tmp_path / "table.csv")["train"]
    assert sample[f"sound.{ext}"] == tmp_path / "files" / f"0.{ext}" and sample["label.cls"] == 1
    (tmp_path / "table.csv").write_text(f"sound.{ext},label.cls\nfiles/missing.{ext},1\n")
    with pytest.raises(SourceError, match=f"column 'sound.{ext}': file not found: .*missing.{ext}"):
        table_splits(tmp_path / "table.csv")
