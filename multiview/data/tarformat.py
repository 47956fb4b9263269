"""The tar format, read two ways: by header scan with random access (the indexed reader) and front to back as a
stream (the streaming reader), sharing one header parser.

Understands ustar, PAX (``path`` / ``size`` records) and GNU long names; regular files only. Why not ``tarfile``:
reading a stream, it takes the end of the data for the end of the archive (a tar cut between two members reads
as whole) and it costs about 47 us per member against about 4 us here (benchmarks/README.md, "Streaming").
Errors are ValueError naming the byte offset; callers add the shard.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
from collections.abc import Iterator
from typing import BinaryIO

BLOCK = 512
_META = (b"x", b"L", b"g", b"K")  # PAX and GNU long-name headers: they describe the next member
_REGULAR = (b"0", b"\0", b"7")  # regular files (7: contiguous)
_COMPRESSED = ((b"\x1f\x8b", gzip.open), (b"BZh", bz2.open), (b"\xfd7zXZ", lzma.open))


def _octal(field: bytes) -> int:
    """A tar number field: NUL/space-padded octal ASCII, or GNU base-256 when the high bit is set."""
    if field and field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _pax_records(data: bytes) -> dict[str, str]:
    """``"<len> key=value\\n"`` records of a PAX extended header."""
    records, pos = {}, 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        records[key.decode()] = value.decode("utf-8", "replace")
        pos += length
    return records


def parse_header(header: bytes, offset: int, pending: dict[str, str]) -> tuple[bytes, int] | None:
    """``(type flag, data length)`` of a 512-byte header; None for the end-of-archive (zero) block.

    Raises ValueError for a bad checksum ("not a tar file" at byte 0). ``pending`` holds the PAX records that
    apply to this member (a PAX ``size`` replaces the octal one, for members beyond 8 GiB).
    """
    if header == bytes(BLOCK):
        return None
    stored = _octal(header[148:156]) if header[148:156].strip(b" \0").isdigit() else -1
    if stored != sum(header[:148]) + 8 * 32 + sum(header[156:]):
        raise ValueError(
            "not a tar file (no valid header at byte 0)" if offset == 0 else f"corrupt tar header at byte {offset}"
        )
    kind, length = header[156:157], _octal(header[124:136])
    if kind not in _META and "size" in pending:
        length = int(pending["size"])
    return kind, length


def meta_update(kind: bytes, data: bytes, pending: dict[str, str]) -> None:
    """Fold a PAX or GNU long-name header's data into the records of the next member."""
    if kind == b"x":
        pending.update(_pax_records(data))
    elif kind == b"L":
        pending["path"] = data.split(b"\0", 1)[0].decode("utf-8", "replace")


def member_name(header: bytes, pending: dict[str, str]) -> str:
    """The member's path: a PAX / GNU long name, else the ustar prefix and name."""
    name = header[0:100].split(b"\0", 1)[0].decode("utf-8", "replace")
    prefix = header[345:500].split(b"\0", 1)[0] if header[257:263] == b"ustar\0" else b""
    if prefix:
        name = f"{prefix.decode('utf-8', 'replace')}/{name}"
    return pending.get("path", name)


def padded(length: int) -> int:
    """Bytes a member's data takes in the archive (rounded up to whole blocks)."""
    return -(-length // BLOCK) * BLOCK


def scan_tar(fd: int, size: int) -> Iterator[tuple[str, int, int]]:
    """The regular files of an uncompressed tar file as ``(name, data offset, data size)``, reading headers only.

    Raises ValueError naming the byte offset for a bad checksum and for a header or data that runs past ``size``
    (a truncated file).
    """
    offset, pending = 0, {}
    while True:
        if offset + BLOCK > size:
            if offset == size and offset > 0:
                return  # no end-of-archive blocks: the byte-size check against the manifest catches a cut here
            if offset == 0:
                raise ValueError(f"not a tar file ({size} bytes: shorter than one {BLOCK}-byte header)")
            raise ValueError(f"truncated tar: header at byte {offset} runs past the end ({size} bytes)")
        header = os.pread(fd, BLOCK, offset)
        parsed = parse_header(header, offset, pending)
        if parsed is None:
            return
        kind, length = parsed
        data_at = offset + BLOCK
        if data_at + length > size:
            raise ValueError(f"truncated tar: member at byte {offset} runs past the end ({size} bytes)")
        offset = data_at + padded(length)
        if kind in _META:
            meta_update(kind, os.pread(fd, length, data_at), pending)
            continue
        name, pending = member_name(header, pending), {}
        if kind in _REGULAR:
            yield name, data_at, length


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    """``n`` bytes, or fewer only at the end of the stream."""
    data = stream.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = stream.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class _Prefixed(io.RawIOBase):
    """``head`` bytes already read, then the rest of ``raw``: lets a decompressor see a stream from its start."""

    def __init__(self, head: bytes, raw: BinaryIO):
        self.head, self.raw = head, raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def decompressed(stream: BinaryIO) -> BinaryIO:
    """``stream`` itself for a plain tar; a decompressing reader for a gzip, bzip2 or xz one (by magic bytes)."""
    head = _read_exact(stream, 6)
    raw = io.BufferedReader(_Prefixed(head, stream), buffer_size=1 << 16)
    for magic, opener in _COMPRESSED:
        if head.startswith(magic):
            return opener(raw)
    return raw


def stream_members(stream: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """The regular files of a tar stream as ``(name, data)``, front to back (gzip / bzip2 / xz decompressed).

    Raises ValueError naming the byte offset when the stream ends inside a header or a member, or without the
    end-of-archive marker (a tar cut between two members), and for a corrupt header.
    """
    stream = decompressed(stream)
    offset, pending = 0, {}
    while True:
        header = _read_exact(stream, BLOCK)
        if len(header) < BLOCK:
            if offset == 0:
                raise ValueError(f"not a tar file ({len(header)} bytes: shorter than one {BLOCK}-byte header)")
            if not header:
                raise ValueError(f"truncated tar: the stream ends at byte {offset} without the end-of-archive marker")
            raise ValueError(f"truncated tar: header at byte {offset} cut after {len(header)} bytes")
        parsed = parse_header(header, offset, pending)
        if parsed is None:
            return
        kind, length = parsed
        data = _read_exact(stream, length)
        if len(data) < length or len(_read_exact(stream, padded(length) - length)) < padded(length) - length:
            raise ValueError(f"truncated tar: member at byte {offset} ({length} bytes) runs past the end")
        offset += BLOCK + padded(length)
        if kind in _META:
            meta_update(kind, data, pending)
            continue
        name, pending = member_name(header, pending), {}
        if kind in _REGULAR:
            yield name, data
