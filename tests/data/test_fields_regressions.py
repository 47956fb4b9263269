"""One test per decoder failure of issue 14 (items 1 and 2) and the foreign audio formats.

Each of the bad-input cases crashed the process or escaped as a raw exception before the fix: the PNG IDAT
flip killed it with SIGSEGV in torchvision's libpng path; the .npy cases raised TypeError / tokenize.TokenError /
SyntaxError or tried to allocate the claimed shape; the WAV cases raised a bare RuntimeError / EOFError.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import wave
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from multiview.data import Audio, iter_samples, write_dataset
from multiview.data.fields import AUDIO_EXTS, FieldError, decode_value, describe, encode_value
from multiview.data.manifest import infer_modality


def _png(arr: np.ndarray, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **options)
    return buf.getvalue()


def _idat_flipped() -> bytes:
    """A 32 x 32 RGB PNG with 8 bytes flipped inside its IDAT stream (libpng: 'IDAT: incorrect data check')."""
    data = bytearray(_png(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    start = data.index(b"IDAT") + 4 + 20
    data[start : start + 8] = bytes(b ^ 0xFF for b in data[start : start + 8])
    return bytes(data)


# ------------------------------------------------------------------------------------------------ images
def test_png_with_flipped_idat_bytes_is_a_field_error_in_process():
    with pytest.raises(FieldError, match=r"corrupt or unsupported image bytes \(\d+ bytes\)"):
        decode_value("png", _idat_flipped())


def test_png_with_flipped_idat_bytes_does_not_kill_a_process():
    """The same input in a fresh interpreter: exit 0, not 139 / -11 (what torchvision's decode_png did)."""
    code = (
        "import sys; from multiview.data.fields import decode_value, FieldError\n"
        "try:\n    decode_value(sys.argv[1], sys.stdin.buffer.read())\nexcept FieldError:\n    sys.exit(0)\nsys.exit(3)"
    )
    for ext in ("png", "jpg"):  # a PNG named .jpg must not reach torchvision's libpng either
        proc = subprocess.run(
            [sys.executable, "-c", code, ext], input=_idat_flipped(), capture_output=True, timeout=120
        )
        assert proc.returncode == 0, (ext, proc.returncode, proc.stderr[-2000:])


def test_png_claiming_a_huge_size_is_refused_before_allocating():
    data = bytearray(_png(np.zeros((4, 4), np.uint8)))
    data[16:24] = struct.pack(">II", 9_000, 9_000)  # IHDR width, height; fix the CRC so PIL reads on
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    with pytest.raises(FieldError, match=r"PNG claims 9000 x 9000 pixels .* more than deflate can expand"):
        decode_value("png", bytes(data))


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "1", "I;16"])
def test_png_decodes_as_torchvision_did(mode):
    from torchvision.io import ImageReadMode, decode_png

    rng = np.random.default_rng(1)
    if mode == "I;16":
        data = _png(rng.integers(0, 65535, (5, 7), dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 256, (5, 7, 4), dtype=np.uint8), "RGBA").convert(mode)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
    expected = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED)
    got = decode_value("png", data)
    assert got.dtype == expected.dtype and torch.equal(got, expected)


