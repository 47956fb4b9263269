"""``audio``: log-mel views of one clip, ready for a timm encoder with ``in_chans=1``.

Input: a decoded sample ``{"audio": float32 [C, T] in [-1, 1], "audio.sample_rate": int}`` (field name
configurable; a bare ``[C, T]`` / ``[T]`` tensor with ``input_sample_rate``). Never calls ``torchaudio.load``.

Per clip: mix to mono and resample to ``sample_rate`` once (a cached ``torchaudio.transforms.Resample`` per
input rate: resampling before cropping equals resampling each crop, at a fraction of the cost). Per view: a
random crop of ``duration`` seconds, a time shift (zero-filled delay of up to +-``shift`` s), a gain in
``gain_db``, additive noise at an SNR drawn from ``snr_db`` (Gaussian, or a random excerpt of a noise-bank
recording), then -- for all views in one call -- ``MelSpectrogram`` + ``AmplitudeToDB`` (top_db per view),
per-view standardisation and SpecAugment frequency/time masks drawn from the sample's generator.
Output views: float32 ``[1, n_mels, frames]``.

Optional per-view waveform transforms (all off by default; when off they draw nothing, so the views of the
options above are unchanged): speed perturbation (``speed``: resampling by the factor on a 1 % grid), time
stretch without pitch change (``stretch``: phase vocoder on the STFT), pitch shift (``pitch`` semitones:
phase-vocoder stretch + resampling), random crop length (``crop_duration``), peaking equalisation (``eq_p``)
and band-pass (``bandpass_p``) biquads, reverberation with a synthetic room impulse response (``reverb_p``,
``rt60``) and loudness normalisation (``loudness_db``). The functions behind them (``speed_perturb``,
``time_stretch``, ``pitch_shift``, ``warp``, ``synthetic_rir``, ``reverberate``, ``normalize_rms``,
``biquad_coefficients``) are public and work on any ``[..., T]`` waveform.

Cost (benchmarks/views_audio.py; benchmarks/README.md "Audio views: cost"): a view crops first, just long enough
for its length after the transforms; speed, stretch and pitch then run as ONE phase-vocoder pass and ONE
resampling (``warp``); resampling kernels are cached per factor; the vocoder multiplies unit phasors instead
of taking angles; reverberation convolves at a fast FFT length; the biquads' coefficients are Python floats.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multiview.core.wav import read_wav
from multiview.views.base import (
    META,
    Uniforms,
    ViewGenerator,
    check_positive,
    check_probability,
    check_range,
    describe_sample,
    get_field,
    register,
)


def _mono(wave_: Any, where: str) -> torch.Tensor:
    """``[C, T]`` or ``[T]`` float -> mono ``[T]`` float32."""
    if not isinstance(wave_, torch.Tensor):
        if isinstance(wave_, np.ndarray):
            wave_ = torch.from_numpy(wave_)
        else:
            raise ValueError(f"{where}: expected a float tensor [C, T], got {type(wave_).__name__}")
    if not wave_.is_floating_point():
        raise ValueError(f"{where}: expected a float waveform in [-1, 1], got dtype {wave_.dtype}")
    if wave_.ndim not in (1, 2) or wave_.shape[-1] == 0 or wave_.numel() == 0:
        raise ValueError(f"{where}: expected shape [C, T] or [T] with T > 0, got {tuple(wave_.shape)}")
    return (wave_.mean(0) if wave_.ndim == 2 else wave_).float()


# -- waveform transforms (pure functions of [..., T] waveforms; the generator draws their parameters) -------
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
def _fft_size(n: int) -> int:
    """The smallest ``2^a 3^b 5^c >= n`` with ``a >= 6``: an FFT length that runs fast. A prime-heavy length
    runs ~8x slower (31999 vs 32000 samples) and so do lengths with few factors 2 (28125 = 3^2 5^5: 1.6x)."""
    best = 64 << max(0, (n - 1).bit_length() - 6)  # the next power of two (at least 64)
    p5 = 1
    while 64 * p5 < best:
        p35 = p5
        while 64 * p35 < best:
            m = 64 * p35
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


def _optional_range(name: str, value: Any, **bounds: float) -> tuple[float, float] | None:
    """``None`` (the option off) or a checked ``(lo, hi)``; a single number ``v`` means ``(v, v)``."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    return check_range(name, value, **bounds)


