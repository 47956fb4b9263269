"""Fuzz the field decoders: every input either decodes to the documented type or raises FieldError.

Inputs are mutated valid files (byte flips, a run of 8 flipped bytes, truncations, insertions, random header
bytes, format-aware edits: PNG chunks re-CRC'd so the decoder gets past the checksum, WAV header fields, .npy
headers with odd dtypes / huge shapes / truncation) and plain random bytes. Hypothesis is derandomised, so a run
is reproducible; counts per run (``EXAMPLES``):

    png 2,500 · jpg 1,500 + webp 1,500 (in a child process) · wav 2,500 · flac 1,200 + ogg 600 + mp3 600 ·
    npy 3,000 · cls / json / txt 1,500 -- 14,900 inputs in all: 41-43 s on the shared 2-core machine (load 3-5).

PNG decoding runs in this process: it must never crash it again (torchvision's libpng path segfaulted on 84 of
302 fuzzed PNGs). JPEG and WebP keep torchvision's decoders (fuzzed clean, but not proven), so their fuzz runs in a
child: a crash there is a failing test that names the input, not a dead test run.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import wave
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from multiview.data.fields import FieldError, decode_value

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # refused by size anyway
EXAMPLES = {"png": 2500, "jpg": 1500, "webp": 1500, "wav": 2500, "flac": 1200, "ogg": 600, "mp3": 600}
EXAMPLES |= {"npy": 3000, "text": 1500}
_RNG = np.random.default_rng(14)


def _fuzz_settings(ext: str):
    return settings(
        max_examples=EXAMPLES[ext],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


# ------------------------------------------------------------------------------------------------ corpora
def _image(fmt: str, mode: str, size: tuple[int, int], **options) -> bytes:
    h, w = size
    arr = _RNG.integers(0, 256, (h, w, 4), dtype=np.uint8)
    arr[: h // 2] = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None]  # half smooth, half noise
    im = Image.fromarray(arr, "RGBA")
    im = im.convert(mode) if mode not in ("I;16", "P-trns") else im
    if mode == "I;16":
        im = Image.fromarray(_RNG.integers(0, 65535, size, dtype=np.uint16))
    if mode == "P-trns":
        im, options = im.convert("P"), {**options, "transparency": 0}
    buf = io.BytesIO()
    im.save(buf, format=fmt, **options)
    return buf.getvalue()


def _audio(fmt: str, subtype: str, channels: int, frames: int = 800, rate: int = 16000) -> bytes:
    import soundfile as sf

    t = np.arange(frames)[:, None] * np.arange(1, channels + 1)[None]
    buf = io.BytesIO()
    sf.write(buf, (0.5 * np.sin(t / 7.0)).astype(np.float32), rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _pcm_wav(width: int, channels: int, frames: int = 64) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(8000)
        w.writeframes(_RNG.integers(0, 256, frames * width * channels, dtype=np.uint8).tobytes())
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


PNG = [
    _image("PNG", mode, size)
    for mode, size in [("L", (9, 7)), ("LA", (5, 6)), ("RGB", (12, 16)), ("RGBA", (8, 8)), ("P", (7, 9))]
    + [("P-trns", (6, 6)), ("1", (9, 17)), ("I;16", (4, 5)), ("RGB", (1, 1))]
] + [_image("PNG", "RGB", (20, 20), optimize=True)]
JPEG = [_image("JPEG", "L", (16, 16)), _image("JPEG", "RGB", (24, 17), quality=60)]
JPEG += [_image("JPEG", "RGB", (16, 16), progressive=True), _image("JPEG", "CMYK", (8, 8))]
WEBP = [_image("WEBP", "RGB", (16, 16), lossless=True), _image("WEBP", "RGBA", (9, 11), lossless=True)]
WEBP += [_image("WEBP", "RGB", (16, 16), quality=50)]
WAV = [_pcm_wav(1, 1), _pcm_wav(2, 2), _pcm_wav(4, 1), _audio("WAV", "FLOAT", 1, 64), _audio("WAV", "PCM_24", 2, 64)]
FLAC = [_audio("FLAC", "PCM_16", 1), _audio("FLAC", "PCM_24", 2, 300)]
OGG = [_audio("OGG", "VORBIS", 1, 400)]
MP3 = [_audio("MP3", "MPEG_LAYER_III", 1, 1200)]
NPY = [
    _npy(a)
    for a in [
        np.arange(6, dtype=np.float32),
        np.arange(12, dtype=">i4").reshape(3, 4),
        np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
        np.array([True, False, True]),
        np.zeros((2, 0, 3), np.uint16),
        np.array(2.5, np.float16),
        np.ones(3, np.complex64),
    ]
]
NPY_DESCRS = ["<f4", ">i4", "|b1", "<i9", "<i3", "<f0", "|V8", "|S3", "<U2", "<M8[s]", "<m8[s]", "<f16", "|O", "<c32"]
NPY_DESCRS += ["[('a', '<i4')]", "<u8", "=f8", "|u1", "<f2", ""]


# ------------------------------------------------------------------------------------------------ mutations
@st.composite
def _generic(draw, data: bytes) -> bytes:
    """One generic mutation of ``data``: flips, an 8-byte run, truncation, insertion, random header bytes."""
    b = bytearray(data)
    kind = draw(st.sampled_from(["flip", "run", "truncate", "insert", "header"]))
    if kind == "flip":
        for pos, xor in draw(
            st.lists(st.tuples(st.integers(0, len(b) - 1), st.integers(1, 255)), min_size=1, max_size=8)
        ):
            b[pos] ^= xor
    elif kind == "run":
        pos = draw(st.integers(0, max(0, len(b) - 8)))
        b[pos : pos + 8] = bytes(x ^ 0xFF for x in b[pos : pos + 8])
    elif kind == "truncate":
        del b[draw(st.integers(0, len(b) - 1)) :]
    elif kind == "insert":
        pos = draw(st.integers(0, len(b)))
        b[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    else:
        patch = draw(st.binary(min_size=1, max_size=8))
        pos = draw(st.integers(0, min(len(b), 64) - 1))
        b[pos : pos + len(patch)] = patch
    return bytes(b)


@st.composite
def _png_chunk_edit(draw, data: bytes) -> bytes:
    """Mutate one chunk's body (IHDR, PLTE, IDAT, ...) and recompute its CRC, so the edit reaches the decoder."""
    chunks, pos = [], 8
    while pos + 12 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        chunks.append((pos, length))
        pos += 12 + length
    start, length = draw(st.sampled_from(chunks))
    body = bytearray(data[start + 8 : start + 8 + length])
    if body:
        for i, xor in draw(
            st.lists(st.tuples(st.integers(0, len(body) - 1), st.integers(1, 255)), min_size=1, max_size=4)
        ):
            body[i] ^= xor
    kind = data[start + 4 : start + 8]
    crc = struct.pack(">I", zlib.crc32(kind + bytes(body)))
    return data[:start] + struct.pack(">I", len(body)) + kind + bytes(body) + crc + data[start + 12 + length :]


