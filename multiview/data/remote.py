"""Shard locations as byte streams: local paths, ``http(s)://``, ``pipe:CMD`` and anything fsspec opens.

Every network read has a timeout; transient failures (HTTP 5xx / 408 / 429, refused, reset or timed-out
connections) are retried with a doubling backoff; a connection dropped in the middle of a body is resumed where
it broke (an HTTP ``Range`` request, or a re-open and seek through fsspec), so a flaky server loses nothing and
a dead one fails with a :class:`RemoteError` that names the URL and the cause.

This module imports neither torch nor webdataset: the loader's workers and the CLI import it cheaply.

Examples:
    >>> expand_pattern("https://h/train-{000..002}.tar")
    ['https://h/train-000.tar', 'https://h/train-001.tar', 'https://h/train-002.tar']
    >>> is_local("shards/train-000000.tar"), is_local("file:///tmp/a.tar"), is_local("s3://b/a.tar")
    (True, True, False)
"""

from __future__ import annotations

import contextlib
import glob
import http.client
import io
import os
import select
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_HTTP_SCHEMES = ("http://", "https://")
_RETRIED_HTTP_CODES = (408, 429)  # client-side codes that mean "try again later"
_MAX_WAIT = 10.0  # one backoff wait never exceeds this, so retries=10 does not sleep for hours
_BUFFER = 1 << 20  # read-ahead of the buffered network streams
_SIGPIPE_STATUS = (141, -13)  # a pipe: command killed because we stopped reading early (shell / direct)
_T = TypeVar("_T")


@dataclass(frozen=True)
class IOOptions:
    """How remote shards are opened.

    Args:
        timeout: seconds for a connect and for each read; nothing waits longer.
        retries: re-tries of a transient failure, per open and per stream for broken reads (0 = none).
        backoff: first wait in seconds before a retry, doubled each retry (each wait at most 10 s).
        storage_options: keyword arguments for fsspec (s3: ``key``, ``secret``, ``anon``,
            ``client_kwargs={"endpoint_url": ...}``, ...). s3fs also honours the ``AWS_*`` environment variables.
    """

    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"IOOptions.timeout must be > 0 seconds; got {self.timeout!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"IOOptions.retries must be an int >= 0; got {self.retries!r}")
        if not self.backoff >= 0:
            raise ValueError(f"IOOptions.backoff must be >= 0 seconds; got {self.backoff!r}")
        # a private copy: the caller's dict may change later, and options travel to loader workers by pickle
        object.__setattr__(self, "storage_options", dict(self.storage_options or {}))

    def wait(self, attempt: int) -> float:
        """Seconds to sleep before retry number ``attempt + 1``."""
        return min(self.backoff * 2**attempt, _MAX_WAIT)


class RemoteError(OSError):
    """A location cannot be opened or read: ``str()`` is ``"<url>: <cause>"``.

    Attributes:
        url: the location.
        cause: what went wrong, e.g. ``"HTTP 404 Not Found"``.
        transient: True when a retry might succeed (already retried ``IOOptions.retries`` times when raised).
    """

    def __init__(self, url: str, cause: str = "", transient: bool = False):
        super().__init__(f"{url}: {cause}" if cause else url)
        self.url, self.cause, self.transient = url, cause, transient

    def __str__(self) -> str:
        return self.args[0]

    def __reduce__(self):
        # default OSError pickling would call RemoteError(message) and lose url/cause (DataLoader workers pickle)
        return type(self), (self.url, self.cause, self.transient)


# ---------------------------------------------------------------------------------------------------- helpers


def is_local(url: str | os.PathLike) -> bool:
    """True for a plain path or a ``file://`` URL."""
    url = os.fspath(url)
    return url.startswith("file://") or ("://" not in url and not url.startswith("pipe:"))


def _local_path(url: str | os.PathLike) -> str:
    url = os.fspath(url)
    if url.startswith("file://"):
        return urllib.request.url2pathname(urllib.parse.urlparse(url).path)
    return url


def _retry(url: str, options: IOOptions, attempt: Callable[[], _T]) -> _T:
    """``attempt()`` until it succeeds or fails for good; transient RemoteErrors are retried with backoff."""
    for i in range(options.retries + 1):
        try:
            return attempt()
        except RemoteError as err:
            if not err.transient:
                raise
            if i == options.retries:
                if i == 0:
                    raise
                raise RemoteError(url, f"{err.cause} (after {i} retries)", transient=True) from err
        time.sleep(options.wait(i))
    raise AssertionError("unreachable")


