"""Field encoding (write time) and decoding (read time), one function per extension.

A field is named ``<name>.<ext>``; the extension alone decides how its bytes are stored and decoded
(docs/architecture.md section 1). Nothing is ever unpickled: ``.pth .pyd .pickle .pkl`` are refused both
when writing and when reading, and ``.npy`` is loaded with ``allow_pickle=False``.

Errors raised here are :class:`FieldError` (a ValueError) with the cause only; the caller adds the shard,
the key and the field, which it knows and this module does not.
"""

from __future__ import annotations

import io
import json
import re
import warnings
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

IMAGE_EXTS = frozenset({"png", "jpg", "jpeg", "webp"})
REFUSED_EXTS = frozenset({"pth", "pyd", "pickle", "pkl"})
KNOWN_EXTS = IMAGE_EXTS | {"wav", "npy", "cls", "json", "txt"}
FIELD_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
_PCM_DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}  # bytes per sample -> WAV sample dtype
_PCM_SCALE = {1: 128.0, 2: 32768.0, 4: 2147483648.0}

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


def encode_wav(value: Any) -> bytes:
    """Audio (float [-1, 1] or int16, ``[C, T]`` or ``[T]``) -> PCM 16-bit WAV bytes.

    Floats are quantised as ``round(x * 32768)`` clipped to int16, the inverse of the decoder's ``/ 32768``,
    so a waveform already on that grid round-trips bit-exactly.
    """
    if not isinstance(value, Audio):
        raise FieldError(
            f"a .wav field needs Audio(waveform, sample_rate), bytes or a Path; got {type(value).__name__}"
        )
    wav = value.waveform.numpy() if isinstance(value.waveform, torch.Tensor) else np.asarray(value.waveform)
    rate = int(value.sample_rate)
    if rate <= 0:
        raise FieldError(f"sample_rate must be > 0; got {value.sample_rate}")
    if wav.ndim == 1:
        wav = wav[None]
    if wav.ndim != 2 or wav.shape[1] == 0:
        raise FieldError(f"waveform must be [C, T] or [T] with T > 0; got shape {list(wav.shape)}")
    if wav.dtype == np.int16:
        pcm = wav
    elif np.issubdtype(wav.dtype, np.floating):
        if not np.isfinite(wav).all():
            raise FieldError("waveform has NaN or inf values")
        pcm = np.clip(np.round(wav.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    else:
        raise FieldError(f"waveform dtype must be float or int16; got {wav.dtype}")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(pcm.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(pcm.T).astype("<i2").tobytes())  # WAV interleaves channels
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
    if ext == "wav":
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
    if ext == "wav":
        data = encode_wav(value)
        return data, describe(ext, decode_wav(data))  # WAV headers are tiny to parse; decoding keeps one truth
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
def decode_image(data: bytes) -> torch.Tensor:
    """Encoded image -> ``torch.uint8 [C, H, W]`` (C as stored: 1 grey, 3 RGB, 4 RGBA)."""
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_image as tv_decode

    try:
        return tv_decode(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED)
    except (RuntimeError, ValueError) as err:
        raise FieldError(f"corrupt or unsupported image bytes ({len(data)} bytes): {_first_line(err)}") from err


def decode_wav(data: bytes) -> tuple[torch.Tensor, int]:
    """PCM WAV bytes -> (``float32 [C, T]`` in [-1, 1], sample rate)."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            width, channels, rate, n = w.getsampwidth(), w.getnchannels(), w.getframerate(), w.getnframes()
            frames = w.readframes(n)
    except (wave.Error, EOFError) as err:
        raise FieldError(f"not a PCM WAV file ({len(data)} bytes): {err or type(err).__name__}") from err
    if width not in _PCM_DTYPES:
        raise FieldError(f"unsupported WAV sample width {8 * width} bits; expected 8, 16 or 32-bit PCM")
    if len(frames) != n * width * channels:
        raise FieldError(f"truncated WAV: header says {n} frames, data holds {len(frames) // (width * channels)}")
    pcm = np.frombuffer(frames, dtype=np.dtype(_PCM_DTYPES[width]).newbyteorder("<")).reshape(n, channels)
    if width == 1:  # 8-bit WAV is unsigned with 128 as silence
        wav = (pcm.astype(np.float32) - 128.0) / _PCM_SCALE[1]
    else:
        wav = (pcm.astype(np.float64) / _PCM_SCALE[width]).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(wav.T)), rate


_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER = re.compile(
    r"^\{'descr': '(?P<descr>[<>|=][a-z]\d+)', 'fortran_order': (?P<fortran>True|False), "
    r"'shape': \((?P<shape>[\d, ]*)\), \}\s*$"
)


def _fast_npy(data: bytes) -> np.ndarray | None:
    """Decode the common case (version 1/2 header, plain numeric dtype, C order) without numpy's header parser,
    which runs ``ast.literal_eval`` per array and dominates the decode of small vectors; None otherwise."""
    if len(data) < 10 or data[:6] != _NPY_MAGIC or data[6] not in (1, 2):
        return None
    if data[6] == 1:
        length, start = int.from_bytes(data[8:10], "little"), 10
    else:
        length, start = int.from_bytes(data[8:12], "little"), 12
    match = _NPY_HEADER.match(data[start : start + length].decode("latin1"))
    if match is None or match["fortran"] == "True":
        return None
    dtype = np.dtype(match["descr"])
    shape = tuple(int(d) for d in match["shape"].replace(" ", "").split(",") if d)
    count = int(np.prod(shape)) if shape else 1
    body = data[start + length :]
    if len(body) != count * dtype.itemsize:
        return None  # truncated or padded: let numpy produce its own error
    arr = np.frombuffer(body, dtype=dtype, count=count).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)  # native byte order, writable (torch needs both)


def decode_npy(data: bytes) -> torch.Tensor:
    """``.npy`` bytes -> tensor with the dtype kept (never unpickles)."""
    fast = _fast_npy(data)
    if fast is not None:
        return torch.from_numpy(fast)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise FieldError("the .npy holds an object array, which would need pickle: refused") from err
        raise FieldError(f"not a loadable .npy ({len(data)} bytes): {_first_line(err)}") from err
    except (OSError, EOFError) as err:
        raise FieldError(f"not a loadable .npy ({len(data)} bytes): {_first_line(err)}") from err
    return torch.from_numpy(np.ascontiguousarray(arr))


def decode_value(ext: str, data: bytes) -> Any:
    """Decode the bytes of a ``.<ext>`` field (see the table in docs/architecture.md section 1)."""
    if ext in REFUSED_EXTS:
        raise FieldError(f".{ext} is refused: pickled data is never loaded from a shard")
    if ext in IMAGE_EXTS:
        return decode_image(data)
    if ext == "wav":
        return decode_wav(data)
    if ext == "npy":
        return decode_npy(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FieldError(f"not UTF-8 text: {err}") from err
    if ext == "cls":
        try:
            return int(text.strip())
        except ValueError:
            raise FieldError(f"a .cls field must hold an ASCII int; got {text[:40]!r}") from None
    if ext == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise FieldError(f"invalid JSON: {err}") from err
    if ext == "txt":
        return text
    raise FieldError(f"unknown extension .{ext}; expected one of {sorted(KNOWN_EXTS)}")


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