@st.composite
def _wav_field_edit(draw, data: bytes) -> bytes:
    """Overwrite one header field of a canonical 44-byte-header WAV (sizes, format tag, channels, rate, width)."""
    offset, size = draw(
        st.sampled_from([(4, 4), (16, 4), (20, 2), (22, 2), (24, 4), (28, 4), (32, 2), (34, 2), (40, 4)])
    )
    value = draw(
        st.sampled_from([0, 1, 2, 3, 8, 24, 255, 0xFFFE, 2**size * 8 - 1] + [draw(st.integers(0, 2 ** (8 * size) - 1))])
    )
    return data[:offset] + (value % 2 ** (8 * size)).to_bytes(size, "little") + data[offset + size :]


@st.composite
def _npy_header_edit(draw, data: bytes) -> bytes:
    """A new header: any descr (odd ones included), a shape up to 2**40 per dim, version 1-3, body as is."""
    body = data[data.index(b"\n") + 1 :]
    descr = draw(st.sampled_from(NPY_DESCRS))
    shape = draw(st.lists(st.one_of(st.integers(0, 8), st.integers(0, 2**40)), max_size=4))
    fortran = draw(st.booleans())
    text = f"{{'descr': {descr if descr.startswith('[') else repr(descr)}, 'fortran_order': {fortran}, 'shape': {tuple(shape)}, }}"
    text = draw(st.sampled_from([text, text[: draw(st.integers(0, len(text)))]]))  # truncated headers too
    header = text.encode("latin1") + b"\n"
    version = draw(st.integers(1, 3))
    size = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header + body


