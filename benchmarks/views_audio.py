"""Audio views: multiview.views ``audio`` vs. a straightforward per-view torchaudio pipeline, on real speech.

Real audio: spoken words made with espeak-ng (22.05 kHz PCM WAV, written to /tmp, never committed), read with
the library's stdlib WAV reader. Per clip, 2 views, each: a 1 s crop, a gain in +-6 dB, a time shift up to
0.1 s, Gaussian noise at 5-20 dB SNR with p 0.5, resampling to 16 kHz, MelSpectrogram(n_fft 400, hop 160,
64 mels) + AmplitudeToDB(top_db 80), standardisation, 2 frequency masks (8 bins) and 2 time masks (10 frames).
The baseline builds its torchaudio modules once and runs them view by view (crop, Vol, shift, add_noise,
Resample, MelSpectrogram, AmplitudeToDB, FrequencyMasking, TimeMasking); ours resamples each clip once and
computes the spectrograms of all views in one call. Single process, one thread, one run (alternating chunks).

    python benchmarks/views_audio.py [--clips 40] [--repeat 5]

The last line is JSON: ours_per_s, baseline_per_s (clips per second) and ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch
import torchaudio

import multiview.views
from multiview.views.audio import read_wav

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = ["en", "en-us", "en-gb+f3", "en-sc", "en+m3"]
RATE, DURATION, N_VIEWS = 16000, 1.0, 2


def make_clips(n: int, folder: Path) -> list[dict]:
    """``n`` spoken words from espeak-ng, decoded to samples ``{"audio": [1, T], "audio.sample_rate": 22050}``."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng)")
    samples = []
    for i in range(n):
        path = folder / f"clip{i:03d}.wav"
        voice, word = VOICES[i % len(VOICES)], WORDS[i % len(WORDS)]
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(140 + 7 * (i % 5)), "-w", str(path), word], check=True)
        wav, rate = read_wav(path)
        samples.append({"__key__": f"clip{i:03d}", "audio": wav, "audio.sample_rate": rate})
    return samples


class Baseline:
    """The same recipe, view by view, with torchaudio's modules (built once) and the global RNG."""

    def __init__(self, orig_rate: int):
        self.resample = torchaudio.transforms.Resample(orig_rate, RATE)
        self.mel = torchaudio.transforms.MelSpectrogram(RATE, n_fft=400, hop_length=160, n_mels=64)
        self.to_db = torchaudio.transforms.AmplitudeToDB("power", top_db=80.0)
        self.freq_mask = torchaudio.transforms.FrequencyMasking(8)
        self.time_mask = torchaudio.transforms.TimeMasking(10)
        self.orig_rate = orig_rate

    def view(self, wav: torch.Tensor) -> torch.Tensor:
        n = round(DURATION * self.orig_rate)
        start = int(torch.randint(0, max(1, wav.shape[-1] - n + 1), (1,)))
        x = wav.mean(0, keepdim=True)[:, start : start + n]
        x = torch.nn.functional.pad(x, (0, n - x.shape[-1]))
        x = torchaudio.transforms.Vol(float(torch.empty(1).uniform_(-6, 6)), gain_type="db")(x)
        shift = int(torch.randint(-round(0.1 * self.orig_rate), round(0.1 * self.orig_rate) + 1, (1,)))
        x = torch.roll(x, shift, -1)
        if shift > 0:
            x[:, :shift] = 0
        elif shift < 0:
            x[:, shift:] = 0
        if torch.rand(1) < 0.5:
            x = torchaudio.functional.add_noise(x, torch.randn_like(x), torch.empty(1).uniform_(5, 20))
        spec = self.to_db(self.mel(self.resample(x)))
        spec = (spec - spec.mean()) / spec.std().clamp_min(1e-5)
        for _ in range(2):
            spec = self.freq_mask(spec)
        for _ in range(2):
            spec = self.time_mask(spec)
        return spec

    def __call__(self, sample: dict) -> list[torch.Tensor]:
        return [self.view(sample["audio"]) for _ in range(N_VIEWS)]


def time_interleaved(fn_a, fn_b, items, repeat: int, chunk: int = 10) -> tuple[float, float]:
    t_a = t_b = 0.0
    for _ in range(repeat):
        for i in range(0, len(items), chunk):
            start = time.perf_counter()
            for item in items[i : i + chunk]:
                fn_a(item)
            t_a += time.perf_counter() - start
            start = time.perf_counter()
            for item in items[i : i + chunk]:
                fn_b(item)
            t_b += time.perf_counter() - start
    return t_a, t_b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5, help="passes over the clips")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="views_audio_") as tmp:
        samples = make_clips(args.clips, Path(tmp))
    rate = samples[0]["audio.sample_rate"]
    seconds = sum(s["audio"].shape[-1] for s in samples) / rate / len(samples)
    gen = multiview.views.create(
        "audio",
        n_views=N_VIEWS,
        sample_rate=RATE,
        duration=DURATION,
        shift=0.1,
        gain_db=(-6, 6),
        noise="gaussian",
        noise_p=0.5,
        snr_db=(5, 20),
        n_fft=400,
        hop_length=160,
        n_mels=64,
        freq_masks=2,
        freq_width=8,
        time_masks=2,
        time_width=10,
        seed=0,
    )
    base = Baseline(rate)
    out_ours, out_base = gen(samples[0]), base(samples[0])
    assert out_ours["view0"].shape == out_base[0].shape, (out_ours["view0"].shape, out_base[0].shape)
    time_interleaved(gen, base, samples[:10], 1)  # warm-up
    t_ours, t_base = time_interleaved(gen, base, samples, args.repeat)

    n = len(samples) * args.repeat
    ours, baseline = n / t_ours, n / t_base
    print(f"clips: {len(samples)} espeak-ng words at {rate} Hz, {seconds:.2f} s on average, x{args.repeat} passes")
    print(f"views: {N_VIEWS} per clip, log-mel {tuple(out_ours['view0'].shape)} at {RATE} Hz")
    print(f"ours (multiview.views audio):          {t_ours:.2f} s, {ours:.0f} clips/s")
    print(f"baseline (per-view torchaudio modules): {t_base:.2f} s, {baseline:.0f} clips/s")
    print(f"ratio (ours / baseline): {ours / baseline:.2f}")
    result = {"ours_per_s": round(ours, 1), "baseline_per_s": round(baseline, 1), "ratio": round(ours / baseline, 3)}
    print(json.dumps({**result, "n_clips": n, "views_per_clip": N_VIEWS}))


if __name__ == "__main__":
    main()
