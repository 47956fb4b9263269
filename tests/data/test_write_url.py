"""Writing shards to a URL (moto's S3 server on 127.0.0.1): the same bytes as a local write, the manifest last."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

import multiview.data.manifest as manifest_module
import multiview.data.writer as writer_module
from multiview.cli import main
from multiview.data import write_dataset
from multiview.data.remote import IOOptions, list_tars, read_bytes


def _without_time(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k != "created"}


@pytest.fixture
def bucket(s3_server):
    s3_server.make_bucket("data")
    return IOOptions(retries=1, backoff=0.01, storage_options=s3_server.storage_options)


def test_write_to_s3_equals_a_local_write(bucket, make_samples, tmp_path):
    splits = {"train": make_samples(7), "val": make_samples(3, seed=1, prefix="v")}
    local = write_dataset(tmp_path / "local", splits, maxcount=3, builder="toy")
    remote = write_dataset("s3://data/toy/", splits, maxcount=3, builder="toy", io_options=bucket)
    assert _without_time(remote) == _without_time(local)

    names = ["train-000000.tar", "train-000001.tar", "train-000002.tar", "val-000000.tar"]
    assert list_tars("s3://data/toy", bucket) == [f"s3://data/toy/{n}" for n in names]
    for name in names:
        assert read_bytes(f"s3://data/toy/{name}", bucket) == (tmp_path / "local" / name).read_bytes()
    assert json.loads(read_bytes("s3://data/toy/manifest.json", bucket)) == json.loads(json.dumps(remote, default=str))


def test_manifest_is_written_last_and_old_shards_are_removed(bucket, make_samples, monkeypatch):
    write_dataset("s3://data/toy", {"train": make_samples(7)}, maxcount=2, io_options=bucket)  # 4 shards
    written = []

    def recording(open_write):
        def wrapper(url, options):
            written.append(url.rpartition("/")[2])
            return open_write(url, options)

        return wrapper

    monkeypatch.setattr(writer_module, "open_write", recording(writer_module.open_write))
    monkeypatch.setattr(manifest_module, "open_write", recording(manifest_module.open_write))
    write_dataset("s3://data/toy", {"train": make_samples(3)}, maxcount=2, io_options=bucket)  # 2 shards
    assert written == ["train-000000.tar", "train-000001.tar", "manifest.json"]
    assert [u.rpartition("/")[2] for u in list_tars("s3://data/toy", bucket)] == written[:2]
    assert json.loads(read_bytes("s3://data/toy/manifest.json", bucket))["splits"]["train"]["count"] == 3


def test_cli_writes_to_s3(s3_server, tmp_path, capsys):
    s3_server.make_bucket("data")
    for i in range(3):
        sample = tmp_path / "src" / f"s{i}"
        sample.mkdir(parents=True)
        (sample / "label.cls").write_text(str(i))
        (sample / "note.txt").write_text(f"sample {i}")
    argv = ["shards", "write", "s3://data/cli", "--from-folder", str(tmp_path / "src"), "--maxcount", "2"]
    # credentials come from the AWS_* variables the fixture set, the endpoint from the flag
    assert main([*argv, "--endpoint-url", s3_server.endpoint]) == 0
    assert "train: 3 samples in 2 shard(s) -> s3://data/cli" in capsys.readouterr().out

    options = IOOptions(storage_options=s3_server.storage_options)
    manifest = json.loads(read_bytes("s3://data/cli/manifest.json", options))
    assert manifest["splits"]["train"]["count"] == 3
    with tarfile.open(fileobj=io.BytesIO(read_bytes("s3://data/cli/train-000001.tar", options))) as tar:
        assert tar.getnames() == ["s2.label.cls", "s2.note.txt"]


def test_cli_write_to_an_unwritable_url_fails_cleanly(tmp_path, capsys):
    (tmp_path / "src" / "s0").mkdir(parents=True)
    (tmp_path / "src" / "s0" / "label.cls").write_text("1")
    assert main(["shards", "write", "https://example.invalid/x", "--from-folder", str(tmp_path / "src")]) == 1
    assert "https://example.invalid/x/manifest.json: cannot write to this kind of URL" in capsys.readouterr().err
