"""Field encoding (write time) and decoding (read time), one function per extension.

A field is named ``<name>.<ext>``; the extension alone decides how its bytes are stored and decoded
(docs/architecture.md section 1). Nothing is ever unpickled: ``.pth .pyd .pickle .pkl`` are refused both
when writing and when reading, and ``.npy`` is loaded with ``allow_pickle=False``.

Errors raised here are :class:`FieldError` (a ValueError) with the cause only; the caller adds the shard,
the key and the field, which it knows and this module does not.
"""

from __future__ import annotations

import ast
import io
import json
import re
import warnings
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multiview.core import wav as wav_codec

IMAGE_EXTS = frozenset({"png", "jpg", "jpeg", "webp"})
SOUNDFILE_EXTS = frozenset({"flac", "ogg", "mp3"})  # decoded by libsndfile (the soundfile package)
AUDIO_EXTS = SOUNDFILE_EXTS | {"wav"}  # each decodes to (waveform float32 [C, T], sample rate)
REFUSED_EXTS = frozenset({"pth", "pyd", "pickle", "pkl"})
KNOWN_EXTS = IMAGE_EXTS | AUDIO_EXTS | {"npy", "cls", "json", "txt"}
FIELD_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
_SF_FORMAT = {"flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"), "mp3": ("MP3", "MPEG_LAYER_III")}

# torchvision 0.29 deprecates its image codecs in favour of torchcodec, which these machines cannot install
# (docs/architecture.md names torchvision.io as the decoder); silence only that message, once, not per sample.
warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities of TorchVision", category=DeprecationWarning
)


class FieldError(ValueError):
    """A field's value or bytes cannot be encoded / decoded; the message says why."""


@dataclass(frozen=True)
class Audio:
    """A waveform to store as ``.wav`` (PCM 16-bit) or ``.npy`` (float32), with its sample rate.

    Args:
        waveform: ``[C, T]`` or ``[T]``; float in [-1, 1] (quantised to int16 for WAV) or int16 (kept exactly).
        sample_rate: samples per second, > 0.
    """

    waveform: Any
    sample_rate: int


def split_field(field: str) -> tuple[str, str]:
    """``"image.png"`` -> ``("image", "png")``; raises FieldError on a missing or refused extension."""
    name, dot, ext = field.rpartition(".")
    if not dot or not name:
        raise FieldError(f"field {field!r} has no extension; expected <name>.<ext> with ext in {sorted(KNOWN_EXTS)}")
    ext = ext.lower()
    if ext in REFUSED_EXTS:
        raise FieldError(f"field {field!r}: .{ext} is refused (pickled data is never stored or loaded)")
    if ext not in KNOWN_EXTS:
        raise FieldError(f"field {field!r}: unknown extension .{ext}; expected one of {sorted(KNOWN_EXTS)}")
    return name, ext


def check_field_name(field: str) -> tuple[str, str]:
    """Like :func:`split_field`, and the name must be ``[A-Za-z0-9_-]+`` (a dot would change the key)."""
    name, ext = split_field(field)
    if not FIELD_NAME_RE.match(name):
        raise FieldError(f"field {field!r}: name {name!r} must match [A-Za-z0-9_-]+ (no dots, no slashes)")
    return name, ext


