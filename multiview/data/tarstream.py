"""Read one shard front to back as a stream of samples (no seek, no index), and decode them safely.

The tar is parsed by webdataset's own stages (``tar_file_expander`` groups nothing and skips ``__meta__``
members; ``group_by_keys`` makes samples by WebDataset's key rule), fed by our opener
(:func:`multiview.data.remote.open_stream`: timeouts, bounded retries, resumed HTTP reads). Decoding is ours
(:func:`multiview.data.fields.decode_value`): nothing is unpickled, ``.pth .pyd .pickle`` are refused.

Every failure is a :class:`ShardError` naming the URL (and the key and field where there is one).
"""

from __future__ import annotations

import io
import logging
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from webdataset.filters import reraise_exception
from webdataset.tariterators import group_by_keys, tar_file_expander

from multiview.data.errors import ShardError
from multiview.data.fields import KNOWN_EXTS, FieldError, decode_value
from multiview.data.remote import IOOptions, RemoteError, open_stream

log = logging.getLogger("multiview.data")
_META_KEYS = ("__key__", "__url__", "__local_path__")


def raw_samples(url: str, options: IOOptions | None = None) -> Iterator[dict[str, Any]]:
    """The samples of one shard in stored order: ``{"__key__", "__url__", "<field>": bytes, ...}``.

    A shard that cannot be opened, is cut short or is not a tar raises ShardError naming the URL and how many
    samples came before; the samples before it are yielded first (streaming cannot know the end in advance).
    """
    options = options or IOOptions()
    try:
        stream = open_stream(url, options)
    except RemoteError as err:
        raise ShardError(url, err.cause if hasattr(err, "cause") else str(err)) from None
    done = 0
    checked = _EndCheck(stream)
    try:
        files = tar_file_expander([{"url": url, "stream": checked}], handler=reraise_exception)
        for sample in group_by_keys(files, handler=reraise_exception):
            yield sample
            done += 1
        if not checked.ends_whole():
            cause = "truncated tar: the stream ended without the end-of-archive marker"
            raise ShardError(url, f"{cause} (after {done} complete sample(s))")
    except RemoteError as err:
        raise ShardError(url, f"{getattr(err, 'cause', err)} (after {done} complete sample(s))") from None
    except (tarfile.TarError, OSError, EOFError, ValueError) as err:
        raise ShardError(url, f"{_tar_cause(err, done)} (after {done} complete sample(s))") from None
    finally:
        stream.close()


class _EndCheck(io.RawIOBase):
    """A pass-through reader that keeps the first and last bytes it returned, so the end of a tar can be checked.

    tarfile reading a stream takes the end of the data for the end of the archive, so a tar cut exactly between
    two members would pass as whole; a whole uncompressed tar ends with two zero blocks (the end-of-archive
    marker). Compressed tars carry their own length and checksum, so they are not checked here.
    """

    _MARKER = 1024
    _COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ")

    def __init__(self, raw):
        self.raw, self.head, self.tail = raw, b"", b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        if len(self.head) < 8:
            self.head = (self.head + data)[:8]
        self.tail = (self.tail + data)[-self._MARKER :]
        return n

    def ends_whole(self) -> bool:
        """Read what tarfile left (padding) and check that the data ends with the end-of-archive marker."""
        while self.read(1 << 16):
            pass
        if self.head.startswith(self._COMPRESSED):
            return True
        return self.tail == bytes(self._MARKER)


def _tar_cause(err: BaseException, done: int) -> str:
    """A readable cause for a tar stream error (webdataset appends the stream object to ``args``)."""
    text = str(err.args[0]) if err.args else type(err).__name__
    text = text.split(" @ ")[0]
    if isinstance(err, tarfile.ReadError) and done == 0 and "empty" not in text:
        return f"not a tar file ({text})"
    if "unexpected end" in text or isinstance(err, EOFError):
        return f"truncated tar ({text})"
    return text


def field_ext(field: str) -> str:
    """``"image.png"`` -> ``"png"``; a bare extension (``"jpg"``, foreign shards' usual field) is its own ext."""
    return field.rpartition(".")[2].lower()


def field_name(field: str) -> str:
    """``"image.png"`` -> ``"image"``; ``"jpg"`` -> ``"jpg"`` (what a recipe names it by)."""
    return field.rpartition(".")[0] or field


def decode_raw(
    raw: Mapping[str, Any],
    fields: Sequence[str] | None = None,
    rename: Mapping[str, str] | None = None,
    ignored: set[str] | None = None,
) -> dict[str, Any]:
    """Decode a raw sample -> ``{"__key__", "__shard__", <name>: value, <name>.sample_rate: int, ...}``.

    Args:
        raw: ``{"__key__", "__url__", "<field>": bytes}`` from :func:`raw_samples`.
        fields: names (without extension, shard names or rename targets) to decode; None decodes every field
            whose extension we know and leaves out the others (their names are added to ``ignored``).
        rename: ``{name in the batch: name in the shard}``, e.g. ``{"image": "jpg", "label": "cls"}``.
        ignored: collects the fields left out (so the caller can say so once).

    Raises:
        ShardError naming the URL, key and field: a missing field, bytes that do not decode.
    """
    url, key = str(raw.get("__url__", "?")), str(raw["__key__"])
    by_name = {field_name(f): f for f in raw if f not in _META_KEYS}
    source_of = dict(rename or {})
    target_of = {source: target for target, source in source_of.items()}
    if fields is None:
        wanted = [n for n, f in by_name.items() if field_ext(f) in KNOWN_EXTS]
        if ignored is not None:
            ignored.update(f for n, f in by_name.items() if n not in wanted)
    else:
        wanted = [source_of.get(name, name) for name in fields]
    sample: dict[str, Any] = {"__key__": key, "__shard__": url}
    for name in wanted:
        member = by_name.get(name)
        if member is None:
            raise ShardError(url, f"missing field; the sample has {sorted(by_name.values())}", key, name)
        try:
            value = decode_value(field_ext(member), raw[member])
        except FieldError as err:
            raise ShardError(url, str(err), key, member) from None
        out = target_of.get(name, name)
        if isinstance(value, tuple):  # audio: (waveform, sample rate)
            sample[out], sample[f"{out}.sample_rate"] = value
        else:
            sample[out] = value
    return sample
