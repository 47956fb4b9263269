"""Test signals for the audio view tests: a sine tone and the frequency of a spectrum's peak."""

from __future__ import annotations

import math

import torch


def tone(freq: float, seconds: float, rate: int) -> torch.Tensor:
    """A sine ``[T]`` at amplitude 0.5."""
    t = torch.arange(round(seconds * rate)) / rate
    return 0.5 * torch.sin(2 * math.pi * freq * t)


def peak_hz(x: torch.Tensor, rate: int) -> float:
    """Frequency (Hz) of the largest bin of the Hann-windowed spectrum of ``x [T]``."""
    spectrum = torch.fft.rfft(x * torch.hann_window(x.shape[-1])).abs()
    return float(spectrum.argmax()) * rate / x.shape[-1]
