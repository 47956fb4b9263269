"""Real servers on 127.0.0.1 for tests: an HTTP file server with fault injection, and moto's S3 server.

The fixtures ``http_server`` and ``s3_server`` in tests/conftest.py start and stop them; this module holds the
servers so any test (or a benchmark) can also use them directly.

HTTP faults, per path, each for the next ``times`` GET requests of that path::

    server.fail("train-000000.tar", "500", times=1)  # fail once, then serve
    "404"  -> 404 Not Found            "500" -> 500 Internal Server Error
    "cut"  -> headers with the full Content-Length, then only part of the body, then the connection closes
    "slow" -> wait ``slow_seconds`` (longer than a client timeout) before answering
"""

from __future__ import annotations

import collections
import http.server
import logging
import os
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAULT_KINDS = ("404", "500", "cut", "slow")
_SOCKET_TIMEOUT = 10.0  # no handler thread waits forever on a client that went away
_CHUNK = 64 << 10


@dataclass
class Request:
    """One request the HTTP server received."""

    method: str
    path: str
    range: str | None
    fault: str | None


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _SOCKET_TIMEOUT
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        pass  # keep test output clean

    def do_HEAD(self) -> None:  # noqa: N802 (stdlib name)
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        path = self.path.split("?", 1)[0].lstrip("/")
        fault = self.server.owner._take_fault(path) if body else None
        self.server.owner._record(Request(self.command, path, self.headers.get("Range"), fault))
        if fault == "slow":
            self.server.owner.stopping.wait(self.server.owner.slow_seconds)
        if fault in ("404", "500"):
            self._error(int(fault))
            return
        file = self.server.owner.root / path
        if ".." in Path(path).parts or not file.is_file():
            self._error(404)
            return
        data = file.read_bytes()
        start, status = self._range_start(len(data))
        if status == 416:
            self._error(416, {"Content-Range": f"bytes */{len(data)}"})
            return
        part = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Content-Length", str(len(part)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if not body:
            return
        if fault == "cut":
            part = part[: max(1, int(len(part) * self.server.owner.cut_fraction))]
            self.close_connection = True
        for offset in range(0, len(part), _CHUNK):
            self.wfile.write(part[offset : offset + _CHUNK])
        self.wfile.flush()

    def _range_start(self, size: int) -> tuple[int, int]:
        """``(first byte, status)`` for an open-ended ``Range: bytes=N-`` (all the clients here send)."""
        value = self.headers.get("Range")
        if not value or not value.startswith("bytes=") or not value.endswith("-"):
            return 0, 200
        start = int(value[len("bytes=") : -1])
        return (start, 206) if start < size else (0, 416)

    def _error(self, code: int, headers: dict[str, str] | None = None) -> None:
        body = f"{code}\n".encode()
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a handler stuck on a dead client never blocks shutdown
    owner: HTTPFileServer

    def handle_error(self, request, client_address) -> None:
        """A client that hung up (it timed out, or stopped reading) is routine here, not a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class HTTPFileServer:
    """A threaded HTTP server on 127.0.0.1 serving ``root``, with Range support and per-path fault injection.

    Attributes:
        root: the folder served (fill it with ``put`` or by writing files).
        url: ``http://127.0.0.1:<port>``; ``url_for("a.tar")`` is a file's URL.
        requests: every request received, in order.
        slow_seconds: how long a "slow" fault waits (default 3 s).
        cut_fraction: the share of the body a "cut" fault sends (default 0.5).
    """

    def __init__(self, root: str | os.PathLike, slow_seconds: float = 3.0, cut_fraction: float = 0.5):
        self.root = Path(root)
        self.slow_seconds, self.cut_fraction = slow_seconds, cut_fraction
        self.requests: list[Request] = []
        self.stopping = threading.Event()
        self._faults: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()
        self._server = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="test-http", daemon=True
        )

    def start(self) -> HTTPFileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wake slow handlers, stop serving, close the socket, join the thread (bounded)."""
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def url_for(self, name: str) -> str:
        return f"{self.url}/{name.lstrip('/')}"

    def put(self, name: str, data: bytes | str | os.PathLike) -> str:
        """Serve ``data`` (bytes, or a file to copy) at ``/name``; returns its URL."""
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            target.write_bytes(data)
        else:
            shutil.copyfile(data, target)
        return self.url_for(name)

    def fail(self, path: str, kind: str, times: int = 1) -> None:
        """The next ``times`` GET requests of ``path`` fail with ``kind`` (see the module docstring)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r}; expected one of {FAULT_KINDS}")
        with self._lock:
            self._faults[path.lstrip("/")].extend([kind] * times)

    def hits(self, path: str, method: str = "GET") -> int:
        """How many ``method`` requests ``path`` received."""
        path = path.lstrip("/")
        with self._lock:
            return sum(r.path == path and r.method == method for r in self.requests)

    def _take_fault(self, path: str) -> str | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


class S3Server:
    """moto's S3 server on 127.0.0.1 (one per test session; ``reset`` empties it between tests)."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per S3 call otherwise

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.storage_options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": self.endpoint},
        }

    @property
    def fs(self):
        """An s3fs filesystem on this server (a fresh listing cache each time)."""
        import s3fs

        fs = s3fs.S3FileSystem(**self.storage_options)
        fs.invalidate_cache()
        return fs

    def make_bucket(self, name: str) -> str:
        """Create a bucket; returns ``s3://name``."""
        self.fs.mkdir(name)
        return f"s3://{name}"

    def upload(self, local_path: str | os.PathLike, url: str) -> str:
        """Copy a local file to ``s3://bucket/key``; returns the URL."""
        self.fs.put_file(os.fspath(local_path), url)
        return url

    def reset(self) -> None:
        """Delete every bucket and object (moto's own reset endpoint) and s3fs's cached clients."""
        import urllib.request

        import s3fs

        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"), timeout=10)
        s3fs.S3FileSystem.clear_instance_cache()

    def stop(self) -> None:
        self._server.stop()