def _describe(err: BaseException) -> str:
    """A short cause for a network exception (``TimeoutError`` has an empty message)."""
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError):
        return _describe(err.reason) if isinstance(err.reason, BaseException) else str(err.reason)
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


# -------------------------------------------------------------------------------------------------------- http


def _http_open(url: str, pos: int, options: IOOptions, method: str = "GET") -> http.client.HTTPResponse | None:
    """One request; ``None`` when ``pos`` is already past the end (HTTP 416). Raises RemoteError."""
    headers = {"Range": f"bytes={pos}-"} if pos else {}
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        return urllib.request.urlopen(request, timeout=options.timeout)  # noqa: S310 (http(s) only, checked)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and pos:
            return None
        transient = err.code >= 500 or err.code in _RETRIED_HTTP_CODES
        raise RemoteError(url, f"HTTP {err.code} {err.reason}", transient=transient) from None
    except (OSError, http.client.HTTPException) as err:  # URLError, refused, reset, timeout, bad status line
        raise RemoteError(url, _describe(err), transient=True) from None


def _content_range(url: str, response: http.client.HTTPResponse, pos: int) -> int | None:
    """The total size from a 206 answer's ``Content-Range: bytes <pos>-<end>/<total>``; checks its start."""
    value = response.headers.get("Content-Range", "")
    unit, _, rest = value.partition(" ")
    span, _, total = rest.partition("/")
    start = span.partition("-")[0]
    if unit != "bytes" or not start.isdigit():
        raise RemoteError(url, f"bad Content-Range {value!r} in a 206 answer", transient=False)
    if int(start) != pos:
        raise RemoteError(url, f"asked for bytes from {pos}, server sent from {start}", transient=False)
    return int(total) if total.isdigit() else None


