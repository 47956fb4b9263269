"""multiview.data.remote against real servers on 127.0.0.1: local files, HTTP with faults, moto S3, pipe:."""

from __future__ import annotations

import io
import os
import pickle
import sys
import time

import pytest

from multiview.data.remote import (
    IOOptions,
    RemoteError,
    exists,
    expand_pattern,
    is_local,
    list_tars,
    open_stream,
    open_write,
    read_bytes,
)

FAST = IOOptions(timeout=5.0, retries=3, backoff=0.01)


@pytest.fixture
def payload() -> bytes:
    return os.urandom(200_000)


def _read_in_chunks(url: str, options: IOOptions, chunk: int = 8192) -> bytes:
    """Read as tarfile does in stream mode: many small ``read(n)``."""
    parts = []
    with open_stream(url, options) as f:
        while block := f.read(chunk):
            parts.append(block)
    return b"".join(parts)


# ------------------------------------------------------------------------------------------------ local, basics


def test_local_path_and_file_url(tmp_path, payload):
    path = tmp_path / "a.tar"
    path.write_bytes(payload)
    assert read_bytes(path) == payload
    assert _read_in_chunks(path.as_uri(), FAST) == payload
    assert is_local(str(path)) and is_local(path.as_uri()) and not is_local("pipe:cat x")


def test_local_missing_is_a_final_remote_error(tmp_path):
    with pytest.raises(RemoteError, match="missing.tar") as info:
        open_stream(tmp_path / "missing.tar")
    assert not info.value.transient and isinstance(info.value, OSError)


def test_remote_error_pickles_with_its_fields():
    err = pickle.loads(pickle.dumps(RemoteError("https://h/x.tar", "HTTP 404 Not Found")))
    assert (str(err), err.url, err.cause, err.transient) == (
        "https://h/x.tar: HTTP 404 Not Found",
        "https://h/x.tar",
        "HTTP 404 Not Found",
        False,
    )