# ----------------------------------------------------------------------------------------------- encoding
def _read_source(value: Any) -> bytes | None:
    """Bytes of a bytes / Path value, or None when the value is something to encode."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, Path):
        try:
            return value.read_bytes()
        except OSError as err:
            raise FieldError(f"cannot read {value}: {err.strerror or err}") from err
    return None


def _image_array(value: Any) -> np.ndarray:
    """np.uint8 [H, W] / [H, W, C], torch.uint8 [C, H, W] or PIL image -> np.uint8 [H, W] / [H, W, C]."""
    if isinstance(value, torch.Tensor):
        if value.dtype != torch.uint8 or value.ndim not in (2, 3):
            raise FieldError(f"image tensor must be torch.uint8 [C, H, W]; got {value.dtype} {list(value.shape)}")
        arr = value.numpy() if value.ndim == 2 else np.moveaxis(value.numpy(), 0, -1)
    elif isinstance(value, np.ndarray):
        arr = value
    elif hasattr(value, "mode") and hasattr(value, "save"):  # a PIL image; PIL is only imported when needed
        arr = np.asarray(value)
    else:
        raise FieldError(f"cannot store {type(value).__name__} as an image; expected array, tensor, PIL, bytes, Path")
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4)):
        raise FieldError(f"image array must be uint8 [H, W] or [H, W, 1|3|4]; got {arr.dtype} {list(arr.shape)}")
    return arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr


def encode_image(value: Any, ext: str) -> bytes:
    """Encode an image (PNG and WebP lossless, JPEG quality 95)."""
    from PIL import Image

    arr = _image_array(value)
    buf = io.BytesIO()
    options = {"quality": 95} if ext in ("jpg", "jpeg") else {"lossless": True} if ext == "webp" else {}
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format=_PIL_FORMAT[ext], **options)
    return buf.getvalue()


def _audio_array(value: Any, ext: str) -> tuple[np.ndarray, int]:
    """Audio(waveform ``[C, T]`` or ``[T]``, rate) -> (``[C, T]`` float (finite) or int16 array, rate); checks both."""
    if not isinstance(value, Audio):
        raise FieldError(
            f"a .{ext} field needs Audio(waveform, sample_rate), bytes or a Path; got {type(value).__name__}"
        )
    wav = value.waveform.numpy() if isinstance(value.waveform, torch.Tensor) else np.asarray(value.waveform)
    rate = int(value.sample_rate)
    if rate <= 0:
        raise FieldError(f"sample_rate must be > 0; got {value.sample_rate}")
    if wav.ndim == 1:
        wav = wav[None]
    if wav.ndim != 2 or wav.shape[1] == 0:
        raise FieldError(f"waveform must be [C, T] or [T] with T > 0; got shape {list(wav.shape)}")
    if wav.dtype != np.int16 and not np.issubdtype(wav.dtype, np.floating):
        raise FieldError(f"waveform dtype must be float or int16; got {wav.dtype}")
    if wav.dtype != np.int16 and not np.isfinite(wav).all():
        raise FieldError("waveform has NaN or inf values")
    return wav, rate


def encode_wav(value: Any) -> bytes:
    """Audio (float [-1, 1] or int16, ``[C, T]`` or ``[T]``) -> PCM 16-bit WAV bytes.

    Floats are quantised as ``round(x * 32768)`` clipped to int16, the inverse of the decoder's ``/ 32768``,
    so a waveform already on that grid round-trips bit-exactly.
    """
    wav, rate = _audio_array(value, "wav")
    if wav.dtype == np.int16:
        pcm = wav
    else:
        pcm = np.clip(np.round(wav.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(pcm.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(pcm.T).astype("<i2").tobytes())  # WAV interleaves channels
    return buf.getvalue()


def encode_soundfile(value: Any, ext: str) -> bytes:
    """Audio (float [-1, 1] or int16, ``[C, T]`` or ``[T]``) -> FLAC (16-bit) / OGG Vorbis / MP3 bytes."""
    wav, rate = _audio_array(value, ext)
    sf = _soundfile(ext)
    if wav.dtype != np.int16:
        wav = np.clip(wav, -1.0, 1.0).astype(np.float32)
    buf = io.BytesIO()
    container, subtype = _SF_FORMAT[ext]
    try:
        sf.write(buf, np.ascontiguousarray(wav.T), rate, format=container, subtype=subtype)
    except Exception as err:  # libsndfile refuses e.g. rates or channel counts its codec lacks
        raise FieldError(f"cannot encode {wav.shape[0]} channel(s) at {rate} Hz as .{ext}: {_first_line(err)}") from err
    return buf.getvalue()


def encode_npy(value: Any) -> bytes:
    """Array / tensor / Audio -> ``.npy`` bytes (no object arrays: they would need pickle)."""
    if isinstance(value, Audio):
        value = value.waveform
    arr = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if arr.dtype.hasobject:
        raise FieldError(f"array dtype {arr.dtype} would need pickle; store a numeric array")
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def describe(ext: str, decoded: Any) -> dict[str, Any]:
    """What the manifest records about one decoded value: ``{"shape", "dtype", "sample_rate"}``."""
    if ext in AUDIO_EXTS:
        decoded, rate = decoded
        return {"shape": list(decoded.shape), "dtype": "float32", "sample_rate": rate}
    if isinstance(decoded, torch.Tensor):
        return {"shape": list(decoded.shape), "dtype": str(decoded.dtype).removeprefix("torch.")}
    if ext == "cls":
        return {"shape": [], "dtype": "int64"}
    return {}


def encode_value(field: str, value: Any) -> tuple[bytes, dict[str, Any]]:
    """Encode one field value for ``<name>.<ext>``; bytes and Paths are validated by decoding them.

    Returns ``(bytes stored in the tar, describe(...) of the decoded value)``. Raises FieldError naming the cause.
    """
    _, ext = split_field(field)
    raw = _read_source(value)
    if raw is not None:  # validate now: a bad source fails at write time, not at epoch 3
        return raw, describe(ext, decode_value(ext, raw))
    if ext in IMAGE_EXTS:
        arr = _image_array(value)
        channels = 1 if arr.ndim == 2 else arr.shape[-1]
        try:
            data = encode_image(arr, ext)
        except (OSError, ValueError, KeyError) as err:
            raise FieldError(f"cannot encode a {channels}-channel image as .{ext}: {err}") from err
        return data, {"shape": [channels, *arr.shape[:2]], "dtype": "uint8"}
    if ext in AUDIO_EXTS:
        data = encode_wav(value) if ext == "wav" else encode_soundfile(value, ext)
        return data, describe(ext, decode_value(ext, data))  # decoding keeps one truth (and the lossy codecs' T)
    if ext == "npy":
        data = encode_npy(value)
        arr = value.waveform if isinstance(value, Audio) else value
        dtype = str(arr.dtype).removeprefix("torch.") if isinstance(arr, torch.Tensor) else str(np.asarray(arr).dtype)
        return data, {"shape": list(np.shape(arr)), "dtype": dtype}
    if ext == "cls":
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise FieldError(f"a .cls field must be an int; got {type(value).__name__} {value!r}")
        return str(int(value)).encode(), describe(ext, int(value))
    if ext == "json":
        try:
            return json.dumps(value, sort_keys=True).encode(), {}
        except (TypeError, ValueError) as err:
            raise FieldError(f"value is not JSON serialisable: {err}") from err
    if not isinstance(value, str):
        raise FieldError(f"a .txt field must be a str; got {type(value).__name__}")
    return value.encode(), {}


# ----------------------------------------------------------------------------------------------- decoding
# Images. torchvision's libpng decoder has no working error handler: any libpng error (a bad CRC, a corrupt
# IDAT stream, a bad filter byte; pytorch/vision #3613, #4485) kills the process with SIGSEGV. PNGs therefore go
# through PIL, which raises: 1.5x torchvision's time at 64 px grey, 1.2x at 224 px RGB (benchmarks/loader.py), and
# faster than validating CRCs and inflating the IDAT stream before torchvision, which would still not catch every
# libpng error. JPEG and WebP keep the torchvision fast path: 2,900 mutated files of each raised RuntimeError /
# ValueError and never crashed it (tests/data/test_fields_fuzz.py fuzzes them in a child process). The codec is chosen from the bytes, not the
# extension, because torchvision's decode_image also dispatches on the bytes (a PNG named .jpg must not reach it).
_JPEG_MAGIC = b"\xff\xd8\xff"


def _is_torchvision_safe(data: bytes) -> bool:
    """True for JPEG and WebP bytes (the codecs whose torchvision decoders raise instead of crashing)."""
    return data[:3] == _JPEG_MAGIC or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _decode_torchvision(data: bytes) -> torch.Tensor:
    """JPEG / WebP bytes -> ``torch.uint8 [C, H, W]`` with libjpeg-turbo / libwebp through torchvision."""
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_image as tv_decode

    try:
        return tv_decode(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED)
    except (RuntimeError, ValueError) as err:
        raise FieldError(f"corrupt or unsupported image bytes ({len(data)} bytes): {_first_line(err)}") from err


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # IHDR colour type -> samples per pixel
_DEFLATE_MAX_RATIO = 1032  # deflate cannot expand n bytes into more than ~1032 n


def _check_png_size(data: bytes, width: int, height: int) -> None:
    """Refuse a PNG whose IHDR claims more pixel bytes than its compressed bytes can hold, before PIL allocates
    the image (a 100-byte PNG claiming 150 M pixels allocated 600 MB and took seconds to fail)."""
    ihdr = data[12:16] == b"IHDR"  # the first chunk (PIL has parsed it): bit depth, colour type
    bits = max(1, data[24] * _PNG_CHANNELS.get(data[25], 4)) if ihdr else 1
    raw = height * -(-width * bits // 8)
    if raw > _DEFLATE_MAX_RATIO * len(data):
        raise FieldError(
            f"PNG claims {width} x {height} pixels ({raw} bytes decoded) in {len(data)} bytes: more than deflate "
            f"can expand (at most {_DEFLATE_MAX_RATIO}:1); corrupt header"
        )


_PIL_MODES = {"L": np.uint8, "LA": np.uint8, "RGB": np.uint8, "RGBA": np.uint8, "I;16": np.uint16}


def _decode_pil(data: bytes) -> torch.Tensor:
    """PNG bytes -> ``[C, H, W]``: uint8 (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA; a palette is expanded to RGB, or
    RGBA with transparency; 1-bit grey -> 0 / 255) or uint16 ``[1, H, W]`` for 16-bit grey, as torchvision."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as im:
            _check_png_size(data, *im.size)
            if im.mode == "1":
                im = im.convert("L")
            elif im.mode in ("P", "PA"):
                im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
            if im.mode not in _PIL_MODES:
                raise FieldError(f"unsupported PNG pixel mode {im.mode!r}; expected 8-bit grey/RGB(A) or 16-bit grey")
            array = np.array(im)  # decodes; the copy is writable and C-contiguous
    except FieldError:
        raise
    except Exception as err:  # PIL on untrusted bytes: OSError, SyntaxError, zlib.error, DecompressionBombError...
        raise FieldError(f"corrupt or unsupported image bytes ({len(data)} bytes): {_first_line(err)}") from err
    tensor = torch.from_numpy(array.astype(_PIL_MODES[im.mode], copy=False))
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)


