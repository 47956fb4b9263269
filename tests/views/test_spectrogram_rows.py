"""``AudioViews(domain="spectrogram")``: the audio transforms as maps on the power spectrogram
(multiview.views.spectrogram_rows), each checked against its waveform form (the reference) or its analytic
value: exact where the map is exact (crop, shift, gain, loudness, the mel filters), within measured bounds
where it is a model (warp, reverberation, noise)."""

from __future__ import annotations

import math
import shutil
import subprocess

import pytest
import torch
import torchaudio
from audio_signals import tone  # tests/views is on sys.path (pytest prepend mode)

import multiview.views as mv
from multiview.core.wav import read_wav
from multiview.views.spectrogram_rows import (
    biquad_power,
    mel_triangles,
    reverberate_power_rows,
    smooth_size,
)
from multiview.views.waveform import rational, synthetic_rir

RECIPE = {"sample_rate": 16000, "duration": 1.2, "n_fft": 400, "hop_length": 320, "n_mels": 32}
SMALL = {"sample_rate": 8000, "duration": 0.5, "n_fft": 256, "hop_length": 80, "n_mels": 32}
EVERY = {
    "speed": (0.8, 1.25),
    "stretch": (0.6, 1.6),
    "pitch": (-4.0, 4.0),
    "crop_duration": (0.8, 1.2),
    "eq_p": 1.0,
    "bandpass_p": 1.0,
    "reverb_p": 1.0,
    "loudness_db": (-35.0, -15.0),
    "noise_p": 1.0,
    "snr_db": (5.0, 20.0),
}
NO_MASKS = {"freq_masks": 0, "time_masks": 0}
# The waveform domain warps only when a warp option is on; the draws below set each view's own numbers.
WARP_ON = {"speed": (0.5, 2.0), "stretch": (0.5, 2.0), "pitch": (-12.0, 12.0), "noise": None}


def _pair(**kwargs) -> tuple[mv.ViewGenerator, mv.ViewGenerator]:
    """The same generator in both domains."""
    return mv.create("audio", **kwargs, domain="waveform"), mv.create("audio", **kwargs, domain="spectrogram")


def _draw(gen, **overrides) -> dict:
    """One view's draw, everything off unless overridden; the crop's span as ``_draw_crop`` computes it."""
    d = {"start": 0, "speed": 1.0, "stretch": 1.0, "semitones": 0.0, "content": gen.n_samples, "shift": 0,
         "eq": None, "bandpass": None, "rir": None, "loudness": None, "gain": 1.0, "noise": None,
         "snr": float("inf")}  # fmt: skip
    d.update(overrides)
    d.setdefault("span", max(1, math.ceil(d["content"] * float(rational(d["speed"])) * d["stretch"])))
    return d


def _both(wav_gen, spec_gen, wavs, draws) -> tuple[torch.Tensor, torch.Tensor]:
    """Mel power ``[N, n_mels, frames]`` of the same draws in both domains."""
    reference = wav_gen.mel_power(wav_gen.render(wavs, draws)).transpose(1, 2)
    return reference, spec_gen.render_power(wavs, draws)


