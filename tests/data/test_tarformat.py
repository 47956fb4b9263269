"""The tar reader shared by both readers: the same members as Python's tarfile, and every cut detected."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile

import pytest

from multiview.data.tarformat import BLOCK, stream_members


def make_tar(fmt=tarfile.PAX_FORMAT, n=6) -> tuple[bytes, list[tuple[str, bytes]], list[int]]:
    """A tar of ``n`` members with short, long (> 100 chars) and nested names; the byte offset after each."""
    buf = io.BytesIO()
    members, ends = [], []
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for i in range(n):
            name = f"a/b/k{i}.png" if i % 3 else f"{'long' * 30}{i}.npy"
            data = bytes([i]) * (100 + 600 * i)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            members.append((name, data))
            ends.append(buf.tell())
    return buf.getvalue(), members, ends


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_same_members_as_tarfile(fmt):
    if fmt == tarfile.USTAR_FORMAT:
        with pytest.raises(ValueError):  # ustar cannot hold a 120-character name: tarfile refuses to write it
            make_tar(fmt)
        return
    data, members, _ = make_tar(fmt)
    assert list(stream_members(io.BytesIO(data))) == members


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress])
def test_compressed_tars_are_read_by_their_magic_bytes(compress):
    data, members, _ = make_tar()
    assert list(stream_members(io.BytesIO(compress(data)))) == members


def test_every_cut_is_an_error_naming_the_byte():
    data, members, ends = make_tar()
    between = ends[2]  # a cut exactly between two members: tarfile reads this as a whole, shorter archive
    with pytest.raises(ValueError, match=f"ends at byte {between} without the end-of-archive marker"):
        list(stream_members(io.BytesIO(data[:between])))
    with pytest.raises(ValueError, match="truncated tar: member at byte .* runs past the end"):
        list(stream_members(io.BytesIO(data[: ends[3] - 700])))
    with pytest.raises(ValueError, match="truncated tar: header at byte .* cut after 100 bytes"):
        list(stream_members(io.BytesIO(data[: between + 100])))
    got = []
    with pytest.raises(ValueError):
        for member in stream_members(io.BytesIO(data[:between])):
            got.append(member)
    assert got == members[:3]  # what came before the cut is read


def test_not_a_tar_and_a_corrupt_header():
    with pytest.raises(ValueError, match="not a tar file \\(no valid header at byte 0\\)"):
        list(stream_members(io.BytesIO(b"hello" * 200)))
    with pytest.raises(ValueError, match="not a tar file \\(0 bytes"):
        list(stream_members(io.BytesIO(b"")))
    data, _, ends = make_tar()
    broken = bytearray(data)
    broken[ends[1] + 10] ^= 0xFF  # inside the name field of the third member's header
    with pytest.raises(ValueError, match=f"corrupt tar header at byte {ends[1]}"):
        list(stream_members(io.BytesIO(bytes(broken))))
    assert BLOCK == 512
