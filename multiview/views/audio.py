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
``rt60``) and loudness normalisation (``loudness_db``). The functions behind them are public and work on any
``[..., T]`` waveform (``multiview.views.waveform``: ``speed_perturb``, ``time_stretch``, ``pitch_shift``,
``warp``, ``synthetic_rir``, ``reverberate``, ``normalize_rms``, ``biquad_coefficients``).

Draw, then render: every number of a clip's views is drawn first (``draw``, in a fixed order from the clip's
generator), then the views of all clips in a ``batch`` are made together (``render``), one call per transform
for all of them (``multiview.views.waveform_rows``); ``generate`` is a batch of one, so a clip gets the same
views alone or in any batch (to float rounding). Cost (benchmarks/views_audio.py; benchmarks/README.md "Audio
views: cost"): a view crops first, just long enough for its length after the transforms; speed, stretch and
pitch then run as ONE phase-vocoder pass and ONE resampling (``warp``); resampling kernels are cached per
factor; the vocoder multiplies unit phasors instead of taking angles; reverberation convolves at a fast FFT
length; an FFT's, filter's or STFT's fixed cost is paid once per batch instead of once per view.

Two domains (``domain``): ``"waveform"`` (the default) runs each transform on the samples, then takes the log-mel;
``"spectrogram"`` makes the same views from the same draws without leaving the STFT domain, each transform as the
map it induces on the view's power spectrogram (``multiview.views.spectrogram_rows``: the warp as the analysis
window and hop of each frame, the filters in the mel matrix, reverberation as a convolution of powers over time,
noise as added power) -- ~2.5x cheaper with every transform on, so one loader worker keeps cmc_avdigits' step
fed where the waveform domain needs two (benchmarks/README.md "Audio views: cost"). Without the warp, filters,
reverberation and noise both domains give the same views to float rounding.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
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
from multiview.views.spectrogram_rows import (
    biquad_power,
    frame_positions,
    hann_window,
    interleaved_power,
    mean_square,
    reverberate_power_rows,
    smooth_size,
    warped_mel_matrix,
    warped_power,
)
from multiview.views.waveform import _stft_size, rational, synthetic_rir, warp_factors
from multiview.views.waveform_rows import biquad_rows, normalize_rms_rows, reverberate_rows, warp_rows