def decode_image(data: bytes) -> torch.Tensor:
    """Encoded PNG / JPEG / WebP -> ``torch.uint8 [C, H, W]`` (C as stored: 1 grey, 3 RGB, 4 RGBA; uint16 for
    16-bit grey PNG); never crashes the process on corrupt bytes (see above), raises FieldError instead."""
    return _decode_torchvision(data) if _is_torchvision_safe(data) else _decode_pil(data)


# Audio: the package's one WAV / libsndfile reader is multiview.core.wav; its errors become FieldErrors here.
@contextmanager
def _audio_errors() -> Iterator[None]:
    try:
        yield
    except wav_codec.WavError as err:
        raise FieldError(str(err)) from err


def decode_wav(data: bytes) -> tuple[torch.Tensor, int]:
    """WAV bytes -> (``float32 [C, T]`` in [-1, 1], sample rate).

    8/16/32-bit PCM with the stdlib ``wave`` module; WAVs it cannot read (float, 24-bit, extensible) through
    libsndfile (:func:`decode_soundfile`).
    """
    with _audio_errors():
        return wav_codec.decode_wav(data)


def decode_soundfile(data: bytes, ext: str) -> tuple[torch.Tensor, int]:
    """FLAC / OGG Vorbis / MP3 (or a WAV ``wave`` cannot read) bytes -> (``float32 [C, T]``, sample rate),
    decoded by libsndfile; integer formats come out in [-1, 1) like :func:`decode_wav`."""
    with _audio_errors():
        return wav_codec.decode_soundfile(data, ext)


