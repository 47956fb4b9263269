"""Waveform transforms of the ``audio`` view generator: pure functions of ``[..., T]`` waveforms.

Speed perturbation (resampling on a 1 % grid of factors), time stretch (a phase vocoder), pitch shift, the three
in one pass (``warp``), synthetic room impulse responses and reverberation, RMS loudness normalisation and the
audio-EQ-cookbook biquads. Each computes what its torchaudio counterpart computes, cheaper
(tests/views/test_views_audio_fast.py checks each against it); ``multiview.views.waveform_rows`` runs them over
the rows of a whole batch at once. The generator draws their parameters (``multiview.views.audio``).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import torch

_GRID = 100  # speed / pitch factors on a 1 % grid: k/100 at or above 1, 100/k below


def rational(factor: float) -> Fraction:
    """``factor`` on a 1 % grid, as a fraction: ``k/100`` for ``factor >= 1``, ``100/k`` below (0.8 -> 4/5,
    2 ** (7/12) -> 3/2; at most 0.5 % off). About 120 factors cover speeds 0.8-1.25 with +-4 semitones, so
    their resampling kernels are built once each (``_resampler``); a fraction with a denominator near 100
    resamples as fast as one near 24 once its kernel is built."""
    if factor >= 1.0:
        return Fraction(round(factor * _GRID), _GRID)
    return Fraction(_GRID, round(_GRID / factor))


@functools.lru_cache(maxsize=256)
def _resampler(orig: int, new: int, dtype: torch.dtype) -> torch.nn.Module:
    """A ``torchaudio.transforms.Resample(orig, new)``, built once per ``(orig, new, dtype)``: its sinc kernel
    is what ``torchaudio.functional.resample`` rebuilds on every call (half of a call's time for 1.2 s at
    16 kHz; a kernel is at most ~200 KB)."""
    import torchaudio

    return torchaudio.transforms.Resample(orig, new, dtype=dtype)


def speed_perturb(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Play ``x [..., T]`` ``factor`` times faster: ``[..., ~T / factor]``, every frequency times ``factor``.

    Resamples from ``p`` to ``q`` where ``p/q`` is ``rational(factor)`` (0.8 -> 4/5: 1.25x longer), with a
    cached resampling kernel per fraction (the numbers of ``torchaudio.functional.resample(x, p, q)``).
    """
    frac = rational(factor)
    if frac == 1:
        return x
    return _resampler(frac.numerator, frac.denominator, x.dtype)(x)


def _stft_size(sample_rate: int) -> int:
    """A ~32 ms power-of-two FFT size for the phase vocoder (512 at 16 kHz)."""
    return 2 ** max(6, round(math.log2(0.032 * sample_rate)))


@functools.lru_cache(maxsize=1024)
def _fft_size(n: int, twos: int = 6) -> int:
    """The smallest ``2^a 3^b 5^c >= n`` with ``a >= twos``: an FFT length that runs fast. A prime-heavy length
    runs ~8x slower (31999 vs 32000 samples) and so do lengths with few factors 2 (28125 = 3^2 5^5: 1.6x)."""
    base = 1 << twos
    best = base << max(0, (n - 1).bit_length() - twos)  # the next power of two (at least base)
    p5 = 1
    while base * p5 < best:
        p35 = p5
        while base * p35 < best:
            m = base * p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


