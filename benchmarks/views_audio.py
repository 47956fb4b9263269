"""Audio views: their cost with every transform, side by side with the training step they feed; and
multiview.views ``audio`` vs. a straightforward per-view torchaudio pipeline, on real speech.

Real audio: spoken words made with espeak-ng (22.05 kHz PCM WAV, written to /tmp, never committed), read with
the library's stdlib WAV reader.

**Cost (issue 17).** The cmc_avdigits recipe's audio views (1.2 s at 16 kHz, 32-mel log-mel, hop 320, one view
per sample, one loader worker) with the defaults, with each optional transform alone on (speed, stretch, pitch,
crop length, equaliser, band-pass, reverberation, loudness, a noise bank read from a folder of .wav files),
and with every option on at probability 1 (the cost ceiling of a robust recipe) and at a robust recipe's
probabilities. The clips are first resampled to 16 kHz (what the avdigits shards hold), so the figures are
the worker's view work per sample, not decoding; each configuration makes the views of ``--clips`` clips in one
``batch`` call, as the loader calls a view generator. Side by side: the training step of recipes/cmc_avdigits.yaml
(its encoders and CMC objective built with ``multiview.train.build``, AdamW from ``multiview.train.optim``;
forward + backward + optimiser step on a batch of ``--batch`` samples that the recipe's view generator made,
image + audio with every option on) in samples/s, with the same thread count. One loader worker keeps the step
fed when the recipe's views/s per core >= the step's samples/s; ``workers needed`` = ceil(step / views). Every
option on is timed in both domains of the generator: ``waveform`` (each transform on the samples) and
``spectrogram`` (the same draws, each transform as its map on the power spectrogram; multiview.views.
spectrogram_rows), each next to the same step.
Everything alternates round by round in one process; rates are per CPU-second of the process (one thread:
per core), wall-clock rates are in the JSON too.

**Ours vs. per-view torchaudio.** Per clip, 2 views, each: a 1 s crop, a gain in +-6 dB, a time shift up to
0.1 s, Gaussian noise at 5-20 dB SNR with p 0.5, resampling to 16 kHz, MelSpectrogram(n_fft 400, hop 160,
64 mels) + AmplitudeToDB(top_db 80), standardisation, 2 frequency masks (8 bins) and 2 time masks (10 frames).
The baseline builds its torchaudio modules once and runs them view by view (crop, Vol, shift, add_noise,
Resample, MelSpectrogram, AmplitudeToDB, FrequencyMasking, TimeMasking); ours resamples each clip once and
computes the spectrograms of all views in one call. Single process, one thread, alternating chunks.

    python benchmarks/views_audio.py [--clips 40] [--repeat 5] [--rounds 5] [--steps 2] [--batch 128]
        [--recipe R.yaml [--set KEY=VALUE ...]] [--figure OUT.png]

The last line is JSON: ours_per_s, baseline_per_s (clips per second) and ratio; views_per_core_s (per
configuration), recipe_views_per_core_s, step_samples_per_core_s, fed (bool) and workers_needed; and where a
view's time goes with every option on (stages_ms_per_view: the library's stage functions, each on a CPU clock,
next to step_ms_per_sample, the time one loader worker has per view); the spectrogram domain's figures under
spectrogram_domain.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch
import torchaudio

import multiview.views
from multiview.data.batching import collate
from multiview.train.build import build_model, build_views
from multiview.train.data import ViewStage, split_batch
from multiview.train.optim import build_optimizer
from multiview.train.recipe import load_recipe
from multiview.views.audio import read_wav

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = ["en", "en-us", "en-gb+f3", "en-sc", "en+m3"]
RATE, DURATION, N_VIEWS = 16000, 1.0, 2
RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "cmc_avdigits.yaml"
SONIC_PI = Path("/usr/share/sonic-pi/samples")

# Each optional transform alone (probability 1 where it has one); "noise bank" replaces Gaussian noise.
ALONE = {
    "speed": {"speed": (0.8, 1.25)},
    "stretch": {"stretch": (0.8, 1.25)},
    "pitch": {"pitch": (-4.0, 4.0)},
    "crop": {"crop_duration": (0.6, 1.2)},
    "eq": {"eq_p": 1.0},
    "bandpass": {"bandpass_p": 1.0},
    "reverb": {"reverb_p": 1.0, "rt60": (0.2, 0.8)},
    "loudness": {"loudness_db": (-30.0, -15.0)},
    "noise bank": {"noise": "<bank>"},
}
EVERY = {k: v for opts in ALONE.values() for k, v in opts.items()}
EVERY_P1 = {**EVERY, "noise_p": 1.0}  # the ceiling: every transform on every view
ROBUST_P = {**EVERY, "eq_p": 0.5, "bandpass_p": 0.3, "reverb_p": 0.5, "noise_p": 0.5}  # a robust recipe's odds
SPECTROGRAM = {"domain": "spectrogram"}  # the same draws, each transform as its map on the power spectrogram


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


def write_wav16(path: Path, x: torch.Tensor, rate: int) -> None:
    """A mono float waveform ``[T]`` as 16-bit PCM WAV (stdlib ``wave``)."""
    pcm = (x.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def make_noise_bank(folder: Path, n: int = 6, seconds: float = 4.0) -> str:
    """A folder of ``n`` 16 kHz mono .wav noise files: Sonic Pi's ambient samples (FLAC, read with soundfile,
    resampled with torchaudio) when installed, else synthetic coloured noise."""
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(SONIC_PI.glob("ambi_*.flac"))[:n] if SONIC_PI.is_dir() else []
    try:
        import soundfile
    except ImportError:
        files = []
    for i in range(n):
        if i < len(files):
            data, rate = soundfile.read(str(files[i]), dtype="float32", always_2d=True)
            x = torchaudio.functional.resample(torch.from_numpy(data.T.copy()).mean(0), rate, RATE)
        else:  # synthetic: white noise through a one-pole low-pass of a different colour per file
            g = torch.Generator().manual_seed(i)
            white = torch.randn(round(seconds * RATE), generator=g).numpy()
            a = 0.5 + 0.08 * i
            x = torch.from_numpy(np.frombuffer(np.cumsum(white * (1 - a)).astype(np.float32).tobytes(), np.float32))
            x = x - x.mean()
        x = x[: round(seconds * RATE)]
        write_wav16(folder / f"noise{i}.wav", 0.5 * x / x.abs().max().clamp_min(1e-6), RATE)
    return str(folder)


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


def compare_baseline(samples: list[dict], repeat: int) -> dict:
    """Ours vs. per-view torchaudio modules on the 22.05 kHz clips (2 views of 1 s, 64 mels)."""
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
    t_ours, t_base = time_interleaved(gen, base, samples, repeat)
    n = len(samples) * repeat
    ours, baseline = n / t_ours, n / t_base
    print(f"clips: {len(samples)} espeak-ng words at {rate} Hz, {seconds:.2f} s on average, x{repeat} passes")
    print(f"views: {N_VIEWS} per clip, log-mel {tuple(out_ours['view0'].shape)} at {RATE} Hz")
    print(f"ours (multiview.views audio):          {t_ours:.2f} s, {ours:.0f} clips/s")
    print(f"baseline (per-view torchaudio modules): {t_base:.2f} s, {baseline:.0f} clips/s")
    print(f"ratio (ours / baseline): {ours / baseline:.2f}")
    return {"ours_per_s": round(ours, 1), "baseline_per_s": round(baseline, 1), "ratio": round(ours / baseline, 3)}


def recipe_with_audio(options: dict):
    """recipes/cmc_avdigits.yaml with ``options`` added to its audio views (no data is read)."""
    overrides = [
        f"views.modalities.audio.{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in options.items()
    ]
    return load_recipe(RECIPE, overrides)


class Clock:
    """Accumulated CPU (process) and wall seconds of the calls made inside ``with clock:``."""

    def __init__(self):
        self.cpu = self.wall = 0.0
        self.n = 0

    def __enter__(self):
        self._c, self._w = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.cpu += time.process_time() - self._c
        self.wall += time.perf_counter() - self._w

    def rate(self) -> tuple[float, float]:
        return self.n / max(self.cpu, 1e-9), self.n / max(self.wall, 1e-9)


class RecipeStep:
    """A recipe's view generator (image + audio, as the stream calls it) and its training step (encoders and
    objectives from ``multiview.train.build``, its optimiser; forward, backward, optimiser step)."""

    def __init__(self, recipe, clips: list[dict], batch: int):
        self.recipe, self.batch_size = recipe, batch
        self.views = ViewStage(build_views(recipe))
        torch.manual_seed(recipe.train.seed)
        self.model = build_model(recipe, self.views.views)
        self.optimizer = build_optimizer(self.model.parameters(), recipe.optimizer)
        images = torch.randint(0, 256, (len(clips), 1, 28, 28), dtype=torch.uint8)  # MNIST-sized digits
        self.samples = [{**c, "image": images[i], "label": i % 10} for i, c in enumerate(clips)]
        self.batches = [collate(self.make_batch(i * batch)) for i in range(2)]
        self.step(self.batches[0])  # warm-up
        self.view_clock, self.step_clock = Clock(), Clock()

    def make_batch(self, offset: int) -> list[dict]:
        items = [self.samples[(offset + i) % len(self.samples)] for i in range(self.batch_size)]
        gens = [torch.Generator().manual_seed(offset + i) for i in range(self.batch_size)]
        out = self.views.batch(items, generators=gens)
        for o, s in zip(out, items):
            o["label"] = s["label"]
        return out

    def step(self, batch: dict) -> None:
        view_batch, rest = split_batch(batch, self.views.views.view_names)
        self.optimizer.zero_grad(set_to_none=True)
        self.model(view_batch, rest).loss.backward()
        self.optimizer.step()

    def round(self, r: int, steps: int) -> None:
        """One batch of views, then ``steps`` training steps, each on its clock."""
        with self.view_clock:
            self.make_batch(r * self.batch_size)
        self.view_clock.n += self.batch_size
        for s in range(steps):
            with self.step_clock:
                self.step(self.batches[(r + s) % 2])
            self.step_clock.n += self.batch_size

    def report(self, label: str) -> dict:
        """Prints and returns views/s per core against the step's samples/s, and the workers that keep it fed."""
        views, step = self.view_clock.rate(), self.step_clock.rate()
        need, fed = math.ceil(step[0] / views[0]), views[0] >= step[0]
        print(
            f"{label}: views (image + audio) {views[0]:.0f} samples/s per core ({views[1]:.0f} wall); "
            f"training step (batch {self.batch_size}) {step[0]:.0f} samples/s per core ({step[1]:.0f} wall)"
        )
        print(
            f"  -> one loader worker {'keeps' if fed else 'does NOT keep'} the step fed "
            f"(views / step {views[0] / step[0]:.2f}); workers needed: {need}"
        )
        return {
            "views_per_core_s": round(views[0], 1),
            "step_samples_per_core_s": round(step[0], 1),
            "step_samples_per_wall_s": round(step[1], 1),
            "fed": fed,
            "workers_needed": need,
        }