def _views(gen, clips, seeds) -> torch.Tensor:
    out = gen.batch(clips, generators=[torch.Generator().manual_seed(s) for s in seeds])
    return torch.stack([o[name] for o in out for name in gen.view_names])


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each pair of views ``[N, ...]``."""
    a, b = a.flatten(1), b.flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


@pytest.mark.parametrize(
    "n_freqs, f_min, f_max, n_mels, rate", [(201, 0.0, 8000.0, 32, 16000), (129, 50.0, 3500.0, 40, 8000)]
)
def test_mel_triangles_equal_torchaudios_filterbank(n_freqs, f_min, f_max, n_mels, rate):
    freqs = torch.linspace(0, rate // 2, n_freqs)
    expected = torchaudio.functional.melscale_fbanks(n_freqs, f_min, f_max, n_mels, rate)
    torch.testing.assert_close(mel_triangles(freqs, f_min, f_max, n_mels), expected, rtol=1e-5, atol=1e-6)


def test_smooth_sizes_are_the_smallest_fast_multiples_of_16():
    def smooth(m: int) -> bool:
        if m % 16:
            return False
        m //= 16
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in range(1, 1200):
        size = smooth_size(n)
        assert size >= n and smooth(size) and not any(smooth(m) for m in range(n, size)), n
    assert smooth_size(400) == 400  # the recipes' n_fft: no padding, so unwarped views are exact


@pytest.mark.parametrize("config", [RECIPE, {**SMALL, "win_length": 200}])
def test_views_without_warp_filters_reverb_or_noise_are_the_waveform_domains(config):
    """Crop, crop length, shift (reflected at the view's edges as torch.stft reflects), gain, loudness and
    SpecAugment: the same views to float rounding."""
    opts = {**config, "crop_duration": (0.2, 0.5), "loudness_db": (-30.0, -10.0), "noise": None, "shift": 0.2}
    wav_gen, spec_gen = _pair(n_views=3, **opts)
    clip = {"__key__": "c", "audio": tone(440.0, 1.5, 8000)[None] * torch.linspace(0.1, 1, 12000),
            "audio.sample_rate": 8000}  # fmt: skip
    seeds = range(6)
    # Float rounding, magnified by the log in the near-silent top bands (a sample off: differences of ~0.1-1).
    torch.testing.assert_close(_views(spec_gen, [clip] * 6, seeds), _views(wav_gen, [clip] * 6, seeds),
                               rtol=0, atol=1e-3)  # fmt: skip


@pytest.mark.parametrize("speed", [0.8, 1.25])
def test_a_resampled_tone_has_the_waveform_domains_band_and_level(speed):
    """Speed perturbation is a resampling: the tone's mel band moves by the factor (the peak band is the
    waveform domain's) and its power is kept (the 1 / factor^2 and zero-padding scales: off by up to 2 dB
    without them)."""
    wav_gen, spec_gen = _pair(n_views=1, **{**RECIPE, "n_mels": 64}, **WARP_ON)
    wav = tone(1000.0, 2.0, 16000)
    reference, ours = _both(wav_gen, spec_gen, [wav], [_draw(wav_gen, speed=speed, start=4000)])
    band_ref = reference[0].sum(1).argmax()
    assert ours[0].sum(1).argmax() == band_ref
    assert abs(band_ref - wav_gen.mel_power(wav[None]).sum(1)[0].argmax()) >= 2  # it did move
    level = 10 * torch.log10(ours.sum() / reference.sum())
    assert abs(level) < 0.3, f"{level:.2f} dB"


def test_stretch_moves_an_onset_by_the_tempo_and_keeps_the_band():
    wav_gen, spec_gen = _pair(n_views=1, **RECIPE, **WARP_ON)
    wav = torch.cat([torch.zeros(8000), tone(700.0, 1.5, 16000)])  # onset at 0.5 s
    hop = RECIPE["hop_length"]
    for rate in (0.6, 1.6):
        reference, ours = _both(wav_gen, spec_gen, [wav], [_draw(wav_gen, stretch=rate)])
        for power in (reference, ours):
            frame_power = power[0].sum(0)
            onset = int((frame_power > 0.5 * frame_power.max()).nonzero()[0])
            assert abs(onset - 8000 / rate / hop) <= 1.5, (rate, onset)
        assert ours[0].sum(1).argmax() == reference[0].sum(1).argmax()
        # Pitch unchanged: the band of the unstretched tone.
        assert ours[0].sum(1).argmax() == wav_gen.mel_power(wav[None])[0].sum(0).argmax()


@pytest.mark.parametrize("semitones", [-4.0, 4.0])
def test_pitch_shift_moves_the_band_by_the_ratio_and_keeps_the_tempo(semitones):
    wav_gen, spec_gen = _pair(n_views=1, **{**RECIPE, "n_mels": 64}, **WARP_ON)
    wav = torch.cat([torch.zeros(8000), tone(800.0, 1.5, 16000)])
    reference, ours = _both(wav_gen, spec_gen, [wav], [_draw(wav_gen, semitones=semitones)])
    fb = torchaudio.functional.melscale_fbanks(201, 0.0, 8000.0, 64, 16000)
    centre = torch.arange(fb.shape[0]) * (8000 / (fb.shape[0] - 1)) @ fb / fb.sum(0)  # each band's mean Hz
    expected = 800.0 * 2 ** (semitones / 12)
    band = int(ours[0].sum(1).argmax())
    assert abs(centre[band] - expected) < 0.06 * expected, (float(centre[band]), expected)
    assert band == int(reference[0].sum(1).argmax())
    frame_power = ours[0].sum(0)
    onset = int((frame_power > 0.5 * frame_power.max()).nonzero()[0])
    assert abs(onset - 8000 / RECIPE["hop_length"]) <= 1.5


@pytest.mark.parametrize("kind, freq, q, gain", [("eq", 300.0, 1.0, 9.0), ("eq", 2500.0, 2.0, -12.0),
                                                 ("bandpass", 1000.0, 0.707, 0.0)])  # fmt: skip
def test_biquad_power_is_the_filters_squared_frequency_response(kind, freq, q, gain):
    from multiview.views.waveform import biquad_coefficients

    a, b = (torch.tensor(c, dtype=torch.float64) for c in biquad_coefficients(kind, 16000, freq, q, gain))
    impulse = torch.zeros(1 << 15, dtype=torch.float64)
    impulse[0] = 1.0
    response = torchaudio.functional.lfilter(impulse, a, b, clamp=False)
    measured = torch.fft.rfft(response).abs().square()
    freqs = torch.arange(measured.shape[0], dtype=torch.float64) * (16000 / impulse.shape[0])
    expected = torch.from_numpy(biquad_power(kind, freqs.numpy(), 16000, freq, q, gain))
    torch.testing.assert_close(expected, measured, rtol=1e-6, atol=1e-9)


def test_filtered_views_have_the_waveform_domains_band_powers():
    """A +12 dB equaliser at 1 kHz and a band-pass at 500 Hz on white noise: each band's power within 1 dB of
    the waveform domain's (the steady state: these filters ring for a few ms)."""
    wav_gen, spec_gen = _pair(n_views=1, **RECIPE, noise=None)
    wav = 0.1 * torch.randn(40000, generator=torch.Generator().manual_seed(0))
    draws = [_draw(wav_gen, eq=(1000.0, 12.0)), _draw(wav_gen, bandpass=500.0)]
    reference, ours = _both(wav_gen, spec_gen, [wav, wav], draws)
    bands_ref, bands = reference.sum(2), ours.sum(2)
    loud = bands_ref > bands_ref.amax(1, keepdim=True) * 1e-3  # bands within 30 dB of the peak
    difference_db = 10 * torch.log10(bands[loud] / bands_ref[loud])
    assert difference_db.abs().max() < 1.0, difference_db.abs().max()