def test_palette_png_decodes_to_its_colours():
    """torchvision returned the palette indices ([1, H, W]); the colours are what a model should see."""
    rgb = np.random.default_rng(2).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    palette = Image.fromarray(rgb).convert("P")
    expected = torch.from_numpy(np.array(palette.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(decode_value("png", _png_image(palette)), expected)
    rgba = decode_value("png", _png_image(palette, transparency=0))
    assert rgba.shape == (4, 6, 5) and torch.equal(rgba[:3], expected)


def _png_image(image: Image.Image, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **options)
    return buf.getvalue()


def test_jpeg_and_webp_keep_the_torchvision_path():
    from torchvision.io import ImageReadMode, decode_image

    arr = np.random.default_rng(3).integers(0, 256, (9, 8, 3), dtype=np.uint8)
    for fmt, ext in (("JPEG", "jpg"), ("WEBP", "webp")):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt)
        tensor = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
        assert torch.equal(decode_value(ext, buf.getvalue()), decode_image(tensor, mode=ImageReadMode.UNCHANGED))


# ------------------------------------------------------------------------------------------------ .npy
def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _npy_header(header: str, body: bytes = b"", version: int = 1) -> bytes:
    raw = header.encode("latin1") + b"\n"
    size = struct.pack("<H" if version == 1 else "<I", len(raw))
    return b"\x93NUMPY" + bytes([version, 0]) + size + raw + body


@pytest.mark.parametrize(
    "descr",
    ["<i9", "<i3", "<f0", "|V8", "|S3", "<U2", "<M8[s]", "<m8[s]", "<f16", "<c32", "|O", "[('a', '<i4')]"],
)
def test_npy_with_an_unsupported_dtype_names_it(descr):
    quoted = descr if descr.startswith("[") else repr(descr)
    data = _npy_header(f"{{'descr': {quoted}, 'fortran_order': False, 'shape': (2,), }}", b"\0" * 64)
    with pytest.raises(FieldError, match=r"unsupported \.npy dtype .*; expected bool, int8-64"):
        decode_value("npy", data)


def test_npy_of_a_real_longdouble_array_is_refused():
    with pytest.raises(FieldError, match=r"unsupported \.npy dtype '<f16'"):
        decode_value("npy", _npy(np.zeros(3, np.longdouble)))


@pytest.mark.parametrize("cut", [12, 20, 40, 60])
def test_npy_with_a_truncated_header_is_a_field_error(cut):
    """numpy raised tokenize.TokenError / SyntaxError on these."""
    data = _npy(np.arange(4, dtype=np.float32))
    header_end = data.index(b"\n") + 1
    truncated = data[:8] + struct.pack("<H", cut - 10) + data[10:cut] + b"\n" + data[header_end:]
    with pytest.raises(FieldError, match=r"\.npy"):
        decode_value("npy", truncated)
    with pytest.raises(FieldError, match=r"truncated or oversized \.npy header"):
        decode_value("npy", data[:cut])


def test_npy_in_big_endian_order_is_converted_to_native():
    got = decode_value("npy", _npy(np.arange(5, dtype=">i4")))
    assert got.dtype == torch.int32 and got.tolist() == [0, 1, 2, 3, 4]
    got = decode_value("npy", _npy(np.array([[1.5, -2.0]], dtype=">f8")))
    assert got.dtype == torch.float64 and got.tolist() == [[1.5, -2.0]]


@pytest.mark.parametrize("shape", ["(100000, 100000, 10)", "(1099511627776,)", "(2**70,)".replace("2**70", str(2**70))])
def test_npy_claiming_a_huge_shape_is_refused_without_allocating(shape):
    """numpy allocated the claimed shape first (93 GiB - 1.8 TiB); the claim is now checked against the bytes."""
    data = _npy_header(f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}", b"\0" * 80)
    with pytest.raises(FieldError, match=r"header claims shape .* the member holds 80 bytes"):
        decode_value("npy", data)


def test_npy_other_header_layouts_and_versions_decode():
    body = np.arange(6, dtype="<i2").tobytes()
    for version in (1, 2, 3):
        data = _npy_header("{'shape': (2, 3), 'fortran_order': True, 'descr': '<i2'}", body, version)
        assert decode_value("npy", data).tolist() == [[0, 2, 4], [1, 3, 5]]
    assert decode_value("npy", _npy(np.asfortranarray(np.arange(6).reshape(2, 3)))).is_contiguous()


def test_npy_bool_bytes_other_than_0_1_become_true():
    data = _npy_header("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", b"\x00\x02\xff")
    assert decode_value("npy", data).tolist() == [False, True, True]


def test_npy_with_trailing_or_missing_bytes_is_refused():
    data = _npy(np.arange(4, dtype=np.int64))
    for bad in (data + b"\0", data[:-1]):
        with pytest.raises(FieldError, match=r"header claims shape \[4\] of <i8 \(32 bytes\)"):
            decode_value("npy", bad)


# ------------------------------------------------------------------------------------------------ WAV
def _wav(frames: int = 10) -> bytearray:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\1" * frames)
    return bytearray(buf.getvalue())


def test_wav_with_a_zero_size_fmt_chunk_is_a_field_error():
    data = _wav()
    data[16:20] = struct.pack("<I", 0)  # fmt chunk size
    with pytest.raises(FieldError, match=r"not a PCM WAV file \(\d+ bytes\)"):
        decode_value("wav", bytes(data))


def test_wav_whose_fmt_chunk_overruns_the_file_is_a_field_error():
    """The wave module raised a bare RuntimeError('') on these bytes (found by fuzzing)."""
    data = bytes.fromhex(
        "524946464c00000057415645666d7420f800000001000100409b1400803eb70002001000646174612800000000010001"
    )
    with pytest.raises(FieldError, match=r"not a PCM WAV file .*malformed chunk"):
        decode_value("wav", data)


def test_wav_with_a_zero_sample_rate_is_refused():
    data = _wav()
    data[24:28] = struct.pack("<I", 0)
    with pytest.raises(FieldError, match="WAV sample rate is 0"):
        decode_value("wav", bytes(data))


@pytest.mark.parametrize("subtype", ["FLOAT", "PCM_24", "DOUBLE"])
def test_wav_formats_the_wave_module_lacks_decode_through_soundfile(subtype):
    import soundfile as sf

    wav = (np.arange(-50, 50, dtype=np.float32) / 64.0)[:, None].repeat(2, 1)
    buf = io.BytesIO()
    sf.write(buf, wav, 11025, format="WAV", subtype=subtype)
    got, rate = decode_value("wav", buf.getvalue())
    assert rate == 11025 and got.shape == (2, 100) and torch.allclose(got, torch.from_numpy(wav.T), atol=1e-6)


# ------------------------------------------------------------------------------------------------ foreign audio
@pytest.mark.parametrize("ext", ["flac", "ogg", "mp3"])
def test_foreign_audio_round_trips_and_is_described_as_audio(ext):
    wave_in = (0.5 * np.sin(np.arange(3200) / 8.0)).astype(np.float32)[None].repeat(2, 0)
    data, info = encode_value(f"voice.{ext}", Audio(wave_in, 16000))
    got, rate = decode_value(ext, data)
    assert rate == 16000 and got.dtype == torch.float32 and got.shape[0] == 2
    assert info == describe(ext, (got, rate)) and info["sample_rate"] == 16000
    assert infer_modality(f"voice.{ext}", info) == ("audio", None)
    if ext == "flac":  # lossless at 16 bits
        assert torch.allclose(got, torch.from_numpy(wave_in), atol=1 / 32768)
    else:  # lossy: the same signal, roughly aligned
        n = min(got.shape[1], wave_in.shape[1])
        assert np.corrcoef(got[0, :n].numpy(), wave_in[0, :n])[0, 1] > 0.9


@pytest.mark.parametrize("ext", ["flac", "ogg", "mp3"])
def test_corrupt_foreign_audio_is_a_field_error(ext):
    data, _ = encode_value(f"a.{ext}", Audio(np.sin(np.arange(4000) / 5.0).astype(np.float32), 16000))
    bad = bytearray(data)
    bad[len(bad) // 2 :] = b"\xff" * (len(bad) - len(bad) // 2)
    for corrupt in (bytes(bad[: len(bad) // 3]), b"fLaC" + b"\0" * 50, b"", b"OggS" + bytes(range(60))):
        try:
            decode_value(ext, corrupt)
        except FieldError as err:
            assert f".{ext} audio" in str(err) and "0x" not in str(err)  # no "<BytesIO at 0x...>" in the message


def test_truncated_flac_is_a_field_error():
    data, _ = encode_value("a.flac", Audio(np.sin(np.arange(4000) / 5.0).astype(np.float32), 16000))
    with pytest.raises(FieldError, match=r"corrupt or unsupported \.flac audio"):
        decode_value("flac", data[:30])


def test_flac_fields_write_and_read_back_with_their_rate(tmp_path):
    samples = [
        {"__key__": f"k{i}", "voice.flac": Audio(np.zeros((1, 100 + i), np.float32), 22050), "label.cls": i}
        for i in range(3)
    ]
    manifest = write_dataset(tmp_path, {"train": samples})
    assert manifest["fields"]["voice.flac"]["modality"] == "audio"
    assert manifest["fields"]["voice.flac"]["sample_rate"] == 22050
    read = list(iter_samples(tmp_path, "train"))
    assert [r["voice"].shape[1] for r in read] == [100, 101, 102] and {r["voice.sample_rate"] for r in read} == {22050}
    assert {"wav", "flac", "ogg", "mp3"} <= AUDIO_EXTS


# ------------------------------------------------------------------------------------------------ text
@pytest.mark.parametrize("raw", [b"3\n", b" 3 \r\n", b"3\n\n", b"+3", b"\t3"])
def test_cls_tolerates_whitespace_and_newlines(raw):
    assert decode_value("cls", raw) == 3


@pytest.mark.parametrize("raw", ["٣".encode(), b"1_0", b"3 4", b"", b"0x3", b"9" * 100])
def test_cls_refuses_anything_but_one_ascii_int(raw):
    with pytest.raises(FieldError, match="must hold an ASCII int"):
        decode_value("cls", raw)


def test_deeply_nested_json_is_a_field_error():
    with pytest.raises(FieldError, match="invalid JSON"):
        decode_value("json", b"[" * 100_000)