class _HTTPStream(io.RawIOBase):
    """An HTTP body read front to back; a connection that breaks is resumed with ``Range: bytes=<pos>-``."""

    def __init__(self, url: str, options: IOOptions):
        super().__init__()
        self.url, self.options = url, options
        self.pos, self.length, self.resumes = 0, None, 0
        self._response = _retry(url, options, lambda: self._open_at(0))

    def readable(self) -> bool:
        return True

    def _open_at(self, pos: int) -> http.client.HTTPResponse | None:
        response = _http_open(self.url, pos, self.options)
        if response is None:
            return None
        try:
            if response.status == 206:
                total = _content_range(self.url, response, pos)
            else:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                self._skip(response, pos)  # the server ignored our Range: drop what we already have
        except BaseException:
            response.close()
            raise
        if self.length is not None and total is not None and total != self.length:
            response.close()
            raise RemoteError(self.url, f"size changed from {self.length} to {total} bytes while reading")
        self.length = total if total is not None else self.length
        return response

    def _skip(self, response: http.client.HTTPResponse, count: int) -> None:
        while count:
            try:
                chunk = response.read(min(count, _BUFFER))
            except (OSError, http.client.HTTPException) as err:
                raise RemoteError(self.url, f"re-reading the first {self.pos} bytes: {_describe(err)}", True) from None
            if not chunk:
                raise RemoteError(self.url, f"body ended while skipping to byte {self.pos}", transient=True)
            count -= len(chunk)

    def readinto(self, buffer) -> int:
        while True:
            if self._response is None or (self.length is not None and self.pos >= self.length):
                self._close_response()
                return 0
            cause = "connection closed early"
            try:
                n = self._response.readinto(buffer)
            except (OSError, http.client.HTTPException) as err:  # reset, read timeout, IncompleteRead
                n, cause = None, _describe(err)
            if n:
                self.pos += n
                return n
            if n == 0 and self.length is None:  # no Content-Length: a clean close is the end
                self._close_response()
                return 0
            self._resume(cause)

    def _resume(self, cause: str) -> None:
        self._close_response()
        of = f"{self.length}" if self.length is not None else "an unknown number of"
        if self.resumes >= self.options.retries:
            raise RemoteError(
                self.url,
                f"truncated: got {self.pos} of {of} bytes; connection dropped at byte {self.pos} "
                f"after {self.resumes} retries ({cause})",
                transient=True,
            )
        time.sleep(self.options.wait(self.resumes))
        self.resumes += 1
        self._response = _retry(self.url, self.options, lambda: self._open_at(self.pos))

    def _close_response(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def close(self) -> None:
        self._close_response()
        super().close()


# -------------------------------------------------------------------------------------------------------- pipe


class _PipeStream(io.RawIOBase):
    """The stdout of ``sh -c CMD``; a non-zero exit status raises at the end of the output or on close."""

    def __init__(self, url: str, options: IOOptions):
        super().__init__()
        self.url, self.command, self.options = url, url[len("pipe:") :], options
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close()); a file, not a PIPE: a chatty command cannot fill it and block
        self._process = subprocess.Popen(  # noqa: S602 (pipe: runs a shell command by definition)
            self.command, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        fd = self._process.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], self.options.timeout)
        if not ready:
            self._process.kill()
            self._checked = True
            raise RemoteError(self.url, f"no output for {self.options.timeout} s; command killed", transient=False)
        n = os.readv(fd, [buffer])
        if n == 0:
            self._check(early=False)
        return n

    def _check(self, early: bool) -> None:
        """Wait for the command (bounded) and raise if it failed; once."""
        if self._checked:
            return
        self._checked = True
        try:
            status = self._process.wait(timeout=self.options.timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            if early:
                return  # we stopped reading; the command did not notice in time: nothing was lost
            raise RemoteError(
                self.url, f"command did not exit within {self.options.timeout} s of its output end"
            ) from None
        if status == 0 or (early and status in _SIGPIPE_STATUS):
            return
        self._stderr.seek(0)
        tail = self._stderr.read()[-500:].decode(errors="replace").strip()
        raise RemoteError(
            self.url, f"command {self.command!r} exited with status {status}" + (f": {tail}" if tail else "")
        )

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._process.stdout.close()  # first: a command still writing gets SIGPIPE and exits
            self._check(early=True)
        finally:
            self._stderr.close()
            super().close()


# ------------------------------------------------------------------------------------------------------ fsspec


def _fsspec(url: str):
    try:
        import fsspec
    except ImportError:  # pragma: no cover - fsspec comes with the required dependencies
        raise RemoteError(url, "install fsspec to read this URL", transient=False) from None
    return fsspec


def _url_to_fs(url: str, options: IOOptions):
    """``(filesystem, path)``; timeouts from ``options`` unless the storage options set their own."""
    fsspec = _fsspec(url)
    storage = dict(options.storage_options)
    protocol = url.partition("://")[0]
    if protocol in ("s3", "s3a") and "config_kwargs" not in storage:
        storage["config_kwargs"] = {"connect_timeout": options.timeout, "read_timeout": options.timeout}
    try:
        return fsspec.core.url_to_fs(url, **storage)
    except ImportError as err:
        package = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}
        hint = package.get(protocol, getattr(err, "name", None) or "the package fsspec names")
        raise RemoteError(url, f"install {hint} to read {protocol}:// URLs ({err})", transient=False) from None
    except ValueError as err:  # unknown protocol
        raise RemoteError(url, str(err), transient=False) from None


def _fsspec_error(url: str, err: BaseException, doing: str) -> RemoteError:
    """Missing or forbidden objects are final; other I/O errors may pass."""
    final = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, ValueError)
    if isinstance(err, FileNotFoundError):
        return RemoteError(url, f"not found ({doing})", transient=False)
    return RemoteError(url, f"{doing}: {_describe(err)}", transient=not isinstance(err, final))


class _FsspecStream(io.RawIOBase):
    """An fsspec file read front to back; a read that fails transiently re-opens the file and seeks back."""

    def __init__(self, url: str, options: IOOptions):
        super().__init__()
        self.url, self.options = url, options
        self.fs, self.path = _url_to_fs(url, options)
        self.pos, self.resumes, self.size = 0, 0, None
        self._file = _retry(url, options, lambda: self._open_at(0))

    def readable(self) -> bool:
        return True

    def _open_at(self, pos: int):
        try:
            f = self.fs.open(self.path, "rb")
            if pos:
                f.seek(pos)
        except Exception as err:  # noqa: BLE001 (each backend raises its own types; classified below)
            raise _fsspec_error(self.url, err, "open") from None
        size = getattr(f, "size", None)
        self.size = size if isinstance(size, int) else self.size
        return f

    def readinto(self, buffer) -> int:
        while True:
            try:
                data = self._file.read(len(buffer))
            except Exception as err:  # noqa: BLE001
                failure = _fsspec_error(self.url, err, f"read at byte {self.pos}")
                if not failure.transient:
                    raise failure from None
            else:
                if data or self.size is None or self.pos >= self.size:
                    buffer[: len(data)] = data
                    self.pos += len(data)
                    return len(data)
                failure = RemoteError(self.url, f"read at byte {self.pos}: body ended early", transient=True)
            self._resume(failure)

    def _resume(self, failure: RemoteError) -> None:
        with contextlib.suppress(Exception):
            self._file.close()
        if self.resumes >= self.options.retries:
            of = f" of {self.size}" if self.size is not None else ""
            raise RemoteError(
                self.url, f"truncated: got {self.pos}{of} bytes after {self.resumes} retries ({failure.cause})", True
            )
        time.sleep(self.options.wait(self.resumes))
        self.resumes += 1
        self._file = _retry(self.url, self.options, lambda: self._open_at(self.pos))

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._file.close()
        super().close()