@pytest.mark.parametrize("rt60", [0.3, 0.6])
def test_reverberation_decays_at_the_rirs_rt60_and_keeps_the_power(rt60):
    hop, rate, frames = 160, 16000, 200
    fb = torchaudio.functional.melscale_fbanks(201, 0.0, 8000.0, 32, rate)
    power = torch.zeros(3, frames, 32)
    power[0, 0] = 1.0  # one loud frame, then silence
    power[1, :20] = 2.0  # a 0.2 s burst
    rirs = [synthetic_rir(rt60, rate, torch.Generator().manual_seed(i)) for i in range(3)]
    wet = reverberate_power_rows(power, rirs, hop, 400, fb)
    torch.testing.assert_close(wet.sum((1, 2)), power.sum((1, 2)))  # the view's power is kept
    assert torch.equal(wet[2], power[2])  # silence stays silent
    decay_db = 10 * torch.log10(wet[0].mean(1))
    lags = torch.arange(2, round(0.7 * rt60 * rate / hop), dtype=torch.float32)
    slope = torch.linalg.lstsq(torch.stack([lags, torch.ones_like(lags)], 1), decay_db[2 : 2 + len(lags), None])
    measured_rt60 = -60.0 / float(slope.solution[0]) * hop / rate
    assert abs(measured_rt60 - rt60) < 0.2 * rt60, measured_rt60


def test_a_noise_rir_keeps_the_balance_of_the_bands():
    """A synthetic RIR is white noise under a decay: it colours no band on average, so a view with equal power
    in every band keeps its bands within 3 dB of each other (each band's response is its bins' mean, not their
    sum: 1-15 bins per band would tilt the spectrum by ~12 dB)."""
    fb = torchaudio.functional.melscale_fbanks(201, 0.0, 8000.0, 32, 16000)
    power = torch.ones(4, 60, 32)
    rirs = [synthetic_rir(0.5, 16000, torch.Generator().manual_seed(i)) for i in range(4)]
    bands = reverberate_power_rows(power, rirs, 320, 400, fb).sum((0, 1))
    spread_db = 10 * torch.log10(bands.max() / bands.min())
    assert spread_db < 3.0, spread_db


def test_reverberated_noise_has_the_waveform_domains_tail():
    """A 0.3 s white-noise burst in a 0.6 s-RT60 room: the tail's power frame by frame (mean over bands)
    within 3 dB of the waveform domain's, the burst's within 1 dB."""
    wav_gen, spec_gen = _pair(n_views=1, **RECIPE, noise=None)
    wav = torch.cat([0.1 * torch.randn(4800, generator=torch.Generator().manual_seed(1)), torch.zeros(30000)])
    rir = synthetic_rir(0.6, 16000, torch.Generator().manual_seed(2))
    reference, ours = _both(wav_gen, spec_gen, [wav], [_draw(wav_gen, rir=rir)])
    level_ref, level = (10 * torch.log10(p[0].mean(0)) for p in (reference, ours))
    burst, tail = slice(3, 14), slice(17, 45)  # 20 ms frames: the burst ends at frame 15
    assert (level[burst] - level_ref[burst]).abs().max() < 1.0
    assert (level[tail] - level_ref[tail]).abs().mean() < 3.0, (level[tail] - level_ref[tail]).abs().mean()


