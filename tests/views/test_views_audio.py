"""The audio generator: log-mel shapes, resampling, SNR of the added noise, noise banks, masks, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import multiview.views as mv
from multiview.views.audio import read_wav
from multiview.views.base import Uniforms


def tone(freq: float, seconds: float, rate: int) -> torch.Tensor:
    """A sine tone ``[1, T]`` at amplitude 0.5."""
    t = torch.arange(round(seconds * rate)) / rate
    return (0.5 * torch.sin(2 * math.pi * freq * t)).unsqueeze(0)


SMALL = {"sample_rate": 8000, "n_fft": 256, "hop_length": 80, "n_mels": 32, "duration": 0.5}


def _clip(rate: int = 8000, seconds: float = 1.0, freq: float = 440.0) -> dict:
    return {"__key__": "clip-1", "audio": tone(freq, seconds, rate), "audio.sample_rate": rate}


def test_views_are_log_mel_images_for_in_chans_1():
    gen = mv.create("audio", n_views=3, **SMALL)
    out = gen(_clip())
    frames = 0.5 * 8000 // 80 + 1
    for name in gen.view_names:
        assert out[name].shape == (1, 32, frames) and out[name].dtype == torch.float32
        assert gen.modality_of(name) == "audio"
    assert abs(float(out["view0"].mean())) < 0.2  # standardised per view, masks filled with the mean


def test_resampling_keeps_the_pitch():
    # The same 500 Hz tone recorded at 22.05 kHz and at 8 kHz gives the same spectrogram peak after resampling.
    gen = mv.create("audio", n_views=1, train=False, **SMALL)
    peak = [int(gen(_clip(rate, freq=500.0))["view0"][0].mean(-1).argmax()) for rate in (22050, 8000)]
    assert peak[0] == peak[1]
    assert 22050 in gen._resamplers  # one cached Resample module per input rate


def test_noise_is_added_at_the_drawn_snr():
    gen = mv.create("audio", n_views=4, noise_p=1.0, snr_db=(10.0, 10.0), gain_db=(0.0, 0.0), shift=0.0, **SMALL)
    clean = tone(440.0, 0.5, 8000)[0]
    noisy = gen.waveforms(clean, Uniforms(torch.Generator().manual_seed(0)), torch.Generator().manual_seed(1))
    noise = noisy - clean
    snr = 10 * torch.log10(clean.pow(2).mean() / noise.pow(2).mean(dim=1))
    torch.testing.assert_close(snr, torch.full((4,), 10.0), atol=1e-3, rtol=0)


def test_gain_and_shift_ranges():
    gen = mv.create("audio", n_views=2, noise=None, gain_db=(6.0, 6.0), shift=0.0, **SMALL)
    clean = tone(440.0, 0.5, 8000)[0]
    out = gen.waveforms(clean, Uniforms(torch.Generator().manual_seed(0)), torch.Generator())
    torch.testing.assert_close(out, clean.expand(2, -1) * 10 ** (6 / 20), atol=1e-6, rtol=0)
    assert torch.equal(gen._shift(torch.arange(1.0, 6.0), 2), torch.tensor([0.0, 0.0, 1.0, 2.0, 3.0]))
    assert torch.equal(gen._shift(torch.arange(1.0, 6.0), -2), torch.tensor([3.0, 4.0, 5.0, 0.0, 0.0]))


def test_noise_bank_from_a_folder_of_real_recordings(noise_dir):
    gen = mv.create("audio", noise=str(noise_dir), noise_p=1.0, snr_db=(0.0, 0.0), **SMALL)
    assert len(gen.noise_bank) == 2 and gen.noise_kind == "bank"
    wav, rate = read_wav(next(noise_dir.glob("*.wav")))
    assert rate == 16000 and wav.shape[0] == 1 and wav.abs().max() <= 1.0
    out = gen(_clip())
    assert out["view0"].shape == (1, 32, 51) and torch.isfinite(out["view0"]).all()


def test_noise_bank_from_waveforms_is_used():
    bank = [torch.ones(2, 4000)]  # a constant (DC) "recording", stereo: mixed to mono
    gen = mv.create("audio", noise=bank, noise_p=1.0, snr_db=(0.0, 0.0), gain_db=(0.0, 0.0), shift=0.0, **SMALL)
    clean = tone(440.0, 0.5, 8000)[0]
    noise = gen.waveforms(clean, Uniforms(torch.Generator().manual_seed(0)), torch.Generator())[0] - clean
    assert noise.std() < 1e-5 and noise.mean() > 0.1  # the bank's DC, scaled to 0 dB SNR


def test_spec_augment_masks_bands_and_eval_has_none():
    gen = mv.create("audio", n_views=2, freq_masks=1, freq_width=8, time_masks=1, time_width=10, **SMALL)
    spec = torch.ones(2, 1, 32, 51)
    masked = gen.spec_augment(spec, Uniforms(torch.Generator().manual_seed(4)))
    zero_rows = (masked == 0).all(dim=-1).sum(dim=-1).flatten()
    zero_cols = (masked == 0).all(dim=-2).sum(dim=-1).flatten()
    assert (zero_rows <= 8).all() and (zero_cols <= 10).all() and (masked == 0).any()
    ev = gen.eval_transform()
    a, b = ev(_clip(), generator=torch.Generator().manual_seed(1)), ev(_clip(), generator=torch.Generator())
    assert torch.equal(a["view0"], b["view0"]) and torch.equal(a["view0"], a["view1"])


def test_short_clips_are_padded_and_centre_cropped_in_eval():
    gen = mv.create("audio", n_views=1, train=False, **SMALL)
    wav = gen.eval_waveforms(torch.ones(1000))
    assert wav.shape == (1, 4000) and wav[0, :1000].eq(1).all() and wav[0, 1000:].eq(0).all()
    long = torch.arange(8000.0)
    assert gen.eval_waveforms(long)[0, 0] == 2000.0


@pytest.mark.parametrize(
    "sample, match",
    [
        ({"audio": torch.zeros(1, 100, dtype=torch.int16), "audio.sample_rate": 8000}, "float waveform.*torch.int16"),
        ({"audio": torch.zeros(1, 2, 100), "audio.sample_rate": 8000}, r"shape \[C, T\] or \[T\]"),
        ({"audio": torch.zeros(1, 100)}, "no 'audio.sample_rate'"),
        ({"wav": torch.zeros(1, 100)}, "has no field 'audio'"),
    ],
)
def test_bad_audio_is_refused(sample, match):
    with pytest.raises(ValueError, match=match):
        mv.create("audio", **SMALL)({"__key__": "a", **sample})


def test_bad_noise_folder_fails_at_the_first_noisy_view_naming_it(tmp_path):
    # built (a recipe's dry run, an eval-mode generator) without the folder; refused when noise is first needed
    missing = mv.create("audio", noise="/nonexistent-folder", noise_p=1.0, **SMALL)
    assert "view0" in mv.create("audio", noise="/nonexistent-folder", noise_p=1.0, **SMALL).eval_transform()(_clip())
    with pytest.raises(ValueError, match="'/nonexistent-folder' is not a folder"):
        missing(_clip())
    with pytest.raises(ValueError, match="has no .wav files"):
        mv.create("audio", noise=str(tmp_path), noise_p=1.0, **SMALL)(_clip())


def test_bare_tensor_with_input_rate():
    out = mv.create("audio", input_sample_rate=8000, **SMALL)(tone(300.0, 0.7, 8000))
    assert out["view1"].shape == (1, 32, 51)


@settings(max_examples=15, deadline=None)
@given(length=st.integers(1, 12000), channels=st.integers(1, 3), seed=st.integers(0, 100))
def test_any_clip_length_gives_fixed_size_views(length, channels, seed):
    gen = mv.create("audio", **SMALL)
    wav = torch.randn(channels, length, generator=torch.Generator().manual_seed(seed)) * 0.1
    out = gen({"audio": wav, "audio.sample_rate": 8000}, generator=torch.Generator().manual_seed(seed))
    assert out["view0"].shape == (1, 32, 51) and torch.isfinite(out["view0"]).all()