def _inputs(corpus: list[bytes], *special) -> st.SearchStrategy[bytes]:
    """Mutated corpus files (generic and format-aware) and random bytes, with or without the corpus's magic."""
    base = st.sampled_from(corpus)
    strategies = [base.flatmap(_generic), st.binary(max_size=300)]
    strategies += [base.flatmap(edit) for edit in special]
    strategies.append(st.binary(max_size=200).map(lambda tail: corpus[0][:12] + tail))
    return st.one_of(*strategies)


# ------------------------------------------------------------------------------------------------ checks
def _check(ext: str, data: bytes) -> None:
    """``decode_value`` decodes to the documented type or raises FieldError; anything else fails the test."""
    try:
        value = decode_value(ext, data)
    except FieldError:
        return
    if ext in ("png", "jpg", "webp"):
        assert isinstance(value, torch.Tensor) and value.ndim == 3 and value.dtype in (torch.uint8, torch.uint16)
        assert value.shape[0] in (1, 2, 3, 4), value.shape
    elif ext in ("wav", "flac", "ogg", "mp3"):
        waveform, rate = value
        assert waveform.dtype == torch.float32 and waveform.ndim == 2 and isinstance(rate, int) and rate > 0
    elif ext == "npy":
        assert isinstance(value, torch.Tensor) and value.is_contiguous()


@_fuzz_settings("png")
@given(_inputs(PNG, _png_chunk_edit))
def test_png_fuzz_never_crashes_in_process(data: bytes) -> None:
    _check("png", data)


@_fuzz_settings("wav")
@given(_inputs(WAV, _wav_field_edit))
def test_wav_fuzz(data: bytes) -> None:
    _check("wav", data)


@_fuzz_settings("flac")
@given(_inputs(FLAC))
def test_flac_fuzz(data: bytes) -> None:
    _check("flac", data)


@_fuzz_settings("ogg")
@given(_inputs(OGG))
def test_ogg_fuzz(data: bytes) -> None:
    _check("ogg", data)


@_fuzz_settings("mp3")
@given(_inputs(MP3))
def test_mp3_fuzz(data: bytes) -> None:
    _check("mp3", data)


@_fuzz_settings("npy")
@given(_inputs(NPY, _npy_header_edit))
def test_npy_fuzz(data: bytes) -> None:
    _check("npy", data)


@_fuzz_settings("text")
@given(st.sampled_from(["cls", "json", "txt"]), st.one_of(st.binary(max_size=64), st.text(max_size=64).map(str.encode)))
def test_text_fuzz(ext: str, data: bytes) -> None:
    _check(ext, data)


def fuzz_torchvision_codecs(last_input: str) -> None:
    """Fuzz JPEG and WebP (decoded by torchvision); run in a child, each input written to ``last_input`` first."""
    fd = os.open(last_input, os.O_WRONLY | os.O_CREAT)
    for ext, corpus in (("jpg", JPEG), ("webp", WEBP)):
        _fuzz_saving_inputs(ext, corpus, fd)()


def _fuzz_saving_inputs(ext: str, corpus: list[bytes], fd: int):
    @_fuzz_settings(ext)
    @given(_inputs(corpus))
    def fuzz(data: bytes) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        _check(ext, data)

    return fuzz


def test_jpeg_and_webp_fuzz_in_a_child(tmp_path: Path) -> None:
    last = tmp_path / "last_input.bin"
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import test_fields_fuzz as t; t.fuzz_torchvision_codecs({str(last)!r})"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    if proc.returncode < 0:
        pytest.fail(f"torchvision died (signal {-proc.returncode}) decoding the input saved at {last}")
    assert proc.returncode == 0, proc.stderr[-4000:]