def test_noise_is_added_at_the_drawn_snr_and_the_loudness_is_hit():
    _, spec_gen = _pair(n_views=1, **RECIPE)
    wav = tone(500.0, 2.0, 16000)
    noise = torch.randn(spec_gen.n_samples, generator=torch.Generator().manual_seed(0))
    clean = spec_gen.render_power([wav], [_draw(spec_gen, gain=0.5)])
    noisy = spec_gen.render_power([wav], [_draw(spec_gen, gain=0.5, noise=noise, snr=10.0)])
    torch.testing.assert_close((noisy - clean).sum() / clean.sum(), torch.tensor(0.1), rtol=1e-4, atol=0)
    # Loudness: the mean square the mel power estimates is the target's (exact for white noise, below).
    loud = spec_gen.render_power([wav], [_draw(spec_gen, loudness=-20.0)])
    torch.testing.assert_close(
        spec_gen.power_mean_square(loud.transpose(1, 2)), torch.tensor([0.01]), rtol=1e-4, atol=0
    )


def test_the_mean_square_estimate_is_exact_for_white_noise():
    gen = mv.create("audio", n_views=1, **RECIPE)
    x = 0.1 * torch.randn(8, 64000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gen.power_mean_square(gen.mel_power(x)), x.square().mean(1), rtol=0.03, atol=0)


def test_mel_power_is_torchaudios_melspectrogram():
    gen = mv.create("audio", n_views=1, **RECIPE)
    x = torch.randn(3, 19200, generator=torch.Generator().manual_seed(0))
    reference = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, hop_length=320, n_mels=32)(x)
    torch.testing.assert_close(gen.mel_power(x).transpose(1, 2), reference, rtol=1e-4, atol=1e-4)


def test_every_transform_on_is_deterministic_row_independent_and_shaped():
    gen = mv.create(
        "audio",
        n_views=2,
        **SMALL,
        **{**EVERY, "crop_duration": (0.3, 0.5), "eq_freq": (100.0, 3000.0)},
        domain="spectrogram",
        seed=5,
    )
    clips = [{"__key__": str(i), "audio": torch.randn(1, n) * 0.1, "audio.sample_rate": rate}
             for i, (n, rate) in enumerate([(9000, 8000), (100, 8000), (30000, 22050)])]  # fmt: skip
    batched = _views(gen, clips, [1, 2, 3])
    torch.testing.assert_close(batched, _views(gen, clips, [1, 2, 3]), rtol=0, atol=0)
    alone = torch.cat([_views(gen, [c], [s]) for c, s in zip(clips, [1, 2, 3])])
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-4)
    assert batched.shape == (6, 1, 32, int(0.5 * 8000 // 80 + 1)) and torch.isfinite(batched).all()
    assert not torch.equal(batched[0], batched[1])


def test_evaluation_views_do_not_depend_on_the_domain():
    wav_gen, spec_gen = _pair(n_views=2, **RECIPE, **EVERY, train=False)
    clip = {"__key__": "c", "audio": torch.randn(1, 30000) * 0.1, "audio.sample_rate": 16000}
    torch.testing.assert_close(spec_gen(clip)["view0"], wav_gen(clip)["view0"])


def test_a_bad_domain_names_itself():
    with pytest.raises(ValueError, match="domain.*'waveform', 'spectrogram'.*'frequency'"):
        mv.create("audio", domain="frequency")


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> list[dict]:
    """Four words spoken by espeak-ng (the avdigits voices' synthesiser), at 16 kHz."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    out, clips = tmp_path_factory.mktemp("words"), []
    for word, speed in (("zero", 120), ("seven", 160), ("three", 200), ("nine", 140)):
        path = out / f"{word}.wav"
        subprocess.run(["espeak-ng", "-w", str(path), "-s", str(speed), word], check=True, capture_output=True)
        wav, rate = read_wav(path)
        clips.append({"__key__": word, "audio": wav, "audio.sample_rate": rate})
    return clips


def test_every_transform_on_speech_is_close_to_the_waveform_domain(spoken):
    """With every transform on (the same draws), each view correlates >= 0.93 with the waveform domain's
    (measured 0.958-0.99), far closer than two views of the same word drawn independently."""
    wav_gen, spec_gen = _pair(n_views=2, **RECIPE, **EVERY, **NO_MASKS, noise="gaussian")
    seeds = [10, 11, 12, 13]
    ours, reference = _views(spec_gen, spoken, seeds), _views(wav_gen, spoken, seeds)
    same_draws = _corr(ours, reference)
    assert same_draws.min() > 0.93 and same_draws.mean() > 0.96, same_draws
    other_draws = _corr(reference, _views(wav_gen, spoken, [20, 21, 22, 23]))
    assert other_draws.mean() < same_draws.mean() - 0.1, (other_draws.mean(), same_draws.mean())
