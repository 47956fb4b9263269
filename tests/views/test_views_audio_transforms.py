"""The audio generator's optional waveform transforms: speed, stretch, pitch, crop length, equaliser,
band-pass, reverberation, loudness -- seeded, shape- and rate-safe, and each with its measurable effect."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from audio_signals import peak_hz, tone  # tests/views is on sys.path (pytest prepend mode)

import multiview.views as mv
from multiview.views.base import Uniforms
from multiview.views.waveform import (
    normalize_rms,
    pitch_shift,
    speed_perturb,
    synthetic_rir,
    time_stretch,
)

SMALL = {"sample_rate": 8000, "n_fft": 256, "hop_length": 80, "n_mels": 32, "duration": 0.5}
ALL_ON = {
    "speed": (0.8, 1.25),
    "stretch": (0.8, 1.25),
    "pitch": (-3.0, 3.0),
    "crop_duration": (0.3, 0.5),
    "eq_p": 1.0,
    "eq_freq": (200.0, 3000.0),
    "bandpass_p": 1.0,
    "reverb_p": 1.0,
    "rt60": (0.1, 0.4),
    "loudness_db": (-30.0, -10.0),
}


def _clip(rate: int = 8000, seconds: float = 1.0) -> dict:
    g = torch.Generator().manual_seed(3)
    wav = tone(300.0, seconds, rate) + 0.05 * torch.randn(round(seconds * rate), generator=g)
    return {"__key__": "clip-7", "audio": wav.unsqueeze(0), "audio.sample_rate": rate}


def test_all_transforms_are_deterministic_under_a_seed_and_batch_matches_single_calls():
    gen = mv.create("audio", n_views=3, seed=11, **SMALL, **ALL_ON)
    a, b = gen(_clip()), gen(_clip())
    for name in gen.view_names:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    assert not torch.equal(a["view0"], a["view1"])  # views differ from each other
    other = mv.create("audio", n_views=3, seed=12, **SMALL, **ALL_ON)(_clip())
    assert not torch.equal(a["view0"], other["view0"])
    # Same generators -> same views, per sample or batched; and the generator pickles (DataLoader workers).
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    single = [gen(_clip(), generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    batched = pickle.loads(pickle.dumps(gen)).batch([_clip(), _clip()], generators=gens)
    for one, many in zip(single, batched):
        for name in gen.view_names:
            # Float rounding of the batched FFTs (~1e-6 of a waveform's peak), magnified by the log in
            # near-silent mel bins (tests/views/test_waveform_rows.py compares the waveforms themselves).
            torch.testing.assert_close(one[name], many[name], rtol=0, atol=3e-3)


@pytest.mark.parametrize("input_rate", [8000, 22050, 16000])
def test_shapes_and_sample_rates_with_every_transform_on(input_rate):
    gen = mv.create("audio", n_views=2, **SMALL, **ALL_ON)
    out = gen(_clip(rate=input_rate, seconds=0.7))
    frames = int(0.5 * 8000 // 80 + 1)
    for name in gen.view_names:
        assert out[name].shape == (1, 32, frames) and out[name].dtype == torch.float32
        assert torch.isfinite(out[name]).all()
    # Short clips (shorter than the view and the vocoder's FFT) still give full-size views.
    short = gen({"__key__": "s", "audio": torch.randn(1, 100) * 0.1, "audio.sample_rate": input_rate})
    assert short["view0"].shape == (1, 32, frames)
    # Waveform views are n_samples long at the generator's rate.
    wav = gen.load(_clip(rate=input_rate))
    views = gen.waveforms(wav, Uniforms(torch.Generator().manual_seed(0)), torch.Generator().manual_seed(0))
    assert views.shape == (2, 4000)


def test_speed_0_8_lengthens_by_1_25_and_lowers_the_pitch():
    x = tone(500.0, 1.0, 8000)
    y = speed_perturb(x, 0.8)
    assert abs(y.shape[-1] - 1.25 * x.shape[-1]) <= 1
    assert abs(peak_hz(y, 8000) - 400.0) <= 2.0
    assert speed_perturb(x, 1.25).shape[-1] == pytest.approx(0.8 * x.shape[-1], abs=1)


def test_time_stretch_changes_length_but_not_pitch():
    x = tone(500.0, 1.0, 8000)
    y = time_stretch(x, 0.8, n_fft=256)
    assert y.shape[-1] == 10000
    assert abs(peak_hz(y, 8000) - 500.0) <= 2.0
    # A tone burst of 0.5 s then silence: stretched by 1/0.8 the burst lasts ~0.625 s (5000 samples).
    burst = torch.cat([tone(500.0, 0.5, 8000), torch.zeros(4000)])
    z = time_stretch(burst, 0.8, n_fft=256)
    assert float(z[4400:4800].pow(2).mean().sqrt()) > 0.5 * float(burst[:4000].pow(2).mean().sqrt())
    assert float(z[5400:].abs().max()) < 0.05


def test_transform_functions_keep_leading_dims():
    x = torch.randn(2, 3, 700, generator=torch.Generator().manual_seed(0)) * 0.1
    assert time_stretch(x, 1.25, n_fft=256).shape == (2, 3, 560)
    assert pitch_shift(x, 4.0, n_fft=256).shape == (2, 3, 700)
    assert speed_perturb(x, 0.8).shape == (2, 3, 875)
    torch.testing.assert_close(time_stretch(x, 1.25, n_fft=256)[1, 2], time_stretch(x[1, 2], 1.25, n_fft=256))


@pytest.mark.parametrize("semitones, ratio", [(12.0, 2.0), (-12.0, 0.5), (7.0, 2 ** (7 / 12))])
def test_pitch_shift_moves_the_spectral_peak_by_the_ratio(semitones, ratio):
    rate, n = 8000, 8000
    x = tone(440.0, 1.0, rate)
    y = pitch_shift(x, semitones, n_fft=256)
    assert y.shape == x.shape
    # Tempo kept: the tone still fills the clip (its last fifth is as loud as the input).
    assert float(y[-1600:-200].pow(2).mean().sqrt()) > 0.8 * float(x.pow(2).mean().sqrt())
    bin_hz = rate / n
    assert abs(peak_hz(y, rate) - 440.0 * ratio) <= 2 * bin_hz + 440.0 * ratio * 2e-3  # 2 bins (+ the rational)


def _schroeder_rt60(h: torch.Tensor, rate: int) -> float:
    """RT60 from the T20 slope (-5 to -25 dB) of the backward-integrated energy decay curve."""
    energy = h.double().pow(2).flip(0).cumsum(0).flip(0)
    edc = 10 * torch.log10(energy / energy[0])
    idx = torch.nonzero((edc <= -5) & (edc >= -25)).squeeze(1).double()
    t = idx / rate
    slope = torch.linalg.lstsq(torch.stack([t, torch.ones_like(t)], 1), edc[idx.long()].unsqueeze(1)).solution[0]
    return float(-60.0 / slope)


@pytest.mark.parametrize("rt60", [0.2, 0.5, 0.9])
def test_synthetic_rir_has_the_asked_rt60(rt60):
    for seed in range(3):
        h = synthetic_rir(rt60, 16000, torch.Generator().manual_seed(seed))
        assert h.shape == (round(rt60 * 16000),)
        assert float(h.pow(2).sum()) == pytest.approx(1.0, rel=1e-4)
        assert _schroeder_rt60(h, 16000) == pytest.approx(rt60, rel=0.2)


def test_reverb_view_keeps_rms_and_smears_in_time():
    gen = mv.create(
        "audio", n_views=1, noise=None, gain_db=(0.0, 0.0), shift=0.0, reverb_p=1.0, rt60=(0.3, 0.3), **SMALL
    )
    x = torch.zeros(4000)
    x[1000] = 1.0  # an impulse: the reverberant view is the (rescaled) RIR from there on
    y = gen.waveforms(x, Uniforms(torch.Generator().manual_seed(0)), torch.Generator().manual_seed(0))[0]
    assert float(y.pow(2).mean()) == pytest.approx(float(x.pow(2).mean()), rel=1e-4)
    assert float(y[:1000].abs().max()) < 1e-6 and (y[1000:].abs() > 1e-4).sum() > 1000


def _band_energy(x: torch.Tensor, rate: int, lo: float, hi: float) -> float:
    power = torch.fft.rfft(x).abs().pow(2)
    f = torch.fft.rfftfreq(x.shape[-1], 1 / rate)
    return float(power[(f >= lo) & (f < hi)].sum())


def test_bandpass_attenuates_out_of_band_energy():
    gen = mv.create(
        "audio", n_views=2, noise=None, gain_db=(0.0, 0.0), shift=0.0,
        bandpass_p=1.0, bandpass_freq=(1000.0, 1000.0), bandpass_q=2.0, **SMALL,
    )  # fmt: skip
    x = 0.1 * torch.randn(4000, generator=torch.Generator().manual_seed(0))
    y = gen.waveforms(x, Uniforms(torch.Generator().manual_seed(0)), torch.Generator())[0]
    in_band = _band_energy(y, 8000, 800, 1250) / _band_energy(x, 8000, 800, 1250)
    out_low = _band_energy(y, 8000, 0, 300) / _band_energy(x, 8000, 0, 300)
    out_high = _band_energy(y, 8000, 3000, 4000) / _band_energy(x, 8000, 3000, 4000)
    assert in_band > 0.5
    assert out_low < 0.05 * in_band and out_high < 0.05 * in_band  # > 13 dB down


def test_equaliser_boosts_its_band():
    gen = mv.create(
        "audio", n_views=1, noise=None, gain_db=(0.0, 0.0), shift=0.0,
        eq_p=1.0, eq_freq=(1000.0, 1000.0), eq_gain_db=(12.0, 12.0), eq_q=2.0, **SMALL,
    )  # fmt: skip
    x = 0.1 * torch.randn(4000, generator=torch.Generator().manual_seed(0))
    y = gen.waveforms(x, Uniforms(torch.Generator().manual_seed(0)), torch.Generator())[0]
    boost = _band_energy(y, 8000, 900, 1100) / _band_energy(x, 8000, 900, 1100)
    far = _band_energy(y, 8000, 3000, 4000) / _band_energy(x, 8000, 3000, 4000)
    assert 10 * math.log10(boost) > 9.0 and abs(10 * math.log10(far)) < 1.0


@pytest.mark.parametrize("target", [-20.0, -35.0])
def test_loudness_normalisation_hits_the_target_rms(target):
    gen = mv.create("audio", n_views=3, noise=None, gain_db=(0.0, 0.0), shift=0.0, loudness_db=target, **SMALL)
    x = tone(440.0, 0.5, 8000) * torch.linspace(0.1, 1.0, 4000)
    y = gen.waveforms(x, Uniforms(torch.Generator().manual_seed(0)), torch.Generator())
    rms_db = 20 * torch.log10(y.pow(2).mean(1).sqrt())
    torch.testing.assert_close(rms_db, torch.full((3,), target), atol=1e-3, rtol=0)
    assert float(normalize_rms(torch.zeros(10), -20.0).abs().max()) == 0.0  # silence stays silent


def test_crop_duration_limits_each_views_content():
    gen = mv.create("audio", n_views=4, noise=None, gain_db=(0.0, 0.0), shift=0.0, crop_duration=(0.1, 0.2), **SMALL)
    x = tone(440.0, 1.0, 8000) + 0.6
    y = gen.waveforms(x, Uniforms(torch.Generator().manual_seed(0)), torch.Generator())
    lengths = (y != 0).sum(1)
    assert ((lengths >= 800) & (lengths <= 1600)).all() and len(set(lengths.tolist())) > 1
    assert y.shape == (4, 4000)


def test_transforms_are_off_by_default():
    gen = mv.create("audio", **SMALL)
    assert gen.speed is gen.stretch is gen.pitch is gen.crop_duration is gen.loudness_db is None
    assert gen.eq_p == gen.bandpass_p == gen.reverb_p == 0.0


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"speed": (0.0, 1.2)}, "speed"),
        ({"speed": (1.2, 0.8)}, "speed"),
        ({"stretch": "fast"}, "stretch"),
        ({"pitch": (-30.0, 0.0)}, "pitch"),
        ({"crop_duration": (0.1, 0.9)}, "crop_duration"),
        ({"eq_p": 1.5}, "eq_p"),
        ({"eq_p": 1.0, "eq_freq": (100.0, 5000.0)}, "eq_freq"),
        ({"bandpass_p": 1.0, "bandpass_freq": (100.0, 4000.0)}, "bandpass_freq"),
        ({"bandpass_q": 0.0}, "bandpass_q"),
        ({"reverb_p": -0.1}, "reverb_p"),
        ({"rt60": (-1.0, 0.5)}, "rt60"),
        ({"loudness_db": 3.0}, "loudness_db"),
    ],
)
def test_bad_arguments_name_themselves_and_the_value(kwargs, needle):
    with pytest.raises(ValueError, match=needle) as info:
        mv.create("audio", **SMALL, **kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value) or str(next(iter(kwargs.values()))) in str(info.value)