# ---------------------------------------------------------------------------------------------------- open API


def open_stream(url: str | os.PathLike, options: IOOptions = IOOptions()) -> BinaryIO:  # noqa: B008 (frozen)
    """A sequential, readable binary file object for a shard location (``read(n)``, ``close``, ``with``).

    Args:
        url: a local path or ``file://`` URL, ``http(s)://``, ``pipe:CMD`` (a shell command's stdout) or any
            URL fsspec opens (``s3://``, ``gs://``, ``memory://``, ...).
        options: timeouts, retries and fsspec storage options.

    Raises:
        RemoteError: not found (``transient=False``), HTTP 4xx (not retried), or a transient failure that
            outlived ``options.retries`` retries. Local files raise it too, for a missing file.
    """
    url = os.fspath(url)
    if is_local(url):
        path = _local_path(url)
        try:
            return open(path, "rb")  # noqa: SIM115 (the caller closes it)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as err:
            raise RemoteError(url, f"{err.strerror or type(err).__name__}", transient=False) from None
    if url.startswith("pipe:"):
        return io.BufferedReader(_PipeStream(url, options), _BUFFER)
    if url.startswith(_HTTP_SCHEMES):
        return io.BufferedReader(_HTTPStream(url, options), _BUFFER)
    return io.BufferedReader(_FsspecStream(url, options), _BUFFER)


def read_bytes(url: str | os.PathLike, options: IOOptions = IOOptions()) -> bytes:  # noqa: B008
    """The whole content of a small file (a URL list, a remote ``manifest.json``), with the same retries."""
    with open_stream(url, options) as f:
        return f.read()


def exists(url: str | os.PathLike, options: IOOptions = IOOptions()) -> bool:  # noqa: B008
    """Whether a file exists (a HEAD request for http, ``fs.exists`` for fsspec); ``pipe:`` is never a file."""
    url = os.fspath(url)
    if is_local(url):
        return os.path.isfile(_local_path(url))
    if url.startswith("pipe:"):
        return False
    if url.startswith(_HTTP_SCHEMES):
        return _retry(url, options, lambda: _http_exists(url, options))
    fs, path = _url_to_fs(url, options)

    def attempt() -> bool:
        try:
            return bool(fs.exists(path))
        except Exception as err:  # noqa: BLE001
            raise _fsspec_error(url, err, "exists") from None

    return _retry(url, options, attempt)


def remove(url: str | os.PathLike, options: IOOptions = IOOptions()) -> None:  # noqa: B008
    """Delete a file if it exists (local or fsspec); used to clear an old data set before writing a new one."""
    url = os.fspath(url)
    if is_local(url):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_local_path(url))
        return
    if url.startswith(_HTTP_SCHEMES + ("pipe:",)):
        raise RemoteError(url, "cannot write to this kind of URL (use a local path or an fsspec URL such as s3://)")
    fs, path = _url_to_fs(url, options)

    def attempt() -> None:
        try:
            if fs.exists(path):
                fs.rm(path)
        except Exception as err:  # noqa: BLE001
            raise _fsspec_error(url, err, "remove") from None

    _retry(url, options, attempt)


def _http_exists(url: str, options: IOOptions) -> bool:
    try:
        response = _http_open(url, 0, options, method="HEAD")
    except RemoteError as err:
        if err.cause.startswith(("HTTP 404", "HTTP 410")):
            return False
        raise
    response.close()
    return True


