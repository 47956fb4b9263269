"""The row-batched waveform transforms give, row by row, what the one-waveform transforms give: rows of
different lengths, rates and filters in one call, each row as if it were alone."""

from __future__ import annotations

import pytest
import torch
from audio_signals import tone  # tests/views is on sys.path (pytest prepend mode)

import multiview.views as mv
from multiview.views import waveform, waveform_rows
from multiview.views.base import Uniforms


def _rows(lengths, seed=0, dtype=torch.float64):
    """Speech-like rows: a tone plus noise, a silent stretch in each (the vocoder's angle(0) case)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i, n in enumerate(lengths):
        x = 0.3 * tone(200.0 + 97 * i, n / 8000, 8000).to(dtype)[:n] + 0.05 * torch.randn(n, generator=g, dtype=dtype)
        x[n // 3 : n // 3 + n // 10] = 0.0
        rows.append(x)
    return rows


LENGTHS = [4000, 2500, 180, 7777, 4001]  # 180 < n_fft: the one-frame padding path


def test_stretch_rows_equals_time_stretch_row_by_row():
    rates = [0.6, 1.3, 0.9, 2.0, 1.07]
    rows = _rows(LENGTHS)
    got = waveform_rows.stretch_rows(rows, rates, n_fft=256)
    for x, rate, y in zip(rows, rates, got):
        torch.testing.assert_close(y, waveform.time_stretch(x, rate, n_fft=256), rtol=0, atol=1e-9)


def test_a_row_does_not_depend_on_the_other_rows():
    rows = _rows(LENGTHS)
    alone = waveform_rows.stretch_rows(rows[:1], [0.8], n_fft=256)[0]
    together = waveform_rows.stretch_rows([rows[0], rows[3] * 5.0, rows[2]], [0.8, 0.55, 1.9], n_fft=256)[0]
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-9)


def test_warp_rows_equals_warp_row_by_row_and_groups_equal_factors():
    rows = _rows(LENGTHS, seed=1)
    speeds, stretches, semis = [0.8, 1.0, 1.25, 0.8, 1.1], [1.0, 1.2, 0.7, 1.0, 1.0], [0.0, 0.0, 2.5, 0.0, -3.0]
    got = waveform_rows.warp_rows(rows, speeds, stretches, semis, n_fft=256)
    for x, s, t, p, y in zip(rows, speeds, stretches, semis, got):
        torch.testing.assert_close(y, waveform.warp(x, s, t, p, n_fft=256), rtol=0, atol=1e-9)
    # Rows 0 and 3 share the factor 4/5 (no vocoder): resampled in one call, each still its own length.
    assert got[0].shape[-1] != got[3].shape[-1]


def test_biquad_rows_apply_each_rows_own_filter():
    x = torch.stack(_rows([3000] * 3, seed=2))
    freqs, gains = [150.0, 1000.0, 3000.0], [-9.0, 12.0, 3.0]
    eq = waveform_rows.biquad_rows("eq", x, 8000, freqs, 1.0, gains)
    band = waveform_rows.biquad_rows("bandpass", x, 8000, freqs, 0.707)
    for i in range(3):
        torch.testing.assert_close(eq[i], waveform._biquad("eq", x[i], 8000, freqs[i], 1.0, gains[i]), rtol=0, atol=0)
        torch.testing.assert_close(band[i], waveform._biquad("bandpass", x[i], 8000, freqs[i], 0.707), rtol=0, atol=0)


def test_reverberate_rows_equals_reverberate_with_padding_shift_and_silence():
    x = torch.stack(_rows([6000] * 4, seed=3))
    x[1, :1500] = 0.0  # a delayed view: its span starts later
    x[2, 4000:] = 0.0  # a padded view
    x[3] = 0.0  # silence stays silent
    g = torch.Generator().manual_seed(4)
    rirs = [waveform.synthetic_rir(rt, 8000, g).double() for rt in (0.2, 0.7, 0.05, 0.3)]
    got = waveform_rows.reverberate_rows(x, rirs)
    for i in range(4):
        torch.testing.assert_close(got[i], waveform.reverberate(x[i], rirs[i]), rtol=0, atol=1e-12)
    assert torch.equal(got[3], x[3])
    # Alone, the padded view's convolution (4,000 + 400 - 1 samples) ends before the row does: zeros after it.
    alone = waveform_rows.reverberate_rows(x[2:3], rirs[2:3])[0]
    torch.testing.assert_close(alone, waveform.reverberate(x[2], rirs[2]), rtol=0, atol=1e-12)


def test_normalize_rms_rows_hits_each_target():
    x = torch.stack(_rows([2000] * 3, seed=5))
    x[2] = 0.0
    got = waveform_rows.normalize_rms_rows(x, [-20.0, -35.0, -10.0])
    for i, target in enumerate([-20.0, -35.0, -10.0]):
        torch.testing.assert_close(got[i], waveform.normalize_rms(x[i], target))


EVERY = {
    "speed": (0.8, 1.25), "stretch": (0.7, 1.4), "pitch": (-3.0, 3.0), "crop_duration": (0.2, 0.5),
    "eq_p": 0.5, "eq_freq": (200.0, 3000.0), "bandpass_p": 0.5, "bandpass_freq": (300.0, 2500.0),
    "reverb_p": 0.5, "rt60": (0.1, 0.4), "loudness_db": (-30.0, -15.0),
}  # fmt: skip


def _per_view_reference(gen, wav, generator):
    """The views one at a time through the one-waveform transforms, in the generator's draw order: what the
    generator computed view by view before its views were batched."""
    u = Uniforms(generator)
    views = []
    for d in gen.draw(wav.shape[0], u, generator):
        x = wav[d["start"] : d["start"] + d["span"]]
        x = waveform.warp(x, d["speed"], d["stretch"], d["semitones"], gen._stft_size)
        x = gen._shift(gen._window(x[: d["content"]], 0), d["shift"])
        if d["eq"]:
            x = waveform._biquad("eq", x, gen.sample_rate, d["eq"][0], gen.eq_q, d["eq"][1])
        if d["bandpass"]:
            x = waveform._biquad("bandpass", x, gen.sample_rate, d["bandpass"], gen.bandpass_q)
        if d["rir"] is not None:
            x = waveform.reverberate(x, d["rir"])
        x = waveform.normalize_rms(x, d["loudness"]) * d["gain"]
        if d["noise"] is not None:
            p_signal, p_noise = x.pow(2).mean(), d["noise"].pow(2).mean().clamp_min(1e-12)
            x = x + d["noise"] * torch.sqrt(p_signal / (p_noise * 10.0 ** (d["snr"] / 10.0)))
        views.append(x)
    x = torch.stack(views)
    return x, gen.spec_augment(gen.log_mel(x), u)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_batch_of_clips_gives_the_views_of_one_view_at_a_time(seed):
    gen = mv.create("audio", n_views=2, sample_rate=8000, n_fft=256, hop_length=80, n_mels=32, duration=0.5,
                    **EVERY)  # fmt: skip
    wavs = [tone(220.0 * (i + 1), 0.3 + 0.4 * i, 8000) for i in range(3)]
    clips = [{"__key__": f"c{i}", "audio": w[None], "audio.sample_rate": 8000} for i, w in enumerate(wavs)]
    gens = [torch.Generator().manual_seed(10 * seed + i) for i in range(3)]
    batched = gen.batch(clips, generators=gens)
    fresh = [torch.Generator().manual_seed(10 * seed + i) for i in range(3)]
    draws = [d for w, g in zip(wavs, fresh) for d in gen.draw(w.shape[0], Uniforms(g), g)]
    rendered = gen.render([w for w in wavs for _ in range(2)], draws).split(2)
    for wav, out, waves, i in zip(wavs, batched, rendered, range(3)):
        expected_waves, expected = _per_view_reference(gen, wav, torch.Generator().manual_seed(10 * seed + i))
        # Waveforms: float32 rounding (~1e-6 of the peak); log-mels: the log magnifies it in near-silent bins.
        torch.testing.assert_close(waves, expected_waves, rtol=0, atol=1e-5 * float(expected_waves.abs().max()))
        for v, name in enumerate(gen.view_names):
            torch.testing.assert_close(out[name], expected[v], rtol=0, atol=3e-3)