DOMAINS = ("waveform", "spectrogram")  # where the training views' transforms run


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
        domain: where training views are made: ``"waveform"`` (each transform on the samples, then the
            log-mel) or ``"spectrogram"`` (each transform as the map it induces on the view's power
            spectrogram, ``multiview.views.spectrogram_rows``: the same draws, several times cheaper with the
            warp, filters or reverberation on; the warp's edges and the reverberation's and noise's fine
            structure are modelled, not computed). Evaluation views are the same in both.

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
    # Views made per call of each transform: enough to pay an FFT's or a filter's fixed cost once for several
    # views, few enough that a call's tensors stay in cache (every option on, 1.2 s at 16 kHz, one thread: 1 view
    # per call 3.5 ms a view, 4-64 views 2.5-2.7 ms; benchmarks/README.md "Audio views: cost").
    views_per_call = 8

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
        domain: str = "waveform",
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
        self._mel2 = self._mel.mel_scale.fb.repeat_interleave(2, dim=0)  # for interleaved_power
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
        if domain not in DOMAINS:
            raise ValueError(f"domain: expected one of {list(DOMAINS)}, got {domain!r}")
        self.domain = domain

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

    def _draw_crop(self, wav_len: int, u: Uniforms) -> dict[str, Any]:
        """Where a view's crop starts, how long it is and how it is warped (all off: one draw, the start).

        The crop comes first, just long enough to give the view's content after speed / stretch / pitch,
        which then run together in one :func:`warp`."""
        speed = u.uniform(*self.speed) if self.speed else 1.0
        stretch = u.uniform(*self.stretch) if self.stretch else 1.0
        semitones = u.uniform(*self.pitch) if self.pitch else 0.0
        length = max(1, round(u.uniform(*self.crop_duration) * self.sample_rate)) if self.crop_duration else None
        content = length or self.n_samples
        span = max(1, math.ceil(content * float(rational(speed)) * stretch)) if self.speed or self.stretch else content
        start = u.randint(0, max(1, wav_len - span + 1))
        return {"start": start, "span": span, "speed": speed, "stretch": stretch, "semitones": semitones,
                "content": content}  # fmt: skip

    def _draw_filters(self, u: Uniforms, generator: torch.Generator) -> dict[str, Any]:
        """The equaliser, band-pass, room and loudness of one view (``None``: that transform is off for it)."""
        eq = bandpass = rir = loudness = None
        if self.eq_p > 0 and u.bernoulli(self.eq_p):
            eq = (self._log_uniform(u, *self.eq_freq), u.uniform(*self.eq_gain_db))
        if self.bandpass_p > 0 and u.bernoulli(self.bandpass_p):
            bandpass = self._log_uniform(u, *self.bandpass_freq)
        if self.reverb_p > 0 and u.bernoulli(self.reverb_p):
            rir = synthetic_rir(u.uniform(*self.rt60), self.sample_rate, generator)
        if self.loudness_db:
            loudness = u.uniform(*self.loudness_db)
        return {"eq": eq, "bandpass": bandpass, "rir": rir, "loudness": loudness}

    def _noise(self, u: Uniforms, generator: torch.Generator) -> torch.Tensor:
        """One noise excerpt ``[n_samples]`` (Gaussian, or a bank recording tiled and cut at random)."""
        if self.noise_kind == "gaussian":
            return torch.randn(self.n_samples, generator=generator)
        clip = self.noise_bank[u.randint(0, len(self.noise_bank))]
        if clip.shape[0] < self.n_samples:
            clip = clip.repeat(self.n_samples // clip.shape[0] + 1)
        start = u.randint(0, clip.shape[0] - self.n_samples + 1)
        return clip[start : start + self.n_samples]

    def draw(self, wav_len: int, u: Uniforms, generator: torch.Generator) -> list[dict[str, Any]]:
        """Every number of one clip's ``n_views`` training views, in the order the views use them: the crop and
        warp, shift, filters, gain, then noise and its SNR (a view without noise: ``None`` and ``inf``)."""
        draws = []
        for _ in range(self.n_views):
            view = self._draw_crop(wav_len, u)
            view["shift"] = u.randint(-self.max_shift, self.max_shift + 1)
            view.update(self._draw_filters(u, generator))
            view["gain"] = 10.0 ** (u.uniform(*self.gain_db) / 20.0)
            noisy = self.noise_kind is not None and u.bernoulli(self.noise_p)
            view["noise"] = self._noise(u, generator) if noisy else None
            view["snr"] = u.uniform(*self.snr_db) if noisy else float("inf")
            draws.append(view)
        return draws

    def _crops(self, wavs: Sequence[torch.Tensor], draws: Sequence[dict]) -> torch.Tensor:
        """The views' crops of their clips, warped (one :func:`warp_rows` for all) and cut: ``[N, n_samples]``."""
        crops = [wav[d["start"] : d["start"] + d["span"]] for wav, d in zip(wavs, draws)]
        if self.speed or self.stretch or self.pitch:
            crops = warp_rows(crops, *([d[k] for d in draws] for k in ("speed", "stretch", "semitones")),
                              n_fft=self._stft_size)  # fmt: skip
        return torch.stack([self._shift(self._window(c[: d["content"]], 0), d["shift"]) for c, d in zip(crops, draws)])

    def _filter_rows(self, x: torch.Tensor, draws: Sequence[dict]) -> torch.Tensor:
        """Equaliser, band-pass, reverberation and loudness of the views ``x [N, n_samples]`` that drew them:
        one call per transform for all those views."""
        x = x.clone()
        rows = [i for i, d in enumerate(draws) if d["eq"]]
        if rows:
            freqs, gains = zip(*(draws[i]["eq"] for i in rows))
            x[rows] = biquad_rows("eq", x[rows], self.sample_rate, freqs, self.eq_q, gains)
        rows = [i for i, d in enumerate(draws) if d["bandpass"]]
        if rows:
            freqs = [draws[i]["bandpass"] for i in rows]
            x[rows] = biquad_rows("bandpass", x[rows], self.sample_rate, freqs, self.bandpass_q)
        rows = [i for i, d in enumerate(draws) if d["rir"] is not None]
        if rows:
            x[rows] = reverberate_rows(x[rows], [draws[i]["rir"] for i in rows])
        rows = [i for i, d in enumerate(draws) if d["loudness"] is not None]
        if rows:
            x[rows] = normalize_rms_rows(x[rows], [draws[i]["loudness"] for i in rows])
        return x

    def render(self, wavs: Sequence[torch.Tensor], draws: Sequence[dict]) -> torch.Tensor:
        """Waveform views ``[N, n_samples]``: view ``n`` of clip ``wavs[n] [T_n]`` made with ``draws[n]``."""
        x = self._filter_rows(self._crops(wavs, draws), draws)
        x = x * torch.tensor([d["gain"] for d in draws]).unsqueeze(1)
        noise = torch.stack([d["noise"] if d["noise"] is not None else torch.zeros(self.n_samples) for d in draws])
        # Scale each noise to the drawn SNR against its view's power (views without noise get scale 0).
        p_signal, p_noise = x.pow(2).mean(1, keepdim=True), noise.pow(2).mean(1, keepdim=True)
        snr = torch.tensor([d["snr"] for d in draws]).unsqueeze(1)
        scale = torch.sqrt(p_signal / (p_noise.clamp_min(1e-12) * 10.0 ** (snr / 10.0)))
        return x + noise * scale

    def render_power(self, wavs: Sequence[torch.Tensor], draws: Sequence[dict]) -> torch.Tensor:
        """Mel power ``[N, n_mels, frames]`` of the views ``render`` makes (view ``n`` of ``wavs[n]`` with
        ``draws[n]``), made on the spectrogram: every transform as its map there (``spectrogram_rows``)."""
        stft, scale = self._mel.spectrogram, self._mel.mel_scale
        frames = 1 + self.n_samples // stft.hop_length
        power = torch.stack([self._warped_power(w, d, frames) for w, d in zip(wavs, draws)])
        rows = [i for i, d in enumerate(draws) if d["rir"] is not None]
        if rows:
            rirs = [draws[i]["rir"] for i in rows]
            power[rows] = reverberate_power_rows(power[rows], rirs, stft.hop_length, stft.n_fft, scale.fb)
        rows = [i for i, d in enumerate(draws) if d["loudness"] is not None]
        if rows:
            ms = self.power_mean_square(power[rows])
            target = 10.0 ** (torch.tensor([draws[i]["loudness"] for i in rows]) / 10.0)
            power[rows] *= (torch.where(ms > 1e-16, target / ms.clamp_min(1e-16), 0.0))[:, None, None]
        power *= torch.tensor([d["gain"] ** 2 for d in draws])[:, None, None]
        return self._add_noise_power(power, draws).transpose(1, 2)

    def _add_noise_power(self, power: torch.Tensor, draws: Sequence[dict]) -> torch.Tensor:
        """``power [N, frames, n_mels]`` plus each drawn noise's mel power at its SNR against the view's power."""
        rows = [i for i, d in enumerate(draws) if d["noise"] is not None]
        if rows:
            noise = self.mel_power(torch.stack([draws[i]["noise"] for i in rows]))
            snr = torch.tensor([draws[i]["snr"] for i in rows])
            ratio = power[rows].sum((1, 2)) / noise.sum((1, 2)).clamp_min(1e-30) / 10.0 ** (snr / 10.0)
            power[rows] += noise * ratio[:, None, None]
        return power

    def power_mean_square(self, power: torch.Tensor) -> torch.Tensor:
        """``[V]``: each view's waveform mean square, estimated from its mel power ``[V, frames, n_mels]``."""
        stft, scale = self._mel.spectrogram, self._mel.mel_scale
        return mean_square(power, float(scale.fb.sum()), float(stft.window.square().sum()))

    def _warped_power(self, wav: torch.Tensor, draw: dict, frames: int) -> torch.Tensor:
        """``[frames, n_mels]``: one view's crop, warp, shift, equaliser and band-pass, on its spectrogram."""
        stft, scale = self._mel.spectrogram, self._mel.mel_scale
        factor, rate = warp_factors(draw["speed"], draw["stretch"], draw["semitones"])
        factor = float(factor)
        tempo = factor * rate
        n = max(2, round(stft.n_fft * factor))
        positions = frame_positions(n, frames, stft.hop_length, self.n_samples, tempo, draw["shift"])
        size = smooth_size(n)
        mel = warped_mel_matrix(n, size, factor, self.sample_rate, scale.f_min, scale.f_max, scale.n_mels)
        if draw["eq"] or draw["bandpass"]:
            mel = mel * self._filter_power(size, factor, draw)[:, None]
        window = hann_window(n, min(n, max(1, round(stft.win_length * factor))))
        # Input samples [0, content * tempo) of the crop make the view's content (the crop's own end aside).
        limit = math.ceil(draw["content"] * tempo - 1e-9)
        return warped_power(wav, draw["start"], limit, positions, mel, window)

    def _filter_power(self, size: int, factor: float, draw: dict) -> torch.Tensor:
        """``[2 * (size // 2 + 1)]``: the view's equaliser and band-pass power response at the output frequencies
        of a ``size``-point FFT warped by ``factor``, each bin twice (the rows of ``warped_mel_matrix``)."""
        freqs = np.arange(size // 2 + 1) * (factor * self.sample_rate / size)
        response = np.ones(size // 2 + 1)
        if draw["eq"]:
            response *= biquad_power("eq", freqs, self.sample_rate, draw["eq"][0], self.eq_q, draw["eq"][1])
        if draw["bandpass"]:
            response *= biquad_power("bandpass", freqs, self.sample_rate, draw["bandpass"], self.bandpass_q)
        return torch.from_numpy(np.repeat(response, 2).astype(np.float32))

    def waveforms(self, wav: torch.Tensor, u: Uniforms, generator: torch.Generator) -> torch.Tensor:
        """Random waveform views ``[V, n_samples]`` of a mono clip ``wav [T]``."""
        return self.render([wav] * self.n_views, self.draw(wav.shape[0], u, generator))

    def eval_waveforms(self, wav: torch.Tensor) -> torch.Tensor:
        """Centre crops ``[V, n_samples]``."""
        x = self._window(wav, max(0, (wav.shape[0] - self.n_samples) // 2))
        return x.unsqueeze(0).expand(self.n_views, -1)

    # -- spectrogram views --------------------------------------------------------------------------------
    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """``x [V, T]`` -> standardised log-mel ``[V, 1, n_mels, frames]`` (top_db applied per view)."""
        return self.log_of_power(self.mel_power(x).transpose(1, 2))

    def mel_power(self, x: torch.Tensor) -> torch.Tensor:
        """``x [V, T]`` -> mel power ``[V, frames, n_mels]``: ``MelSpectrogram``'s numbers, its power taken as
        the squares of the real and imaginary parts (complex ``abs`` then ``pow`` cost ~2x as much here)."""
        stft = self._mel.spectrogram
        spec = torch.stft(x, stft.n_fft, stft.hop_length, stft.win_length, stft.window, center=True,
                          pad_mode="reflect", return_complex=True)  # fmt: skip
        return interleaved_power(spec.transpose(1, 2), self._mel2)

    def log_of_power(self, power: torch.Tensor) -> torch.Tensor:
        """Mel power ``[V, n_mels, frames]`` -> standardised log-mel ``[V, 1, n_mels, frames]``."""
        spec = self._to_db(power.unsqueeze(1))
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

    def masks_for(self, u: Uniforms, n_mels: int, frames: int) -> torch.Tensor:
        """SpecAugment's ``[V, 1, n_mels, frames]`` bool mask of one clip's views: random mel bands, then frame
        spans, drawn from the clip's ``u``."""
        n_freq, f_width, n_time, t_width = self.masks
        mask = torch.zeros(self.n_views, 1, n_mels, frames, dtype=torch.bool)
        if n_freq and f_width:
            mask |= self._band(u, n_freq, f_width, n_mels).reshape(-1, 1, n_mels, 1)
        if n_time and t_width:
            mask |= self._band(u, n_time, t_width, frames).reshape(-1, 1, 1, frames)
        return mask

    def spec_augment(self, spec: torch.Tensor, u: Uniforms) -> torch.Tensor:
        """Zero random mel bands and frame spans of ``spec [V, 1, n_mels, frames]``."""
        return spec.masked_fill(self.masks_for(u, spec.shape[2], spec.shape[3]), 0.0)

    # -- the contract: one clip or a batch of clips, the same views ---------------------------------------
    def generate(self, sample: Any, generator: torch.Generator) -> dict[str, Any]:
        return self.batch([sample], generators=[generator])[0]

    def batch(self, samples: Sequence[Any], *, generators: Sequence[torch.Generator] | None = None) -> list[dict]:
        """The views of several clips, each drawn from its own generator as ``generate`` draws them, made by one
        call per transform for every ``views_per_call`` views (``multiview.views.waveform_rows``): the same views
        as one clip at a time, to float rounding, at a fraction of the per-call cost."""
        generators = self._generators(samples, generators)
        per_call = max(1, self.views_per_call // self.n_views)
        out: list[dict[str, Any]] = []
        for start in range(0, len(samples), per_call):
            out += self._batch(samples[start : start + per_call], generators[start : start + per_call])
        return out

    def _batch(self, samples: Sequence[Any], generators: Sequence[torch.Generator]) -> list[dict]:
        wavs = [self.load(s) for s in samples]
        if self.train:
            us = [Uniforms(g) for g in generators]
            draws = [d for wav, u, g in zip(wavs, us, generators) for d in self.draw(wav.shape[0], u, g)]
            clips = [w for w in wavs for _ in range(self.n_views)]
            if self.domain == "spectrogram":
                spec = self.log_of_power(self.render_power(clips, draws))
            else:
                spec = self.log_mel(self.render(clips, draws))
            mask = torch.cat([self.masks_for(u, spec.shape[2], spec.shape[3]) for u in us])
            spec = spec.masked_fill(mask, 0.0)
        else:
            spec = self.log_mel(torch.cat([self.eval_waveforms(w) for w in wavs]))
        out: list[dict[str, Any]] = []
        for views in spec.split(self.n_views):
            meta = {name: {"sample_rate": self.sample_rate} for name in self.view_names}
            out.append({**dict(zip(self.view_names, views.unbind(0))), META: meta})
        return out