def shipped_recipe(path: Path, noise_dir: str, overrides: list[str]):
    """The recipe at ``path`` as it trains (with ``overrides``, ``KEY=VALUE`` as on the pretrain command line);
    a noise folder that its shard build writes and that is not here is replaced by the benchmark's bank (said on
    stdout)."""
    recipe = load_recipe(path, overrides)
    noise = recipe.views.args["modalities"]["audio"].get("noise")
    if noise not in (None, "gaussian") and not Path(noise).is_dir():
        print(f"{path.name}: noise folder {noise} is not here (its shard build writes it): using {noise_dir}")
        recipe = load_recipe(path, [*overrides, f"views.modalities.audio.noise={noise_dir}"])
    return recipe


def cost(samples22: list[dict], args, noise_dir: str) -> dict:
    """Views/s per core per configuration, and two recipes' views next to their own training step, alternating."""
    # The clips at 16 kHz, as the avdigits shards hold them (the worker decodes, it does not resample).
    resample = torchaudio.transforms.Resample(samples22[0]["audio.sample_rate"], RATE)
    clips = [{"__key__": s["__key__"], "audio": resample(s["audio"]), "audio.sample_rate": RATE} for s in samples22]

    def resolve(options: dict) -> dict:
        return {k: (noise_dir if v == "<bank>" else v) for k, v in options.items()}

    configs = {"defaults": {}, **ALONE, "every option (p 1)": EVERY_P1, "every option (robust p)": ROBUST_P,
               "every option (p 1), spectrogram": {**EVERY_P1, **SPECTROGRAM},
               "every option (robust p), spectrogram": {**ROBUST_P, **SPECTROGRAM}}  # fmt: skip
    base_recipe = load_recipe(RECIPE)
    audio_args = dict(base_recipe.views.args["modalities"]["audio"])
    audio_args.pop("name")
    audio_args.setdefault("n_views", 1)  # the modalities generator's default: one view per modality
    gens = {
        name: multiview.views.create("audio", **{**audio_args, **resolve(opts)}, seed=0)
        for name, opts in configs.items()
    }
    # Three recipes, each with its own views and step: cmc_avdigits with every option on at p 1 (the ceiling),
    # in both domains, and the shipped robust recipe (--recipe) as it trains (its odds, its view length).
    every = recipe_with_audio(resolve(EVERY_P1))
    recipes = {
        "every option p 1 (cmc_avdigits)": RecipeStep(every, clips, args.batch),
        "every option p 1, spectrogram domain": RecipeStep(recipe_with_audio(resolve({**EVERY_P1, **SPECTROGRAM})),
                                                           clips, args.batch),
        f"shipped {args.recipe.name} {' '.join(args.set)}".rstrip(): RecipeStep(
            shipped_recipe(args.recipe, noise_dir, args.set), clips, args.batch
        ),
    }  # fmt: skip
    for gen in gens.values():  # warm-up
        for c in clips[:3]:
            gen(c)

    clocks = {name: Clock() for name in configs}
    chunk = args.clips
    for r in range(args.rounds):
        order = list(configs)
        order = order[r % len(order) :] + order[: r % len(order)]  # who goes first rotates
        for name in order:
            gen = gens[name]
            generators = [torch.Generator().manual_seed(r * chunk + i) for i in range(chunk)]
            with clocks[name]:
                gen.batch(clips[:chunk], generators=generators)  # as the loader calls it: a batch of clips
            clocks[name].n += chunk
        benches = list(recipes.values())
        for bench in benches[r % len(benches) :] + benches[: r % len(benches)]:
            bench.round(r, args.steps)

    rates = {name: clock.rate() for name, clock in clocks.items()}
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print()
    print(f"cost: recipes/cmc_avdigits.yaml audio views (1.2 s at {RATE} Hz, 32 mels, hop 320, one view per sample)")
    print(f"threads: {torch.get_num_threads()}; rounds: {args.rounds} x {chunk} clips per configuration; load {load}")
    print(f"{'configuration':<26} {'views/s per core':>17} {'(wall)':>9} {'x defaults':>11}")
    for name, (per_cpu, per_wall) in rates.items():
        print(f"{name:<26} {per_cpu:>17.0f} {per_wall:>9.0f} {per_cpu / rates['defaults'][0]:>11.3f}")
    reports = {label: bench.report(label) for label, bench in recipes.items()}
    ceiling, spectrogram, shipped = reports.values()
    budget = ceiling["step_samples_per_core_s"]
    stages = stage_costs(gens["every option (p 1)"], clips, args.rounds, budget, WAVEFORM_STAGES)
    spectrogram_stages = stage_costs(gens["every option (p 1), spectrogram"], clips, args.rounds, budget,
                                     SPECTROGRAM_STAGES)  # fmt: skip
    return {
        "views_per_core_s": {name: round(r[0], 1) for name, r in rates.items()},
        "views_per_wall_s": {name: round(r[1], 1) for name, r in rates.items()},
        "every_option_views_per_core_s": round(rates["every option (p 1)"][0], 1),
        "recipe_views_per_core_s": ceiling["views_per_core_s"],
        "step_samples_per_core_s": ceiling["step_samples_per_core_s"],
        "step_samples_per_wall_s": ceiling["step_samples_per_wall_s"],
        "fed": ceiling["fed"],
        "workers_needed": ceiling["workers_needed"],
        "spectrogram_domain": {
            "every_option_views_per_core_s": round(rates["every option (p 1), spectrogram"][0], 1),
            **spectrogram,
            **spectrogram_stages,
        },
        "shipped_recipe": {"recipe": args.recipe.name, "overrides": args.set, **shipped},
        **stages,
        "threads": torch.get_num_threads(),
        "load": load,
    }