def _soundfile(ext: str):
    """The soundfile module, imported on first use (a .wav / .npy-only user never needs it)."""
    with _audio_errors():
        return wav_codec.soundfile_module(ext)


# Arrays. The .npy header is parsed here, never by numpy: numpy's parser raises tokenize / SyntaxError on
# truncated headers, accepts any dtype (void, str, datetime, longdouble) and allocates the shape a header claims
# before reading (a 100-byte member claiming 1.8 TiB). Here the claimed size must equal the bytes present.
_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER = re.compile(
    r"^\{'descr': '(?P<descr>[^']*)', 'fortran_order': (?P<fortran>True|False), "
    r"'shape': \((?P<shape>[\d, ]*)\), \}\s*$"
)
_NPY_DESCR = re.compile(r"^(?P<order>[<>|=])?(?P<kind>[biufc])(?P<size>\d{1,2})$")
_NPY_TYPES = {"b": (1,), "i": (1, 2, 4, 8), "u": (1, 2, 4, 8), "f": (2, 4, 8), "c": (8, 16)}  # torch's numerics
_NPY_MAX_HEADER = 10_000  # numpy's own limit on a header it will parse
_NPY_MAX_DIMS = 32


def _npy_header(data: bytes) -> tuple[str, bool, tuple[int, ...], int]:
    """The header of ``.npy`` bytes -> (descr, fortran_order, shape, offset of the array data)."""
    if len(data) < 10 or data[:6] != _NPY_MAGIC or data[6] not in (1, 2, 3):
        raise FieldError(f"not a loadable .npy ({len(data)} bytes): no \\x93NUMPY magic with format version 1, 2 or 3")
    size_bytes = 2 if data[6] == 1 else 4
    length = int.from_bytes(data[8 : 8 + size_bytes], "little")
    start = 8 + size_bytes
    if length > _NPY_MAX_HEADER or start + length > len(data):
        raise FieldError(f"truncated or oversized .npy header: claims {length} bytes, {len(data) - start} follow")
    try:
        text = data[start : start + length].decode("utf8" if data[6] == 3 else "latin1")
    except UnicodeDecodeError as err:
        raise FieldError(f".npy header is not valid text: {err}") from err
    match = _NPY_HEADER.match(text)
    if match:  # numpy's own layout: skip literal_eval, which dominates the decode of small vectors
        shape = tuple(int(d) for d in match["shape"].replace(" ", "").split(",") if d)
        return match["descr"], match["fortran"] == "True", shape, start + length
    return (*_npy_header_dict(text), start + length)


