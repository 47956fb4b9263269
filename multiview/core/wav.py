"""The one WAV reader: bytes or a file -> (waveform ``float32 [C, T]``, sample rate).

8/16/32-bit PCM through the stdlib ``wave`` module and numpy; WAVs it cannot read (float, 24-bit, extensible)
through libsndfile (the ``soundfile`` package, imported on first use), which also decodes FLAC / OGG / MP3.
Every failure is a :class:`WavError` (a ValueError) naming the cause. The data layer (``.wav`` fields), the audio
views (noise banks) and the avdigits builder all read WAVs here.

Examples:
    >>> import io, wave
    >>> buf = io.BytesIO()
    >>> with wave.open(buf, "wb") as w:
    ...     w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000); w.writeframes(b"\\x00\\x40" * 4)
    >>> waveform, rate = decode_wav(buf.getvalue())
    >>> tuple(waveform.shape), rate, float(waveform[0, 0])
    ((1, 4), 8000, 0.5)
"""

from __future__ import annotations

import io
import os
import struct
import wave
from pathlib import Path

import numpy as np
import torch

PCM_DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}  # bytes per sample -> WAV sample dtype (8-bit is unsigned)
_PCM_SCALE = {1: 128.0, 2: 32768.0, 4: 2147483648.0}
_WAVE_ERRORS = (wave.Error, EOFError, RuntimeError, ValueError, OverflowError, IndexError, struct.error)
_SF_BLOCK = 1 << 20  # frames read per call: memory follows the data decoded, not the length a header claims


class WavError(ValueError):
    """Audio bytes cannot be decoded; the message says why (the caller adds the file or field)."""


def read_pcm(data: bytes) -> tuple[np.ndarray, int] | None:
    """PCM WAV bytes -> (samples ``[C, T]`` as stored: uint8 (128 is silence), int16 or int32; sample rate).

    None for a WAV the ``wave`` module cannot read but libsndfile may (float, 24-bit, extensible); WavError for
    bytes that are no WAV, a malformed chunk, a zero rate or truncated data.
    """
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            width, channels, rate, n = w.getsampwidth(), w.getnchannels(), w.getframerate(), w.getnframes()
            frames = w.readframes(n)
    except wave.Error as err:
        if str(err).startswith("unknown format"):
            return None
        raise WavError(f"not a PCM WAV file ({len(data)} bytes): {err}") from err
    except _WAVE_ERRORS as err:  # e.g. a fmt chunk of size 0 -> RuntimeError('') from the chunk reader
        raise WavError(f"not a PCM WAV file ({len(data)} bytes): {_first_line(err)} (malformed chunk)") from err
    if width not in PCM_DTYPES:
        return None
    if rate <= 0:
        raise WavError(f"WAV sample rate is {rate}; expected > 0")
    if len(frames) != n * width * channels:
        raise WavError(f"truncated WAV: header says {n} frames, data holds {len(frames) // (width * channels)}")
    pcm = np.frombuffer(frames, dtype=np.dtype(PCM_DTYPES[width]).newbyteorder("<")).reshape(n, channels)
    return pcm.T, rate  # WAV interleaves channels


def pcm_to_float(pcm: np.ndarray) -> np.ndarray:
    """Samples from :func:`read_pcm` -> float32 ``[C, T]`` in [-1, 1), C-contiguous."""
    width = pcm.dtype.itemsize
    if width == 1:
        wav = (pcm.astype(np.float32) - 128.0) / _PCM_SCALE[1]
    else:
        wav = (pcm.astype(np.float64) / _PCM_SCALE[width]).astype(np.float32)
    return np.ascontiguousarray(wav)


def decode_wav(data: bytes) -> tuple[torch.Tensor, int]:
    """WAV bytes -> (``float32 [C, T]`` in [-1, 1], sample rate); float / 24-bit WAVs through :func:`decode_soundfile`."""
    pcm = read_pcm(data)
    if pcm is None:
        return decode_soundfile(data, "wav")
    return torch.from_numpy(pcm_to_float(pcm[0])), pcm[1]


def read_wav(path: str | os.PathLike) -> tuple[torch.Tensor, int]:
    """A WAV file -> (``float32 [C, T]`` in [-1, 1], sample rate); a WavError names the file."""
    data = Path(path).read_bytes()
    try:
        return decode_wav(data)
    except WavError as err:
        raise WavError(f"{path}: {err}") from None


def soundfile_module(ext: str):
    """The soundfile module, imported on first use (a .wav / .npy-only user never needs it)."""
    try:
        import soundfile
    except ImportError as err:
        raise WavError(f".{ext} audio needs the soundfile package: pip install soundfile ({err})") from err
    except OSError as err:
        raise WavError(f".{ext} audio needs libsndfile, which soundfile could not load: {err}") from err
    return soundfile


def decode_soundfile(data: bytes, ext: str) -> tuple[torch.Tensor, int]:
    """FLAC / OGG Vorbis / MP3 (or a WAV ``wave`` cannot read) bytes -> (``float32 [C, T]``, sample rate).

    Decoded by libsndfile (2,400 mutated FLAC / OGG / MP3 / float-WAV files raised, none crashed it). Integer
    formats come out in [-1, 1) like :func:`decode_wav`; lossy codecs may overshoot 1 slightly.
    """
    sf = soundfile_module(ext)
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, blocks = f.samplerate, [f.read(_SF_BLOCK, dtype="float32", always_2d=True)]
            while len(blocks[-1]) == _SF_BLOCK:
                blocks.append(f.read(_SF_BLOCK, dtype="float32", always_2d=True))
    except Exception as err:  # LibsndfileError (a RuntimeError), TypeError for headerless data, MemoryError...
        cause = getattr(err, "error_string", None) or _first_line(err)  # without "Error opening <BytesIO at 0x..>"
        raise WavError(f"corrupt or unsupported .{ext} audio ({len(data)} bytes): {cause}") from err
    if rate <= 0:
        raise WavError(f".{ext} sample rate is {rate}; expected > 0")
    wav = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    return torch.from_numpy(np.ascontiguousarray(wav.T)), int(rate)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