# The stages of a view with every option on: (module, function name, label), in the order a view runs them.
WAVEFORM_STAGES = (
    ("gen", "draw", "draw (every number of a view; the RIR)"),
    ("rows", "stretch_rows", "phase vocoder (STFT, vocoder, iSTFT)"),
    ("rows", "resample_rows", "resampling (speed x pitch factor)"),
    ("audio", "biquad_rows", "equaliser + band-pass (lfilter)"),
    ("audio", "reverberate_rows", "reverberation (FFT convolution)"),
    ("audio", "normalize_rms_rows", "loudness"),
    ("gen", "log_mel", "log-mel (MelSpectrogram, AmplitudeToDB)"),
    ("gen", "masks_for", "SpecAugment masks"),
)
SPECTROGRAM_STAGES = (
    ("gen", "draw", "draw (every number of a view; the RIR)"),
    ("gen", "_warped_power", "crop, warp, EQ, band-pass: one FFT per frame"),
    ("audio", "reverberate_power_rows", "reverberation (power over time)"),
    ("gen", "mel_power", "the noise's mel power (STFT)"),
    ("gen", "log_of_power", "log, standardise (AmplitudeToDB)"),
    ("gen", "masks_for", "SpecAugment masks"),
)


def stage_costs(gen, clips: list[dict], rounds: int, step_per_s: float, stages: tuple) -> dict:
    """Where a view's time goes: the library's own stage functions (``stages``), each wrapped in a CPU clock for ``rounds``
    batches of the clips (as the loader calls ``batch``), then restored. Printed in ms per view next to the
    training step's time per sample -- the budget one loader worker has per view."""
    import multiview.views.audio as audio_module
    import multiview.views.waveform_rows as rows_module

    owners = {"audio": audio_module, "rows": rows_module, "gen": gen}
    spent = {label: 0.0 for *_, label in stages}
    originals = []

    def timed(fn, label):
        def run(*a, **k):
            start = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                spent[label] += time.process_time() - start

        return run

    for owner, name, label in stages:
        originals.append((owners[owner], name, getattr(owners[owner], name)))
        setattr(owners[owner], name, timed(getattr(owners[owner], name), label))
    try:
        start = time.process_time()
        for r in range(rounds):
            gen.batch(clips, generators=[torch.Generator().manual_seed(r * len(clips) + i) for i in range(len(clips))])
        total = time.process_time() - start
    finally:
        for owner, name, fn in originals:
            if owner is gen:
                delattr(gen, name)  # back to the class's method
            else:
                setattr(owner, name, fn)
    views = rounds * len(clips)
    ms = {label: 1e3 * t / views for label, t in spent.items()}
    ms["rest (crops, shift, gain, noise, batching)"] = 1e3 * total / views - sum(ms.values())
    budget = 1e3 / step_per_s
    print(f"\nstages of a view, every option on at p 1, {gen.domain} domain (ms per view, CPU; {views} views):")
    for label, value in ms.items():
        print(f"  {label:<46} {value:>6.3f}  ({value / (1e3 * total / views):>4.0%})")
    print(f"  {'total':<46} {1e3 * total / views:>6.3f}")
    print(f"  {'the training step, per sample (the budget)':<46} {budget:>6.3f}")
    return {"stages_ms_per_view": {k: round(v, 4) for k, v in ms.items()}, "view_ms": round(1e3 * total / views, 4),
            "step_ms_per_sample": round(budget, 4)}  # fmt: skip


