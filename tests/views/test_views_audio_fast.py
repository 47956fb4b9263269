"""The audio generator's cheaper paths compute what the slower ones did: the phase vocoder against
torchaudio's, reverberation against fftconvolve, the biquads against torchaudio's filters, cached resampling
against torchaudio.functional.resample; speed + stretch + pitch in one warp with each effect kept."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torchaudio.functional as F
from audio_signals import peak_hz, tone  # tests/views is on sys.path (pytest prepend mode)

import multiview.views as mv
import multiview.views.waveform as waveform
import multiview.views.waveform_rows as rows
from multiview.views.base import Uniforms
from multiview.views.waveform import (
    _fft_size,
    _phase_vocoder,
    _resampler,
    biquad_coefficients,
    rational,
    reverberate,
    speed_perturb,
    synthetic_rir,
    time_stretch,
    warp,
    warp_factors,
)


@pytest.mark.parametrize("rate", [0.5, 0.8, 0.97, 1.25, 2.0])
def test_phase_vocoder_equals_torchaudios(rate):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6000, generator=g, dtype=torch.float64) * 0.1
    x[:, 2000:3000] = 0.0  # silent frames: torchaudio's angle(0) = 0 must be matched
    spec = torch.stft(x, 256, 64, window=torch.hann_window(256, dtype=torch.float64), return_complex=True)
    advance = torch.linspace(0, math.pi * 64, 129, dtype=torch.float64).unsqueeze(1)
    expected = F.phase_vocoder(spec, rate, advance)
    got = _phase_vocoder(spec, rate)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-8)


def test_reverberate_equals_fftconvolve_cut_and_rescaled():
    g = torch.Generator().manual_seed(1)
    for length, rir_len, first, last in [(4000, 3000, 0, 4000), (4000, 6000, 700, 2500), (500, 40, 499, 500)]:
        x = torch.zeros(2, length, dtype=torch.float64)
        x[:, first:last] = torch.randn(2, last - first, generator=g, dtype=torch.float64)
        rir = synthetic_rir(rir_len / 8000, 8000, g).double()
        full = F.fftconvolve(x, rir.expand(2, -1))[..., :length]
        expected = full * x.pow(2).mean(-1, keepdim=True).sqrt() / full.pow(2).mean(-1, keepdim=True).sqrt()
        torch.testing.assert_close(reverberate(x, rir), expected, rtol=0, atol=1e-10)
    assert torch.equal(reverberate(torch.zeros(300), rir), torch.zeros(300))  # silence stays silent


@pytest.mark.parametrize("freq, q, gain", [(100.0, 1.0, 12.0), (1000.0, 0.707, -6.0), (3000.0, 2.0, 3.0)])
def test_biquads_equal_torchaudios_filters(freq, q, gain):
    x = torch.randn(2, 4000, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.05
    torch.testing.assert_close(
        waveform._biquad("eq", x, 16000, freq, q, gain), F.equalizer_biquad(x, 16000, freq, gain, q), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        waveform._biquad("bandpass", x, 16000, freq, q), F.bandpass_biquad(x, 16000, freq, q), rtol=0, atol=1e-12
    )
    a, b = biquad_coefficients("eq", 16000, freq, q, 0.0)
    assert a == b  # 0 dB: the identity
    # Unclamped: a boosted loud view is not cut at 1 (torchaudio's lfilter clamps by default).
    loud = waveform._biquad("eq", 0.9 * tone(1000.0, 0.25, 16000), 16000, 1000.0, 1.0, 12.0)
    assert float(loud.abs().max()) > 1.5  # 0.45 boosted by 12 dB: ~1.8


def test_resampling_kernels_are_cached_and_give_torchaudios_numbers():
    x = torch.randn(3, 5000, generator=torch.Generator().manual_seed(3))
    assert rational(0.83) == Fraction(100, 120)  # 100/k below 1
    torch.testing.assert_close(speed_perturb(x, 0.83), F.resample(x, 5, 6), rtol=0, atol=0)
    hits = _resampler.cache_info().hits
    speed_perturb(x, 0.83)
    assert _resampler.cache_info().hits == hits + 1


def test_speed_and_pitch_factors_lie_on_a_one_percent_grid():
    assert rational(0.8) == Fraction(4, 5) and rational(1.25) == Fraction(5, 4)
    assert rational(2 ** (7 / 12)) == Fraction(3, 2) and rational(0.5) == Fraction(1, 2)
    assert rational(1.013) == Fraction(101, 100) and rational(1.001) == 1 and rational(0.997) == 1
    for f in torch.linspace(0.25, 4.0, 2000).tolist():
        assert abs(float(rational(f)) / f - 1) <= 0.005 + 1e-9
    # ~120 fractions cover speeds 0.8-1.25 and +-4 semitones: few kernels to cache.
    grid = {rational(s * 2 ** (p / 12)) for s in torch.linspace(0.8, 1.25, 200).tolist() for p in range(-4, 5)}
    assert len(grid) < 150


def test_fft_sizes_are_the_smallest_fast_lengths():
    fast = sorted(
        64 * 2**a * 3**b * 5**c for a in range(8) for b in range(6) for c in range(5) if 64 * 2**a * 3**b * 5**c < 9000
    )
    for n in [1, 63, 64, 65, 100, 1000, 4097, 5000, 8191]:
        assert _fft_size(n) == min(m for m in fast if m >= n)
    assert _fft_size(31999) == 32000 and _fft_size(19200) == 19200


def test_warp_is_speed_then_stretch_then_pitch_in_one_vocoder_pass(monkeypatch):
    rate = 8000
    x = tone(500.0, 1.0, rate)
    assert torch.equal(warp(x, speed=0.8), speed_perturb(x, 0.8))  # no vocoder without stretch or pitch
    assert torch.equal(warp(x, stretch=1.2, n_fft=256), time_stretch(x, 1.2, n_fft=256))
    calls = []
    real = waveform._phase_vocoder
    monkeypatch.setattr(waveform, "_phase_vocoder", lambda *a: calls.append(a[1]) or real(*a))
    y = warp(x, speed=0.8, stretch=1.1, semitones=3.0, n_fft=256)
    assert len(calls) == 1  # one vocoder pass (chained: two), then one resampling
    factor, vocoder_rate = warp_factors(0.8, 1.1, 3.0)
    assert calls == [vocoder_rate] and float(factor) == pytest.approx(0.8 * 2 ** (3 / 12), rel=0.005)
    assert y.shape[-1] == pytest.approx(rate / (0.8 * 1.1), rel=0.01)  # tempo: speed x stretch
    assert peak_hz(y, rate) == pytest.approx(500.0 * 0.8 * 2 ** (3 / 12), abs=2.0 + 500 * 0.005)  # pitch


def test_the_views_of_a_batch_run_one_vocoder_pass_for_all(monkeypatch):
    calls = []
    real = rows._phase_vocoder_rows
    monkeypatch.setattr(rows, "_phase_vocoder_rows", lambda *a: calls.append(len(a[2])) or real(*a))
    gen = mv.create(
        "audio", n_views=3, sample_rate=8000, n_fft=256, hop_length=80, n_mels=32, duration=0.5,
        speed=(0.8, 1.25), stretch=(0.8, 1.25), pitch=(-3.0, 3.0),
    )  # fmt: skip
    views = gen.waveforms(tone(300.0, 1.0, 8000), Uniforms(torch.Generator().manual_seed(0)), torch.Generator())
    assert calls == [3] and views.shape == (3, 4000)  # one pass, three rows (per view: three passes)
    assert (views.abs().sum(1) > 0).all()
    clips = [{"__key__": f"c{i}", "audio": tone(300.0 + 50 * i, 1.0, 8000)[None], "audio.sample_rate": 8000}
             for i in range(4)]  # fmt: skip
    calls.clear()
    gen.batch(clips)
    assert calls == [6, 6]  # 4 clips x 3 views: two clips (6 views <= views_per_call 8) per pass