@register("audio")
class AudioViews(ViewGenerator):
    """Log-mel views of one clip (see the module docstring for the pipeline).

    Args:
        n_views: views per clip (``view0`` ..).
        field: the waveform field; its rate is read from ``<field>.sample_rate``.
        sample_rate: the rate everything runs at (input is resampled to it).
        input_sample_rate: the rate assumed when the sample carries none (bare tensors).
        duration: view length in seconds (shorter clips are zero-padded).
        shift: the largest time shift in seconds (zero-filled delay or advance).
        gain_db: range of the random gain in dB.
        noise: ``"gaussian"``, ``None`` (no noise), a list of waveforms (``[T]`` or ``[C, T]`` at
            ``noise_sample_rate``, default ``sample_rate``) or a folder of ``.wav`` files: the noise bank.
        noise_p: probability that a view gets noise; ``snr_db`` the range of its SNR.
        n_fft, win_length, hop_length, n_mels, f_min, f_max: the MelSpectrogram; ``top_db`` AmplitudeToDB's.
        normalize: standardise each view (zero mean, unit variance over its spectrogram) when True.
        freq_masks, freq_width, time_masks, time_width: SpecAugment: how many masks of up to how many mel
            bins / frames (filled with 0, the mean after standardisation).
        speed: ``None`` (off) or the range of the speed factor (e.g. ``(0.8, 1.25)``; 0.8 is 1.25x longer
            and lower); resampling by the factor on a 1 % grid (:func:`rational`).
        stretch: ``None`` or the range of the time-stretch rate (phase vocoder: tempo changes, pitch does not).
        pitch: ``None`` or the range of the pitch shift in semitones (phase vocoder + resampling).
        crop_duration: ``None`` or the range (seconds, at most ``duration``) of the content of each view:
            a crop of that length, zero-padded to ``duration``.
        eq_p, eq_freq, eq_gain_db, eq_q: probability of a peaking-equaliser biquad per view, the range of
            its centre frequency (Hz, drawn log-uniformly), of its gain (dB) and its Q.
        bandpass_p, bandpass_freq, bandpass_q: probability of a band-pass biquad per view, the range of its
            centre frequency (Hz, log-uniform) and its Q.
        reverb_p, rt60: probability of reverberation per view and the range of the RT60 (seconds) of its
            synthetic room impulse response (``synthetic_rir``; the reverberant view keeps its RMS).
        loudness_db: ``None`` or a target RMS in dB re full scale (a number or a range drawn per view),
            applied before ``gain_db``.

    The new transforms run per view in this order: speed, stretch, pitch (together, in one :func:`warp` of a
    crop long enough to give the view's length after them), crop length, shift, equaliser, band-pass,
    reverberation, loudness, gain, noise. Each draws its numbers from the view's generator only when it is on.

    Eval mode: a centre crop, no shift, gain, noise or masks.

    Examples:
        >>> gen = AudioViews(n_views=2, sample_rate=8000, duration=0.5, n_mels=32, hop_length=80, n_fft=256)
        >>> views = gen({"__key__": "c", "audio": torch.zeros(1, 8000), "audio.sample_rate": 8000})
        >>> tuple(views["view0"].shape)
        (1, 32, 51)
    """

    modality = "audio"

    def __init__(
        self,
        n_views: int = 2,
        *,
        field: str = "audio",
        sample_rate: int = 16000,
        input_sample_rate: int | None = None,
        duration: float = 1.0,
        shift: float = 0.1,
        gain_db: Sequence[float] = (-6.0, 6.0),
        noise: Any = "gaussian",
        noise_sample_rate: int | None = None,
        noise_p: float = 0.5,
        snr_db: Sequence[float] = (5.0, 20.0),
        n_fft: int = 400,
        win_length: int | None = None,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        normalize: bool = True,
        freq_masks: int = 2,
        freq_width: int = 8,
        time_masks: int = 2,
        time_width: int = 10,
        speed: Sequence[float] | None = None,
        stretch: Sequence[float] | None = None,
        pitch: Sequence[float] | None = None,
        crop_duration: Sequence[float] | None = None,
        eq_p: float = 0.0,
        eq_freq: Sequence[float] = (100.0, 4000.0),
        eq_gain_db: Sequence[float] = (-12.0, 12.0),
        eq_q: float = 1.0,
        bandpass_p: float = 0.0,
        bandpass_freq: Sequence[float] = (300.0, 3000.0),
        bandpass_q: float = 0.707,
        reverb_p: float = 0.0,
        rt60: Sequence[float] = (0.2, 0.8),
        loudness_db: float | Sequence[float] | None = None,
        seed: int = 0,
        train: bool = True,
    ):
        super().__init__(seed=seed, train=train)
        import torchaudio  # lazily: torchaudio needs a matching torch build; image-only users never need it

        for name, value in (
            ("n_views", n_views),
            ("sample_rate", sample_rate),
            ("n_fft", n_fft),
            ("hop_length", hop_length),
            ("n_mels", n_mels),
        ):
            check_positive(name, value, integer=True)
        for name, value in (
            ("freq_masks", freq_masks),
            ("freq_width", freq_width),
            ("time_masks", time_masks),
            ("time_width", time_width),
        ):
            check_positive(name, value, integer=True, allow_zero=True)
        check_positive("duration", duration)
        check_positive("shift", shift, allow_zero=True)
        check_probability("noise_p", noise_p)
        if input_sample_rate is not None:
            check_positive("input_sample_rate", input_sample_rate, integer=True)
        self.n_views, self.field, self.sample_rate = n_views, field, sample_rate
        self.input_sample_rate = input_sample_rate
        self.n_samples = max(1, round(duration * sample_rate))
        self.max_shift = round(shift * sample_rate)
        self.gain_db = check_range("gain_db", gain_db)
        self.snr_db = check_range("snr_db", snr_db)
        self.noise_p = noise_p
        self._resamplers: dict[int, torch.nn.Module] = {}
        self._noise_rate = noise_sample_rate or sample_rate
        self._noise_folder: Path | None = None
        self.noise_kind, self._bank = self._load_noise(noise, self._noise_rate)
        self.masks = (freq_masks, min(freq_width, n_mels), time_masks, time_width)
        self.normalize = bool(normalize)
        self._mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            power=2.0,
        )
        self._to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=top_db)
        # -- the optional waveform transforms (None / probability 0: off, nothing drawn) --
        self.speed = _optional_range("speed", speed, low=0.1, high=10.0)
        self.stretch = _optional_range("stretch", stretch, low=0.1, high=10.0)
        self.pitch = _optional_range("pitch", pitch, low=-24.0, high=24.0)
        self.crop_duration = _optional_range("crop_duration", crop_duration, low=1.0 / sample_rate, high=duration)
        nyquist = sample_rate / 2.0
        for name, value in (("eq_p", eq_p), ("bandpass_p", bandpass_p), ("reverb_p", reverb_p)):
            check_probability(name, value)
        check_positive("eq_q", eq_q)
        check_positive("bandpass_q", bandpass_q)
        self.eq_p, self.eq_q = eq_p, eq_q
        self.bandpass_p, self.bandpass_q = bandpass_p, bandpass_q
        self.reverb_p = reverb_p
        # Centre frequencies must lie below Nyquist only where the filter is on (the defaults suit 16 kHz).
        self.eq_freq = check_range("eq_freq", eq_freq, low=1.0, high=nyquist * 0.99 if eq_p > 0 else math.inf)
        self.bandpass_freq = check_range(
            "bandpass_freq", bandpass_freq, low=1.0, high=nyquist * 0.99 if bandpass_p > 0 else math.inf
        )
        self.eq_gain_db = check_range("eq_gain_db", eq_gain_db, low=-40.0, high=40.0)
        self.rt60 = check_range("rt60", rt60, low=0.01, high=5.0)
        self.loudness_db = _optional_range("loudness_db", loudness_db, low=-100.0, high=0.0)
        self._stft_size = _stft_size(sample_rate)

    # -- set-up -------------------------------------------------------------------------------------------
    def _resample(self, x: torch.Tensor, rate: int) -> torch.Tensor:
        """``x [..., T]`` at ``rate`` -> ``sample_rate`` (one cached Resample module per input rate)."""
        if rate == self.sample_rate:
            return x
        if rate not in self._resamplers:
            import torchaudio

            self._resamplers[rate] = torchaudio.transforms.Resample(rate, self.sample_rate)
        return self._resamplers[rate](x)

    def _load_noise(self, noise: Any, rate: int) -> tuple[str | None, list[torch.Tensor]]:
        if noise is None or noise == "gaussian":
            return noise, []
        if isinstance(noise, (str, os.PathLike)):
            # Read on first use: a recipe names a folder that its shard build writes, so validating or dry-running
            # it (and evaluating, which adds no noise) must not need the folder; training reads it in the first batch.
            self._noise_folder = Path(noise)
            return "bank", None
        if isinstance(noise, Sequence) and len(noise) > 0:
            bank = [self._resample(_mono(w, f"noise[{i}]"), rate) for i, w in enumerate(noise)]
        else:
            raise ValueError(
                f"noise: expected 'gaussian', None, a non-empty list of waveforms or a folder, got {noise!r}"
            )
        return "bank", bank

    @property
    def noise_bank(self) -> list[torch.Tensor]:
        """The noise recordings, mono ``[T]`` at ``sample_rate`` (a folder is read on first use)."""
        if self._bank is None:
            self._bank = self._read_noise_folder(self._noise_folder)
        return self._bank

    def _read_noise_folder(self, folder: Path) -> list[torch.Tensor]:
        files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
        if not files:
            raise ValueError(
                f"noise: expected 'gaussian', None, a list of waveforms or a folder of .wav files; "
                f"{str(folder)!r} {'has no .wav files' if folder.is_dir() else 'is not a folder'}"
            )
        bank = []
        for path in files:
            wav, file_rate = read_wav(path)
            bank.append(self._resample(_mono(wav, str(path)), file_rate))
        return bank

    @property
    def view_names(self) -> tuple[str, ...]:
        return tuple(f"view{i}" for i in range(self.n_views))

    # -- waveform views -----------------------------------------------------------------------------------
    def load(self, sample: Any) -> torch.Tensor:
        """The clip as mono ``[T]`` at ``sample_rate``."""
        where = f"{describe_sample(sample)} field {self.field!r}"
        wav = _mono(get_field(sample, self.field), where)
        rate = sample.get(f"{self.field}.sample_rate") if isinstance(sample, dict) else None
        rate = rate if rate is not None else self.input_sample_rate
        if rate is None:
            raise ValueError(f"{where}: no '{self.field}.sample_rate' in the sample and no input_sample_rate set")
        return self._resample(wav, int(rate))

    def _window(self, wav: torch.Tensor, start: int) -> torch.Tensor:
        """``n_samples`` samples of ``wav [T]`` from ``start`` (zero-padded past the end)."""
        out = wav[start : start + self.n_samples]
        if out.shape[0] < self.n_samples:
            out = torch.nn.functional.pad(out, (0, self.n_samples - out.shape[0]))
        return out

    @staticmethod
    def _shift(x: torch.Tensor, k: int) -> torch.Tensor:
        """Delay (k > 0) or advance (k < 0) ``x [T]`` by ``|k|`` samples, zero-filled."""
        if k == 0 or abs(k) >= x.shape[0]:
            return x if k == 0 else torch.zeros_like(x)
        out = torch.zeros_like(x)
        if k > 0:
            out[k:] = x[:-k]
        else:
            out[:k] = x[-k:]
        return out

    @staticmethod
    def _log_uniform(u: Uniforms, lo: float, hi: float) -> float:
        return math.exp(u.uniform(math.log(lo), math.log(hi)))

    def _crop(self, wav: torch.Tensor, u: Uniforms) -> torch.Tensor:
        """One view's ``[n_samples]`` crop of ``wav [T]``, sped up / stretched / pitch-shifted / shortened
        when those options are on (all off: ``_window(wav, start)`` with the same single draw as before).

        The crop comes first, just long enough to give the view's content after the transforms, which then
        run together in one :func:`warp` (one vocoder pass, one cached resampling)."""
        speed = u.uniform(*self.speed) if self.speed else 1.0
        stretch = u.uniform(*self.stretch) if self.stretch else 1.0
        semitones = u.uniform(*self.pitch) if self.pitch else 0.0
        length = max(1, round(u.uniform(*self.crop_duration) * self.sample_rate)) if self.crop_duration else None
        content = length or self.n_samples
        span = max(1, math.ceil(content * float(rational(speed)) * stretch)) if self.speed or self.stretch else content
        start = u.randint(0, max(1, wav.shape[0] - span + 1))
        x = wav[start : start + span]
        if self.speed or self.stretch or self.pitch:
            x = warp(x, speed, stretch, semitones, self._stft_size)
        return self._window(x[:content], 0)

    def _filters(self, x: torch.Tensor, u: Uniforms, generator: torch.Generator) -> torch.Tensor:
        """Equaliser, band-pass, reverberation and loudness of one view ``x [n_samples]`` (those that are on)."""
        if self.eq_p > 0 and u.bernoulli(self.eq_p):
            freq, gain = self._log_uniform(u, *self.eq_freq), u.uniform(*self.eq_gain_db)
            x = _biquad("eq", x, self.sample_rate, freq, self.eq_q, gain)
        if self.bandpass_p > 0 and u.bernoulli(self.bandpass_p):
            x = _biquad("bandpass", x, self.sample_rate, self._log_uniform(u, *self.bandpass_freq), self.bandpass_q)
        if self.reverb_p > 0 and u.bernoulli(self.reverb_p):
            x = reverberate(x, synthetic_rir(u.uniform(*self.rt60), self.sample_rate, generator))
        if self.loudness_db:
            x = normalize_rms(x, u.uniform(*self.loudness_db))
        return x

    def _noise(self, u: Uniforms, generator: torch.Generator) -> torch.Tensor:
        """One noise excerpt ``[n_samples]`` (Gaussian, or a bank recording tiled and cut at random)."""
        if self.noise_kind == "gaussian":
            return torch.randn(self.n_samples, generator=generator)
        clip = self.noise_bank[u.randint(0, len(self.noise_bank))]
        if clip.shape[0] < self.n_samples:
            clip = clip.repeat(self.n_samples // clip.shape[0] + 1)
        start = u.randint(0, clip.shape[0] - self.n_samples + 1)
        return clip[start : start + self.n_samples]

    def waveforms(self, wav: torch.Tensor, u: Uniforms, generator: torch.Generator) -> torch.Tensor:
        """Random waveform views ``[V, n_samples]`` of a mono clip ``wav [T]``."""
        views, gains, noises, snrs = [], [], [], []
        for _ in range(self.n_views):
            x = self._shift(self._crop(wav, u), u.randint(-self.max_shift, self.max_shift + 1))
            views.append(self._filters(x, u, generator))
            gains.append(10.0 ** (u.uniform(*self.gain_db) / 20.0))
            if self.noise_kind is not None and u.bernoulli(self.noise_p):
                noises.append(self._noise(u, generator))
                snrs.append(u.uniform(*self.snr_db))
            else:
                noises.append(torch.zeros(self.n_samples))
                snrs.append(float("inf"))
        x = torch.stack(views) * torch.tensor(gains).unsqueeze(1)
        noise = torch.stack(noises)
        # Scale each noise to the drawn SNR against its view's power (views without noise get scale 0).
        p_signal, p_noise = x.pow(2).mean(1, keepdim=True), noise.pow(2).mean(1, keepdim=True)
        snr = torch.tensor(snrs).unsqueeze(1)
        scale = torch.sqrt(p_signal / (p_noise.clamp_min(1e-12) * 10.0 ** (snr / 10.0)))
        return x + noise * scale

    def eval_waveforms(self, wav: torch.Tensor) -> torch.Tensor:
        """Centre crops ``[V, n_samples]``."""
        x = self._window(wav, max(0, (wav.shape[0] - self.n_samples) // 2))
        return x.unsqueeze(0).expand(self.n_views, -1)

    # -- spectrogram views --------------------------------------------------------------------------------
    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """``x [V, T]`` -> standardised log-mel ``[V, 1, n_mels, frames]`` (top_db applied per view)."""
        spec = self._to_db(self._mel(x).unsqueeze(1))
        if self.normalize:
            mean = spec.mean(dim=(-2, -1), keepdim=True)
            std = spec.std(dim=(-2, -1), keepdim=True).clamp_min(1e-5)
            spec = (spec - mean) / std
        return spec

    def _band(self, u: Uniforms, n_masks: int, width: int, size: int) -> torch.Tensor:
        """A ``[V, size]`` bool mask of ``n_masks`` random bands of width < ``width`` per view (SpecAugment)."""
        starts, ends = [], []
        for _ in range(self.n_views * n_masks):
            w = u.randint(0, width + 1)
            s = u.randint(0, max(1, size - w + 1))
            starts.append(s)
            ends.append(s + w)
        pos = torch.arange(size)
        lo = torch.tensor(starts).reshape(self.n_views, n_masks, 1)
        hi = torch.tensor(ends).reshape(self.n_views, n_masks, 1)
        return ((pos >= lo) & (pos < hi)).any(dim=1)

    def spec_augment(self, spec: torch.Tensor, u: Uniforms) -> torch.Tensor:
        """Zero random mel bands and frame spans of ``spec [V, 1, n_mels, frames]``."""
        n_freq, f_width, n_time, t_width = self.masks
        mask = torch.zeros(spec.shape[0], 1, spec.shape[2], spec.shape[3], dtype=torch.bool)
        if n_freq and f_width:
            mask |= self._band(u, n_freq, f_width, spec.shape[2]).reshape(-1, 1, spec.shape[2], 1)
        if n_time and t_width:
            mask |= self._band(u, n_time, t_width, spec.shape[3]).reshape(-1, 1, 1, spec.shape[3])
        return spec.masked_fill(mask, 0.0)

    def generate(self, sample: Any, generator: torch.Generator) -> dict[str, Any]:
        wav = self.load(sample)
        if self.train:
            u = Uniforms(generator)
            spec = self.spec_augment(self.log_mel(self.waveforms(wav, u, generator)), u)
        else:
            spec = self.log_mel(self.eval_waveforms(wav))
        out: dict[str, Any] = dict(zip(self.view_names, spec.unbind(0)))
        out[META] = {name: {"sample_rate": self.sample_rate} for name in self.view_names}
        return out