def domains_figure(samples22: list[dict], out: Path, n_words: int = 4) -> dict:
    """A PNG of what the two domains make from the same draws: for ``n_words`` words, the waveform domain's view,
    the spectrogram domain's and their difference (every option at p 1, Gaussian noise, no masks), each pair's
    correlation in its title. Returns the correlations."""
    from matplotlib.figure import Figure

    audio_args = dict(load_recipe(RECIPE).views.args["modalities"]["audio"])
    audio_args.pop("name")
    options = {**audio_args, **EVERY_P1, "noise": "gaussian", "freq_masks": 0, "time_masks": 0, "n_views": 1}
    views = {}
    for domain in ("waveform", "spectrogram"):
        gen = multiview.views.create("audio", **options, domain=domain)
        made = gen.batch(samples22[:n_words], generators=[torch.Generator().manual_seed(i) for i in range(n_words)])
        views[domain] = torch.stack([v["view0"][0] for v in made])
    a, b = views["waveform"], views["spectrogram"]
    corr = [float(torch.corrcoef(torch.stack([x.flatten(), y.flatten()]))[0, 1]) for x, y in zip(a, b)]
    fig = Figure(figsize=(9, 1.9 * n_words), layout="constrained")
    axes = fig.subplots(n_words, 3, squeeze=False)
    for i in range(n_words):
        for j, (image, title) in enumerate(((a[i], "waveform domain"), (b[i], "spectrogram domain"),
                                            (b[i] - a[i], f"difference (correlation {corr[i]:.3f})"))):  # fmt: skip
            axes[i, j].imshow(image.numpy(), origin="lower", aspect="auto", cmap="magma" if j < 2 else "coolwarm",
                              vmin=-3 if j < 2 else -2, vmax=3 if j < 2 else 2)  # fmt: skip
            axes[i, j].set_title(f"{samples22[i]['__key__']}: {title}", fontsize=8)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
    fig.suptitle("one view of each word, the same draws, every audio option at p 1 (standardised log-mel)", fontsize=9)
    fig.savefig(out, dpi=90)
    print(f"figure: {out} (correlations {', '.join(f'{c:.3f}' for c in corr)})")
    return {"domains_figure": str(out), "domains_correlation": [round(c, 4) for c in corr]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5, help="passes over the clips (ours vs. baseline)")
    parser.add_argument("--rounds", type=int, default=5, help="cost: rounds of every configuration and the step")
    parser.add_argument("--steps", type=int, default=2, help="cost: training steps per round")
    parser.add_argument("--batch", type=int, default=128, help="cost: the training step's batch (the recipe's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for everything timed")
    parser.add_argument("--skip-baseline", action="store_true", help="only the cost part")
    parser.add_argument("--figure", type=Path, metavar="OUT.png",
                        help="also draw the two domains' views of the same draws side by side to this PNG")  # fmt: skip
    parser.add_argument(
        "--recipe",
        type=Path,
        default=RECIPE.parent / "cmc_avdigits_robust.yaml",
        help="cost: a recipe whose own views are timed next to its own training step (default: the robust one)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override of --recipe, as on the pretrain command line (repeatable), "
        "e.g. views.modalities.audio.domain=spectrogram",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="views_audio_") as tmp:
        samples = make_clips(args.clips, Path(tmp))
        noise_dir = make_noise_bank(Path(tmp) / "noise")
        if not args.skip_baseline:
            result.update(compare_baseline(samples, args.repeat))
            result.update({"n_clips": len(samples) * args.repeat, "views_per_clip": N_VIEWS})
        if args.figure:
            result.update(domains_figure(samples, args.figure))
        result.update(cost(samples, args, noise_dir))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