def test_options_are_validated_and_copied():
    storage = {"anon": True}
    options = IOOptions(storage_options=storage)
    storage["anon"] = False
    assert options.storage_options == {"anon": True}
    for bad in ({"timeout": 0}, {"retries": -1}, {"backoff": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            IOOptions(**bad)


def test_expand_pattern():
    assert expand_pattern("https://h/d/train-{000000..000002}.tar") == [
        f"https://h/d/train-00000{i}.tar" for i in range(3)
    ]
    assert expand_pattern("a.tar::b-{x,y}.tar") == ["a.tar", "b-x.tar", "b-y.tar"]


def test_list_tars_local_folder_and_glob(tmp_path):
    for name in ("b.tar", "a.tar", "c.tar.gz", "d.tgz", "e.parquet", "_stats.json"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "z.tar").write_bytes(b"x")  # not listed: the folder itself only
    expected = [str(tmp_path / n) for n in ("a.tar", "b.tar", "c.tar.gz", "d.tgz")]
    assert list_tars(tmp_path) == expected
    assert list_tars(str(tmp_path / "*.tar")) == expected[:2]
    assert list_tars(tmp_path.as_uri()) == [f"file://{p}" for p in expected]
    with pytest.raises(RemoteError, match="no shards found"):
        list_tars(tmp_path / "sub" / "*.gz")
    with pytest.raises(RemoteError, match="no such folder"):
        list_tars(tmp_path / "nope")


def test_open_write_local_is_atomic(tmp_path):
    target = tmp_path / "deep" / "out.tar"
    with open_write(target) as f:
        f.write(b"part")
        assert not target.exists()  # only a hidden temp file so far
    assert target.read_bytes() == b"part"
    with pytest.raises(RuntimeError), open_write(target) as f:
        f.write(b"half")
        raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"part"  # the old file is untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.tar"]  # no temp file left behind


# --------------------------------------------------------------------------------------------------------- http


def test_http_read_equals_file(http_server, payload):
    url = http_server.put("d/x.tar", payload)
    assert _read_in_chunks(url, FAST) == payload
    assert read_bytes(url, FAST) == payload
    assert exists(url, FAST) and not exists(http_server.url_for("d/none.tar"), FAST)


def test_http_404_names_the_url_and_is_not_retried(http_server):
    url = http_server.url_for("missing.tar")
    with pytest.raises(RemoteError) as info:
        open_stream(url, FAST)
    assert str(info.value) == f"{url}: HTTP 404 Not Found"
    assert not info.value.transient
    assert http_server.hits("missing.tar") == 1


def test_http_500_once_is_retried(http_server, payload):
    url = http_server.put("x.tar", payload)
    http_server.fail("x.tar", "500", times=1)
    assert read_bytes(url, FAST) == payload
    assert http_server.hits("x.tar") == 2


def test_http_500_every_time_fails_after_the_retries(http_server, payload):
    url = http_server.put("x.tar", payload)
    http_server.fail("x.tar", "500", times=10)
    with pytest.raises(RemoteError, match=r"HTTP 500 .*after 2 retries") as info:
        open_stream(url, IOOptions(retries=2, backoff=0.01))
    assert info.value.transient and http_server.hits("x.tar") == 3


def test_http_cut_mid_body_is_resumed_with_range(http_server, payload):
    url = http_server.put("x.tar", payload)
    http_server.fail("x.tar", "cut", times=1)
    assert _read_in_chunks(url, FAST) == payload
    ranges = [r.range for r in http_server.requests if r.path == "x.tar"]
    assert ranges == [None, f"bytes={len(payload) // 2}-"]


def test_http_cut_more_times_than_retries_fails_with_byte_counts(http_server, payload):
    url = http_server.put("x.tar", payload)
    http_server.fail("x.tar", "cut", times=10)
    with pytest.raises(RemoteError, match=rf"truncated: got \d+ of {len(payload)} bytes.*after 2 retries") as info:
        _read_in_chunks(url, IOOptions(retries=2, backoff=0.01))
    assert info.value.url == url
    assert http_server.hits("x.tar") == 3


def test_http_slow_server_times_out_within_bound(http_server, payload):
    url = http_server.put("x.tar", payload)
    http_server.fail("x.tar", "slow", times=10)
    options = IOOptions(timeout=0.5, retries=1, backoff=0.1)
    start = time.monotonic()
    with pytest.raises(RemoteError, match="timed out.*after 1 retries"):
        open_stream(url, options)
    elapsed = time.monotonic() - start
    assert elapsed < 0.5 * 2 + 0.1 + 1.0, elapsed  # two attempts of one timeout each, one backoff, slack
    assert http_server.hits("x.tar") == 2


def test_http_connection_refused_is_transient(http_server):
    url = http_server.url_for("x.tar")
    http_server.stop()
    with pytest.raises(RemoteError, match="after 1 retries") as info:
        open_stream(url, IOOptions(timeout=1.0, retries=1, backoff=0.01))
    assert info.value.transient


# --------------------------------------------------------------------------------------------------------- pipe


def test_pipe_cat_and_failing_commands(tmp_path, payload):
    path = tmp_path / "x.tar"
    path.write_bytes(payload)
    assert _read_in_chunks(f"pipe:cat '{path}'", FAST) == payload
    with pytest.raises(RemoteError, match=r"'false' exited with status 1"):
        read_bytes("pipe:false", FAST)
    with pytest.raises(RemoteError, match=r"status 1: .*nope: No such file"):
        read_bytes(f"pipe:cat '{tmp_path / 'nope'}'", FAST)


def test_pipe_closed_early_is_not_an_error(tmp_path, payload):
    path = tmp_path / "x.tar"
    path.write_bytes(payload * 20)  # larger than a pipe buffer: cat is still writing when we close
    with open_stream(f"pipe:cat '{path}'", FAST) as f:
        assert f.read(10) == payload[:10]


def test_pipe_silent_command_times_out():
    start = time.monotonic()
    with pytest.raises(RemoteError, match="no output for 0.5 s"):
        read_bytes("pipe:sleep 30", IOOptions(timeout=0.5))
    assert time.monotonic() - start < 5


# ----------------------------------------------------------------------------------------------------------- s3


def test_s3_read_list_exists_and_write(s3_server, tmp_path, payload):
    options = IOOptions(retries=1, backoff=0.01, storage_options=s3_server.storage_options)
    s3_server.make_bucket("shards")
    local = tmp_path / "x.tar"
    local.write_bytes(payload)
    for name in ("train-000001.tar", "train-000000.tar", "part.parquet", "_stats.json", "sub/z.tar"):
        s3_server.upload(local, f"s3://shards/img/{name}")
    expected = ["s3://shards/img/train-000000.tar", "s3://shards/img/train-000001.tar"]
    assert list_tars("s3://shards/img/", options) == expected
    assert list_tars("s3://shards/img", options) == expected
    assert list_tars("s3://shards/img/*.tar", options) == expected
    assert _read_in_chunks(expected[0], options) == payload
    assert exists(expected[0], options) and not exists("s3://shards/img/none.tar", options)

    with open_write("s3://shards/out/y.tar", options) as f:
        f.write(b"written")
    assert read_bytes("s3://shards/out/y.tar", options) == b"written"
    with pytest.raises(RuntimeError), open_write("s3://shards/out/z.tar", options) as f:
        f.write(b"half")
        raise RuntimeError("crash while writing")
    assert not exists("s3://shards/out/z.tar", options)


def test_s3_missing_object_and_prefix(s3_server):
    options = IOOptions(retries=1, backoff=0.01, storage_options=s3_server.storage_options)
    s3_server.make_bucket("shards")
    with pytest.raises(RemoteError, match=r"s3://shards/none.tar: not found") as info:
        open_stream("s3://shards/none.tar", options)
    assert not info.value.transient
    with pytest.raises(RemoteError, match="s3://shards/empty/"):
        list_tars("s3://shards/empty/", options)


# ------------------------------------------------------------------------------------------------ other fsspec


def test_fsspec_read_broken_mid_stream_is_resumed_by_reopen_and_seek(monkeypatch, payload):
    """A backend whose first opened file dies halfway (as a dropped S3 connection does): nothing is lost."""
    from fsspec.implementations.memory import MemoryFileSystem

    opens = []

    class Flaky(io.BytesIO):
        def read(self, n=-1):
            if len(opens) == 1 and self.tell() >= len(payload) // 2:
                raise ConnectionResetError("reset by peer")
            return super().read(n)

    class FlakyFS(MemoryFileSystem):
        protocol = "flaky"

        def _open(self, path, mode="rb", **kwargs):
            opens.append(path)
            return Flaky(payload)

    monkeypatch.setitem(sys.modules["fsspec.registry"]._registry, "flaky", FlakyFS)  # undone after the test
    assert _read_in_chunks("flaky://x.tar", FAST) == payload
    assert len(opens) == 2


def test_missing_s3fs_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)  # import s3fs now raises ImportError
    monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, "s3", raising=False)  # forget a loaded class
    with pytest.raises(RemoteError, match="install s3fs to read s3:// URLs"):
        open_stream("s3://bucket/x.tar", FAST)