@functools.lru_cache(maxsize=16)
def _hann(n: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(n, dtype=dtype)


def _phase_vocoder(spec: torch.Tensor, rate: float) -> torch.Tensor:
    """``torchaudio.functional.phase_vocoder(spec [..., freq, frames], rate, advance)``, computed cheaper.

    torchaudio accumulates ``wrap(angle1 - angle0 - advance) + advance`` per output frame; that sum equals
    ``angle1 - angle0`` modulo 2 pi, so the output phase is the first frame's phase times the product of the
    unit phasors ``u1 * conj(u0)`` of the neighbouring input frames: no ``atan2``, ``sin`` or ``cos`` and no
    phase advance (the same result to 1e-9 in float64; in float32 more precise than torchaudio's phase sum,
    which grows to ~1e4 rad). Magnitudes are interpolated linearly between the two frames, as there.
    Output ``[..., freq, ceil(frames / rate)]``.
    """
    steps = torch.arange(0, spec.shape[-1], rate, dtype=spec.real.dtype)
    alphas = steps % 1.0
    i0 = steps.long()
    spec = torch.nn.functional.pad(spec, [0, 2])
    mag = spec.abs()
    silent = mag == 0  # angle(0) is 0 in torchaudio: a unit phasor of 1, not 0 (which would end the product)
    unit = torch.where(silent, torch.ones((), dtype=spec.dtype), spec / mag.masked_fill(silent, 1.0))
    turn = unit[..., 1:] * unit[..., :-1].conj()  # input frame j -> j + 1
    phasor = torch.cat([unit[..., :1], turn.index_select(-1, i0[:-1])], dim=-1).cumprod(-1)
    return phasor * torch.lerp(mag.index_select(-1, i0), mag.index_select(-1, i0 + 1), alphas)


def time_stretch(x: torch.Tensor, rate: float, n_fft: int = 512) -> torch.Tensor:
    """Speed ``x [..., T]`` up by ``rate`` keeping its pitch: ``[..., round(T / rate)]``.

    The phase vocoder of ``torchaudio.functional.phase_vocoder`` (``_phase_vocoder``: the same output,
    ~2x cheaper) on a Hann STFT (hop ``n_fft // 4``), back with ``istft``, rescaled to the input's RMS.
    """
    if rate == 1.0:
        return x
    length = x.shape[-1]
    out_len = max(1, round(length / rate))
    if length < n_fft:  # the STFT needs at least one full frame; the zero tail is trimmed below
        x = torch.nn.functional.pad(x, (0, n_fft - length))
    hop = n_fft // 4
    window = _hann(n_fft, x.dtype)
    lead = x.shape[:-1]
    spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop, window=window, return_complex=True)
    spec = _phase_vocoder(spec, rate)
    full = round(x.shape[-1] / rate)
    y = torch.istft(spec, n_fft, hop, window=window, length=full)[..., :out_len]
    if y.shape[-1] < out_len:
        y = torch.nn.functional.pad(y, (0, out_len - y.shape[-1]))
    # The vocoder loses level when it slows down (a 440 Hz tone at rate 0.5: -4.7 dB); keep the RMS.
    rms_in = x.reshape(y.shape[0], -1).pow(2).mean(-1, keepdim=True).sqrt() * math.sqrt(x.shape[-1] / length)
    y = y * (rms_in / y.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12))
    return y.reshape(*lead, out_len)


def pitch_shift(x: torch.Tensor, semitones: float, n_fft: int = 512) -> torch.Tensor:
    """Shift the pitch of ``x [..., T]`` by ``semitones`` keeping its length and tempo: ``[..., T]``.

    A phase-vocoder stretch by ``1/f`` then a resampling speed-up by ``f``, with ``f`` the 1 % grid value
    ``rational(2 ** (semitones / 12))`` (``torchaudio.functional.pitch_shift`` resamples between
    ``sample_rate / f`` and ``sample_rate``, whose gcd is often 1: a kernel of thousands of phases per call).
    """
    if semitones == 0:
        return x
    frac = rational(2.0 ** (semitones / 12.0))
    length = x.shape[-1]
    y = speed_perturb(time_stretch(x, 1.0 / float(frac), n_fft), float(frac))
    if y.shape[-1] < length:
        return torch.nn.functional.pad(y, (0, length - y.shape[-1]))
    return y[..., :length]


def warp_factors(speed: float = 1.0, stretch: float = 1.0, semitones: float = 0.0) -> tuple[Fraction, float]:
    """``(resampling factor, vocoder rate)`` of :func:`warp`: the speed factor's fraction times the pitch
    ratio, on the grid of :func:`rational`; and the vocoder rate that makes the tempo ``rational(speed) *
    stretch`` after that resampling (exactly 1.0 -- no vocoder -- when ``stretch`` is 1 and ``semitones`` 0)."""
    speed_frac = rational(speed)
    factor = rational(float(speed_frac) * 2.0 ** (semitones / 12.0))
    return factor, float(speed_frac) * stretch / float(factor)


def warp(x: torch.Tensor, speed: float = 1.0, stretch: float = 1.0, semitones: float = 0.0, n_fft: int = 512):
    """``speed_perturb(x, speed)``, ``time_stretch(.., stretch)`` and ``pitch_shift(.., semitones)`` of
    ``x [..., T]`` in ONE phase-vocoder pass and ONE resampling: ``[..., ~T / (speed * stretch)]``.

    Every frequency is multiplied by ``rational(speed) * 2 ** (semitones / 12)`` (on the 1 % grid of
    :func:`rational`) and the tempo by ``rational(speed) * stretch``: a vocoder stretch by the rate of
    :func:`warp_factors`, then a resampling by its factor. Chained, the three functions would run the vocoder
    twice and resample twice.
    """
    factor, rate = warp_factors(speed, stretch, semitones)
    if rate != 1.0:
        x = time_stretch(x, rate, n_fft)
    return speed_perturb(x, float(factor))


