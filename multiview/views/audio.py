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
"""

from __future__ import annotations

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
        self.noise_kind, self.noise_bank = self._load_noise(noise, noise_sample_rate or sample_rate)
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
            folder = Path(noise)
            files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
            if not files:
                raise ValueError(
                    f"noise: expected 'gaussian', None, a list of waveforms or a folder of .wav "
                    f"files; {str(noise)!r} has no .wav files"
                )
            bank = []
            for path in files:
                wav, file_rate = read_wav(path)
                bank.append(self._resample(_mono(wav, str(path)), file_rate))
        elif isinstance(noise, Sequence) and len(noise) > 0:
            bank = [self._resample(_mono(w, f"noise[{i}]"), rate) for i, w in enumerate(noise)]
        else:
            raise ValueError(
                f"noise: expected 'gaussian', None, a non-empty list of waveforms or a folder, got {noise!r}"
            )
        return "bank", bank

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
            start = u.randint(0, max(1, wav.shape[0] - self.n_samples + 1))
            x = self._shift(self._window(wav, start), u.randint(-self.max_shift, self.max_shift + 1))
            views.append(x)
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