def _npy_header_dict(text: str) -> tuple[str, bool, tuple[int, ...]]:
    """A header in any other layout: a Python dict literal with exactly descr, fortran_order and shape."""
    try:
        with warnings.catch_warnings():  # "invalid escape sequence" in a corrupt header: the error below says it
            warnings.simplefilter("ignore")
            header = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as err:
        raise FieldError(f".npy header is not a dict literal: {_first_line(err)}: {text[:80]!r}") from err
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise FieldError(f".npy header must be a dict of descr, fortran_order and shape; got {text[:80]!r}")
    descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        raise FieldError(f".npy shape must be a tuple of ints >= 0; got {shape!r}")
    if not isinstance(fortran, bool):
        raise FieldError(f".npy fortran_order must be True or False; got {fortran!r}")
    return (descr if isinstance(descr, str) else repr(descr)), fortran, shape


def _npy_dtype(descr: str) -> np.dtype:
    """A header's descr -> a numeric dtype torch holds (bool, int, uint, float 16-64, complex 64/128), or FieldError."""
    match = _NPY_DESCR.match(descr)
    if not match or int(match["size"]) not in _NPY_TYPES[match["kind"]]:
        raise FieldError(
            f"unsupported .npy dtype {descr!r}; expected bool, int8-64, uint8-64, float16-64 or complex64/128"
        )
    return np.dtype(descr)