def synthetic_rir(rt60: float, sample_rate: int, generator: torch.Generator) -> torch.Tensor:
    """A room impulse response ``[round(rt60 * sample_rate)]``: Gaussian noise under an exponential decay
    whose energy falls 60 dB in ``rt60`` seconds, a unit direct path first, unit energy overall."""
    n = max(2, round(rt60 * sample_rate))
    t = torch.arange(n, dtype=torch.float32) / sample_rate
    h = torch.randn(n, generator=generator) * torch.pow(10.0, -3.0 * t / rt60)
    h[0] = 1.0
    return h / h.pow(2).sum().sqrt()


def reverberate(x: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """``x [..., T]`` convolved with ``rir [L]`` (FFT), cut to ``T`` samples and rescaled to ``x``'s RMS.

    The first ``T`` samples of ``torchaudio.functional.fftconvolve(x, rir)``, computed on less: only the span
    from the first to the last non-zero sample of ``x`` is transformed (a view's zero padding and shift
    contribute nothing), the RIR past what reaches the first ``T`` samples is dropped, and the transform runs
    at a fast length (``_fft_size``) where fftconvolve takes ``T + L - 1`` itself (1.2 s at 16 kHz with a
    0.8 s RIR: 31999 samples, ~8x slower than 32000).
    """
    length = x.shape[-1]
    support = torch.nonzero(x.reshape(-1, length).abs().amax(0))
    if support.numel() == 0:
        return x  # silence stays silent
    first, last = int(support[0]), int(support[-1]) + 1
    rir = rir[: length - first].to(x.dtype)
    n = _fft_size(last - first + rir.shape[-1] - 1)
    y = torch.fft.irfft(torch.fft.rfft(x[..., first:last], n) * torch.fft.rfft(rir, n), n)[..., : length - first]
    y = torch.nn.functional.pad(y, (first, length - first - y.shape[-1]))
    scale = x.pow(2).mean(-1, keepdim=True).sqrt() / y.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
    return y * scale


def normalize_rms(x: torch.Tensor, target_db: float) -> torch.Tensor:
    """``x [..., T]`` scaled to an RMS of ``target_db`` dB re full scale (silence stays silent)."""
    rms = x.pow(2).mean(-1, keepdim=True).sqrt()
    return x * (10.0 ** (target_db / 20.0) / rms.clamp_min(1e-8)) * (rms > 1e-8)


def biquad_coefficients(kind: str, sample_rate: int, freq: float, q: float, gain_db: float = 0.0):
    """``(a, b)``, each ``[a0, a1, a2]`` / ``[b0, b1, b2]``: the peaking equaliser (``kind="eq"``) or band-pass
    (``"bandpass"``, 0 dB peak) of ``torchaudio.functional.equalizer_biquad`` / ``bandpass_biquad`` (the
    audio-EQ-cookbook designs), computed in Python floats: those functions build ~50 small tensors per call,
    more time than the filter itself on a 1 s view."""
    w0 = 2.0 * math.pi * freq / sample_rate
    alpha, cos_w0 = math.sin(w0) / 2.0 / q, math.cos(w0)
    if kind == "eq":
        amp = math.exp(gain_db / 40.0 * math.log(10.0))
        return [1 + alpha / amp, -2 * cos_w0, 1 - alpha / amp], [1 + alpha * amp, -2 * cos_w0, 1 - alpha * amp]
    return [1 + alpha, -2 * cos_w0, 1 - alpha], [alpha, 0.0, -alpha]


def _biquad(kind: str, x: torch.Tensor, sample_rate: int, freq: float, q: float, gain_db: float = 0.0):
    """The ``kind`` biquad of :func:`biquad_coefficients` on ``x [..., T]`` with ``torchaudio``'s ``lfilter``
    (unclamped: the filter is linear and a boost may leave [-1, 1] before the gain and loudness that follow)."""
    import torchaudio.functional as F

    a, b = biquad_coefficients(kind, sample_rate, freq, q, gain_db)
    return F.lfilter(x, torch.tensor(a, dtype=x.dtype), torch.tensor(b, dtype=x.dtype), clamp=False)
