"""Streaming from real servers on 127.0.0.1: HTTP (with faults) and S3 (moto), through WebStream and iter_samples."""

from __future__ import annotations

import logging
import time

import pytest
from conftest import foreign, make_uneven

from multiview.data import iter_samples, make_loader
from multiview.data.errors import ShardError
from multiview.data.location import resolve
from multiview.data.remote import IOOptions
from multiview.data.webstream import WebStream

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")
ALL = {f"k{i:02d}" for i in range(41)}
FAST = IOOptions(timeout=5.0, retries=2, backoff=0.01)


def serve(server, root, manifest=False):
    """Put ``root``'s tars (and manifest) on the server; returns the brace pattern of the shard URLs."""
    for path in sorted(root.iterdir()):
        if path.suffix == ".tar" or (manifest and path.name == "manifest.json"):
            server.put(path.name, path)
    return server.url_for("train-{000000..000006}.tar")


def real_keys(batches):
    return [k for b in batches for k, p in zip(b["__key__"], b["__pad__"].tolist()) if not p]


def test_http_stream_equals_the_local_stream(tmp_path, http_server):
    root = foreign(make_uneven(tmp_path))
    pattern = serve(http_server, root)
    remote = WebStream(pattern, fields=["image", "label"], batch_size=4, seed=3, options=FAST)
    local = WebStream(root, fields=["image", "label"], batch_size=4, seed=3)
    a, b = list(make_loader(remote, num_workers=2)), list(make_loader(local, num_workers=2))
    assert [list(x["__key__"]) for x in a] == [list(x["__key__"]) for x in b]
    assert set(real_keys(a)) == ALL


def test_a_folder_url_with_a_manifest_gives_counts_and_exact_epochs(tmp_path, http_server):
    root = make_uneven(tmp_path)
    serve(http_server, root, manifest=True)
    source = resolve(http_server.url + "/", "train", FAST)
    assert source.counts == [3, 9, 4, 12, 1, 7, 5] and source.urls[0] == http_server.url_for("train-000000.tar")
    stream = WebStream(source, fields=["image", "label"], batch_size=4, tail="drop", rank=1, world_size=2)
    assert len(list(make_loader(stream))) == len(stream) == 5  # counts known: the length is too


def test_404_names_the_url_or_is_skipped_and_counted(tmp_path, http_server, caplog):
    root = foreign(make_uneven(tmp_path))
    pattern = serve(http_server, root)
    (http_server.root / "train-000003.tar").unlink()
    with pytest.raises(ShardError, match=r"train-000003.tar: .*404"):
        list(iter_samples(pattern, "train", options=FAST))
    with caplog.at_level(logging.WARNING):
        keys = [s["__key__"] for s in iter_samples(pattern, "train", on_error="skip", options=FAST)]
    assert len(keys) == 41 - 12 and "train-000003.tar" in caplog.text and "skipped 1 bad sample(s)" in caplog.text
    assert http_server.hits("train-000003.tar") == 2  # a 404 is not retried: one request per pass


def test_a_dropped_connection_and_a_500_lose_nothing(tmp_path, http_server):
    root = foreign(make_uneven(tmp_path))
    pattern = serve(http_server, root)
    http_server.fail("train-000003.tar", "cut", times=1)
    http_server.fail("train-000005.tar", "500", times=1)
    keys = [s["__key__"] for s in iter_samples(pattern, "train", options=FAST)]
    assert sorted(keys) == sorted(ALL)
    assert any(r.path == "train-000003.tar" and r.range for r in http_server.requests)  # resumed by Range


def test_a_truncated_remote_tar_names_the_url_and_skip_keeps_what_came_before(tmp_path, http_server):
    root = foreign(make_uneven(tmp_path))
    pattern = serve(http_server, root)
    data = (root / "train-000003.tar").read_bytes()  # 12 samples
    http_server.put("train-000003.tar", data[: len(data) // 2])
    with pytest.raises(ShardError, match=r"train-000003.tar: (truncated|.*unexpected end).*after \d+ complete"):
        list(iter_samples(pattern, "train", options=FAST))
    keys = [s["__key__"] for s in iter_samples(pattern, "train", on_error="skip", options=FAST)]
    assert 41 - 12 < len(keys) < 41


def test_a_corrupt_member_names_url_key_and_field(tmp_path, http_server):
    import io
    import tarfile

    root = foreign(make_uneven(tmp_path, sizes=(2, 2, 2, 2, 2, 2, 2)))
    pattern = serve(http_server, root)
    buf = io.BytesIO()
    with tarfile.open(root / "train-000001.tar") as src, tarfile.open(fileobj=buf, mode="w") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name == "k03.image.png":
                data = data[:20] + b"\0" * (len(data) - 20)
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    http_server.put("train-000001.tar", buf.getvalue())
    with pytest.raises(ShardError, match=r"train-000001.tar, key 'k03', field 'image.png': "):
        list(iter_samples(pattern, "train", options=FAST))
    stream = WebStream(pattern, fields=["image"], batch_size=2, on_error="skip", options=FAST, tail="drop")
    batches = list(make_loader(stream))
    assert stream.skipped == 1 and "k03" not in real_keys(batches) and len(real_keys(batches)) == 12


def test_a_slow_server_times_out_instead_of_hanging(tmp_path, http_server):
    root = foreign(make_uneven(tmp_path))
    pattern = serve(http_server, root)
    http_server.slow_seconds = 3.0
    http_server.fail("train-000000.tar", "slow", times=5)
    start = time.monotonic()
    with pytest.raises(ShardError, match=r"train-000000.tar: .*(timed out|timeout)"):
        list(iter_samples(pattern, "train", options=IOOptions(timeout=0.4, retries=1, backoff=0.01)))
    assert time.monotonic() - start < 2.5


def test_s3_prefix_streams_with_and_without_a_manifest(tmp_path, s3_server):
    root = make_uneven(tmp_path)
    bucket = s3_server.make_bucket("shards")
    for path in sorted(root.iterdir()):
        s3_server.upload(path, f"{bucket}/ours/{path.name}")
        if path.suffix == ".tar":
            s3_server.upload(path, f"{bucket}/foreign/{path.name}")
    s3_server.upload(root / "manifest.json", f"{bucket}/foreign/00000_stats.json")  # img2dataset-style extras
    options = IOOptions(timeout=10, retries=1, backoff=0.01, storage_options=s3_server.storage_options)
    ours = resolve(f"{bucket}/ours/", "train", options)
    assert ours.counts == [3, 9, 4, 12, 1, 7, 5] and ours.root is None
    theirs = resolve(f"{bucket}/foreign/", "train", options)
    assert theirs.counts is None and [u.rsplit("/", 1)[1] for u in theirs.urls] == [
        f"train-{i:06d}.tar" for i in range(7)
    ]
    stream = WebStream(theirs, fields=["image", "label"], batch_size=4, seed=1)
    assert set(real_keys(make_loader(stream, num_workers=2))) == ALL
    assert sorted(s["__key__"] for s in iter_samples(f"{bucket}/ours/", "train", options=options)) == sorted(ALL)
