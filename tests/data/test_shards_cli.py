"""``multiview shards write | inspect | verify`` from folder trees and CSV / JSONL tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from multiview.cli import main
from multiview.data import Audio, iter_samples, load_manifest
from multiview.data.fields import encode_wav

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def make_tree(root, n=4):
    """``root/<sample>/{image.png, audio.wav, acc.npy, label.cls}``; returns the per-sample source arrays."""
    rng = np.random.default_rng(0)
    arrays = {}
    for i in range(n):
        d = root / f"item.{i}"  # a dot in a folder name: the key gets sanitised
        d.mkdir(parents=True)
        img = rng.integers(0, 256, (5, 4, 3), dtype=np.uint8)
        Image.fromarray(img).save(d / "image.png")
        (d / "audio.wav").write_bytes(encode_wav(Audio(rng.integers(-99, 99, 30, dtype=np.int16), 8000)))
        np.save(d / "acc.npy", rng.normal(size=(2, 5)).astype(np.float32))
        (d / "label.cls").write_text(str(i % 2))
        arrays[f"item_{i}"] = img
    return arrays


def test_help_of_every_subcommand(capsys):
    for argv in (
        ["shards", "--help"],
        ["shards", "write", "--help"],
        ["shards", "inspect", "-h"],
        ["shards", "verify", "-h"],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--from-folder" in out and "--preview" in out and "exit 1 if any" in out


def test_write_from_folder_tree_then_inspect_and_verify(tmp_path, capsys):
    arrays = make_tree(tmp_path / "src")
    assert (
        main(["shards", "write", str(tmp_path / "out"), "--from-folder", str(tmp_path / "src"), "--maxcount", "3"]) == 0
    )
    assert "train: 4 samples in 2 shard(s)" in capsys.readouterr().out
    samples = list(iter_samples(tmp_path / "out", "train"))
    assert [s["__key__"] for s in samples] == list(arrays)
    assert all((s["image"].permute(1, 2, 0).numpy() == arrays[s["__key__"]]).all() for s in samples)
    assert samples[0]["audio.sample_rate"] == 8000 and samples[1]["label"] == 1

    assert main(["shards", "inspect", str(tmp_path / "out"), "--preview", str(tmp_path / "p.png"), "-n", "3"]) == 0
    out = capsys.readouterr().out
    assert "image.png" in out and "audio" in out and "8000 Hz" in out and "train-000001.tar: 1" in out
    preview = Image.open(tmp_path / "p.png")
    assert preview.size[0] > 200 and np.asarray(preview).std() > 0

    assert main(["shards", "inspect", str(tmp_path / "out"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"]["per_shard"] == {"train-000000.tar": 3, "train-000001.tar": 1}

    assert main(["shards", "verify", str(tmp_path / "out")]) == 0
    assert "4 samples checked, 0 problem(s)" in capsys.readouterr().out


def test_verify_lists_every_bad_sample_and_exits_1(tmp_path, capsys, tamper):
    make_tree(tmp_path / "src", n=3)
    main(["shards", "write", str(tmp_path / "out"), "--from-folder", str(tmp_path / "src")])

    def corrupt(members):
        bad = {"item_0.image.png": b"junk", "item_2.audio.wav": b"RIFF junk"}
        return [(name, bad.get(name, data)) for name, data in members if name != "item_1.acc.npy"]

    tamper(tmp_path / "out", "train-000000.tar", corrupt)
    (tmp_path / "out" / "stray-000000.tar").write_bytes(b"")
    capsys.readouterr()
    assert main(["shards", "verify", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    bad = [line for line in captured.out.splitlines() if line.startswith("BAD")]
    assert len(bad) == 3
    assert "[train] train-000000.tar, key 'item_0', field 'image.png': corrupt or unsupported image" in bad[0]
    assert "key 'item_1': fields differ from the manifest's" in bad[1] and "missing ['acc.npy']" in bad[1]
    assert "key 'item_2', field 'audio.wav': not a PCM WAV" in bad[2]
    assert "stray-000000.tar: a tar file the manifest does not list" in captured.err

    (tmp_path / "out" / "train-000000.tar").write_bytes(b"not a tar")
    assert main(["shards", "verify", str(tmp_path / "out")]) == 1
    assert "train-000000.tar: not a tar file" in capsys.readouterr().out
    (tmp_path / "out" / "manifest.json").unlink()
    assert main(["shards", "verify", str(tmp_path / "out")]) == 1


def test_write_from_csv_and_jsonl_tables(tmp_path, capsys):
    files = tmp_path / "files"
    files.mkdir()
    for i in range(3):
        Image.fromarray(np.full((4, 4), i * 10, np.uint8)).save(files / f"{i}.png")
    csv = tmp_path / "table.csv"
    csv.write_text(
        "key,split,image.png,label.cls,meta.json,caption.txt\n"
        + "".join(
            f'a.{i},{"test" if i == 2 else "train"},files/{i}.png,{i},"{{""i"": {i}}}",hello {i}\n' for i in range(3)
        )
    )
    assert main(["shards", "write", str(tmp_path / "csv"), "--from-csv", str(csv)]) == 0
    train = list(iter_samples(tmp_path / "csv", "train"))
    assert [s["__key__"] for s in train] == ["a_0", "a_1"] and [s["label"] for s in train] == [0, 1]
    assert train[1]["meta"] == {"i": 1} and train[1]["caption"] == "hello 1" and int(train[1]["image"].max()) == 10
    assert load_manifest(tmp_path / "csv")["splits"]["test"]["count"] == 1

    jsonl = tmp_path / "table.jsonl"
    rows = [
        {"__key__": f"j{i}", "image.png": str(files / f"{i}.png"), "label.cls": i, "meta.json": {"i": [i]}}
        for i in range(3)
    ]
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["shards", "write", str(tmp_path / "jsonl"), "--from-jsonl", str(jsonl), "--split", "all"]) == 0
    samples = list(iter_samples(tmp_path / "jsonl", "all"))
    assert [s["meta"] for s in samples] == [{"i": [0]}, {"i": [1]}, {"i": [2]}]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "image.png,label.cls\nfiles/missing.png,1\n",
            r"table.csv line 2, column 'image.png': file not found: .*missing.png",
        ),
        (
            "image.png,label.cls\nfiles/0.png,one\n",
            r"table.csv line 2, column 'label.cls': expected an int label; got 'one'",
        ),
        ("image,label.cls\nfiles/0.png,1\n", r"table.csv line 2, column 'image': field 'image' has no extension"),
        (
            "image.png,label.cls\nfiles/bad.png,1\n",
            r"field 'image.png' \(file .*bad.png\): corrupt or unsupported image",
        ),
    ],
)
def test_bad_table_sources_fail_with_file_and_reason(tmp_path, capsys, table, message):
    (tmp_path / "files").mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "files" / "0.png")
    (tmp_path / "files" / "bad.png").write_bytes(b"not a png")
    (tmp_path / "table.csv").write_text(table)
    assert main(["shards", "write", str(tmp_path / "out"), "--from-csv", str(tmp_path / "table.csv")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    with pytest.raises(ValueError, match=message):
        from multiview.data import write_dataset
        from multiview.data.sources import table_splits

        write_dataset(tmp_path / "out", table_splits(tmp_path / "table.csv"))


def test_bad_folder_tree_fails_with_file_and_reason(tmp_path, capsys):
    make_tree(tmp_path / "src", n=2)
    (tmp_path / "src" / "item.1" / "label.cls").unlink()
    assert main(["shards", "write", str(tmp_path / "out"), "--from-folder", str(tmp_path / "src")]) == 1
    assert "key 'item.1': fields differ from the first sample's" in capsys.readouterr().err
    (tmp_path / "src" / "0loose.txt").write_text("x")
    assert main(["shards", "write", str(tmp_path / "out"), "--from-folder", str(tmp_path / "src")]) == 1
    assert "0loose.txt: a file where a sample folder was expected" in capsys.readouterr().err


def test_package_exports_match_and_load_lazily():
    import subprocess
    import sys

    import multiview.data as data

    assert sorted(data.__all__) == sorted(data._EXPORTS) and all(getattr(data, name) for name in data.__all__)
    code = "import sys, multiview.data.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_write_records_the_splits_written_and_the_pairing(tmp_path, capsys):
    """builder_args names the splits the rows went to (not the --split default they did not use); --pairing is
    recorded as the text retrieval reads from extra.pairing; without it, nothing is recorded."""
    from multiview.data.writer import PAIRING_TEXT

    np.save(tmp_path / "x.npy", np.zeros(3, np.float32))
    table = tmp_path / "t.csv"
    table.write_text("key,split,x.npy\na,test,x.npy\nb,test,x.npy\n")
    assert main(["shards", "write", str(tmp_path / "t"), "--from-csv", str(table), "--pairing", "instance"]) == 0
    manifest = load_manifest(tmp_path / "t")
    assert manifest["builder_args"] == {"from_table": str(table), "splits": ["test"], "pairing": "instance"}
    assert manifest["extra"]["pairing"] == PAIRING_TEXT["instance"]

    table.write_text("key,split,x.npy\na,test,x.npy\nb,,x.npy\n")  # b takes the default split
    assert main(["shards", "write", str(tmp_path / "u"), "--from-csv", str(table), "--split", "dev"]) == 0
    manifest = load_manifest(tmp_path / "u")
    assert manifest["builder_args"] == {"from_table": str(table), "splits": ["test", "dev"], "default_split": "dev"}
    assert "pairing" not in manifest["extra"]

    make_tree(tmp_path / "src" / "val", n=2)
    assert main(["shards", "write", str(tmp_path / "v"), "--from-folder", str(tmp_path / "src"), "--split-dirs"]) == 0
    assert load_manifest(tmp_path / "v")["builder_args"]["splits"] == ["val"]
    assert "default_split" not in load_manifest(tmp_path / "v")["builder_args"]

    with pytest.raises(SystemExit):
        main(["shards", "write", str(tmp_path / "w"), "--from-csv", str(table), "--pairing", "shuffled"])
    assert "invalid choice: 'shuffled'" in capsys.readouterr().err


def test_write_dataset_pairing_argument_is_checked(tmp_path):
    from multiview.data import write_dataset

    sample = {"__key__": "a", "x.npy": np.zeros(2)}
    with pytest.raises(ValueError, match=r"pairing is 'rows'; expected one of \['class', 'instance'\] or None"):
        write_dataset(tmp_path, {"train": [sample]}, pairing="rows")
    with pytest.raises(ValueError, match="give one of them"):
        write_dataset(tmp_path, {"train": [sample]}, pairing="class", extra={"pairing": "instance"})
