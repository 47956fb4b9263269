"""Suite-wide settings.

One torch thread per test process (and for the processes tests start): tests spawn torchrun workers and CLI
subprocesses, and on a 2-core machine more OpenMP threads than free cores spin-wait -- we measured a training
step 36x slower with 2 threads than with 1 when the cores were busy.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# ---- real servers on 127.0.0.1 for the streaming tests (tests/servers.py) ----

import pytest  # noqa: E402


@pytest.fixture
def http_server(tmp_path_factory, monkeypatch):
    """An HTTP file server on 127.0.0.1 (ephemeral port) serving ``server.root``; see tests/servers.py."""
    from servers import HTTPFileServer

    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")  # a proxy from the environment must not see loopback
    server = HTTPFileServer(tmp_path_factory.mktemp("http-root")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _moto_server():
    pytest.importorskip("moto.server", reason="moto[server] is needed for the S3 tests")
    pytest.importorskip("s3fs", reason="s3fs is needed for the S3 tests")
    from servers import S3Server

    server = S3Server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_server(_moto_server, monkeypatch):
    """moto's S3 server on 127.0.0.1, emptied for each test: ``.endpoint``, ``.storage_options``, ``.fs``,
    ``make_bucket(name)``, ``upload(local_path, "s3://bucket/key")``. Dummy credentials only."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "no_proxy": "127.0.0.1,localhost",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    _moto_server.reset()
    try:
        yield _moto_server
    finally:
        _moto_server.reset()