def expand_pattern(spec: str) -> list[str]:
    """Brace-expand a shard pattern as webdataset does (``::`` separates several patterns); no I/O.

    >>> expand_pattern("a-{0..1}.tar::b-{x,y}.tar")
    ['a-0.tar', 'a-1.tar', 'b-x.tar', 'b-y.tar']
    """
    from braceexpand import braceexpand  # a webdataset dependency; imported here to keep this module light

    return [url for pattern in spec.split("::") for url in braceexpand(pattern)]


def _is_tar(name: str) -> bool:
    return name.endswith(TAR_SUFFIXES)


def list_tars(location: str | os.PathLike, options: IOOptions = IOOptions()) -> list[str]:  # noqa: B008
    """The ``.tar`` / ``.tar.gz`` / ``.tgz`` shards of a folder, prefix or glob, sorted; other files are ignored.

    A local folder lists its own files (not sub-folders); an object-store prefix (``s3://bucket/prefix/``) its
    objects directly under the prefix; a glob (``*``, ``?``, ``[``) the matches. Local locations give plain
    paths (``file://`` URLs when given one), remote ones full URLs with their scheme.

    Raises:
        RemoteError: the location does not exist or holds no tar (HTTP cannot be listed: give a brace pattern).
    """
    location = os.fspath(location)
    if is_local(location):
        urls = _list_local(location)
    elif location.startswith(_HTTP_SCHEMES + ("pipe:",)):
        raise RemoteError(location, "cannot list this kind of URL; give a brace pattern ({000..127}) or a URL list")
    else:
        urls = _list_fsspec(location, options)
    if not urls:
        raise RemoteError(location, f"no shards found (expected files ending in {', '.join(TAR_SUFFIXES)})")
    return urls


def _list_local(location: str) -> list[str]:
    path = _local_path(location)
    if glob.has_magic(path):
        names = glob.glob(path)
    elif os.path.isdir(path):
        names = [os.path.join(path, name) for name in os.listdir(path)]
    else:
        raise RemoteError(location, "no such folder", transient=False)
    names = sorted(name for name in names if _is_tar(name) and os.path.isfile(name))
    if location.startswith("file://"):
        return [Path(os.path.abspath(name)).as_uri() for name in names]
    return names


def _list_fsspec(location: str, options: IOOptions) -> list[str]:
    fs, path = _url_to_fs(location, options)

    def attempt() -> list[str]:
        try:
            if glob.has_magic(path):
                found = fs.glob(path)
            else:
                fs.invalidate_cache(path)  # a listing cached before our own writes would miss them
                found = fs.ls(path, detail=False)
        except Exception as err:  # noqa: BLE001
            raise _fsspec_error(location, err, "list") from None
        return sorted(fs.unstrip_protocol(p) for p in found if _is_tar(p))

    return _retry(location, options, attempt)


# ------------------------------------------------------------------------------------------------------- write


@contextlib.contextmanager
def open_write(url: str | os.PathLike, options: IOOptions = IOOptions()) -> Iterator[BinaryIO]:  # noqa: B008
    """A binary file to write ``url`` whole: it appears complete when the block ends, or not at all.

    Local: a temp file in the same folder, fsync, then ``os.replace`` (atomic); parent folders are created.
    fsspec URLs: ``fs.open(path, "wb")`` (on S3 the object appears when the upload completes); an exception in
    the block aborts the upload where the backend can (``discard``) and removes a partial object otherwise.
    """
    url = os.fspath(url)
    if is_local(url):
        with _open_write_local(_local_path(url)) as f:
            yield f
        return
    if url.startswith(_HTTP_SCHEMES + ("pipe:",)):
        raise RemoteError(url, "cannot write to this kind of URL (use a local path or an fsspec URL such as s3://)")
    fs, path = _url_to_fs(url, options)
    try:
        f = fs.open(path, "wb")
    except Exception as err:  # noqa: BLE001
        raise _fsspec_error(url, err, "open for writing") from None
    try:
        yield f
    except BaseException:
        _abort_write(fs, path, f)
        raise
    f.close()


def _abort_write(fs, path: str, f) -> None:
    """Drop an unfinished upload without committing it."""
    with contextlib.suppress(Exception):
        from fsspec.spec import AbstractBufferedFile

        if isinstance(f, AbstractBufferedFile):  # abort the multipart upload and skip close()'s final flush
            f.discard()
            f.closed = True
        else:
            f.close()
            fs.rm(path)


@contextlib.contextmanager
def _open_write_local(path: str) -> Iterator[BinaryIO]:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