def decode_npy(data: bytes) -> torch.Tensor:
    """``.npy`` bytes -> tensor of the stored shape and dtype, native byte order (never unpickles; the size the
    header claims is checked against the bytes present before anything is allocated)."""
    return _npy_array(data, *_npy_header(data))


def _fast_npy(data: bytes) -> np.ndarray | None:
    """The common case alone (numpy's own header layout, C order) -> array; None for anything else."""
    if data[:6] != _NPY_MAGIC or len(data) < 10 or data[6] not in (1, 2):
        return None
    start = 10 if data[6] == 1 else 12
    match = _NPY_HEADER.match(data[start : start + int.from_bytes(data[8:start], "little")].decode("latin1"))
    return None if match is None or match["fortran"] == "True" else decode_npy(data).numpy()


def _npy_array(data: bytes, descr: str, fortran: bool, shape: tuple[int, ...], offset: int) -> torch.Tensor:
    """The array after a parsed header -> a native-order, writable, C-contiguous tensor of ``shape``."""
    dtype = _npy_dtype(descr)
    if len(shape) > _NPY_MAX_DIMS:
        raise FieldError(f".npy shape {shape} has {len(shape)} dims; at most {_NPY_MAX_DIMS} are supported")
    count = 1
    for d in shape:
        count *= d  # Python ints: a claimed 2**70 elements does not overflow
    if count * dtype.itemsize != len(data) - offset:
        raise FieldError(
            f".npy header claims shape {list(shape)} of {descr} ({count * dtype.itemsize} bytes); "
            f"the member holds {len(data) - offset} bytes after the header (truncated or corrupt)"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    arr = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
    if dtype.kind == "b":  # a byte other than 0 / 1 would be an invalid torch.bool
        return torch.from_numpy(arr.view(np.uint8) != 0)
    return torch.from_numpy(np.array(arr, dtype=dtype.newbyteorder("="), order="C"))  # a native, writable copy


_CLS = re.compile(r"\s*([+-]?[0-9]+)\s*", re.ASCII)  # img2dataset / webdataset write "3\n"


def decode_value(ext: str, data: bytes) -> Any:
    """Decode the bytes of a ``.<ext>`` field (see the table in docs/architecture.md section 1).

    Images -> ``uint8 [C, H, W]``; audio -> ``(float32 [C, T], sample rate)``; ``.npy`` -> tensor; ``.cls`` -> int;
    ``.json`` -> value; ``.txt`` -> str. Every failure is a FieldError naming the cause.
    """
    if ext in REFUSED_EXTS:
        raise FieldError(f".{ext} is refused: pickled data is never loaded from a shard")
    if ext in IMAGE_EXTS:
        return decode_image(data)
    if ext == "wav":
        return decode_wav(data)
    if ext in SOUNDFILE_EXTS:
        return decode_soundfile(data, ext)
    if ext == "npy":
        return decode_npy(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FieldError(f"not UTF-8 text: {err}") from err
    if ext == "cls":
        match = _CLS.fullmatch(text)
        if match is None or len(match[1]) > 64:
            raise FieldError(f"a .cls field must hold an ASCII int; got {text[:40]!r}")
        return int(match[1])
    if ext == "json":
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError) as err:  # RecursionError: "[[[[..." nested too deep
            raise FieldError(f"invalid JSON: {_first_line(err)}") from err
    if ext == "txt":
        return text
    raise FieldError(f"unknown extension .{ext}; expected one of {sorted(KNOWN_EXTS)}")


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
