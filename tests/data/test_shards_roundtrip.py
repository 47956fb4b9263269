"""Writing then reading every field type; keys, manifest, consistency checks, compatibility with webdataset."""

from __future__ import annotations

import io
import json
import wave

import numpy as np
import pytest
import torch
from PIL import Image

from multiview.data import Audio, ManifestError, WriteError, iter_samples, load_manifest, sanitize_key, write_dataset
from multiview.data.fields import FieldError, decode_value, encode_value

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def test_every_field_type_round_trips_bit_exact(tmp_path, make_samples):
    samples = make_samples(5)
    grey = np.arange(30, dtype=np.uint8).reshape(5, 6)
    float_wave = (np.arange(-40, 40, dtype=np.float32) / 32768.0)[None]  # on the int16 grid: exact
    for s in samples:
        s["grey.png"] = grey
        s["tensor.png"] = torch.from_numpy(np.stack([grey, grey + 1, grey + 2]))  # uint8 [C, H, W]
        s["mono.wav"] = Audio(float_wave, 16000)
        s["wave.npy"] = Audio(float_wave, 22050)
        s["ints.npy"] = np.arange(6, dtype=np.int64).reshape(2, 3)
        s["note.txt"] = "héllo"
    write_dataset(tmp_path, {"train": samples}, maxcount=2)
    read = list(iter_samples(tmp_path, "train"))
    assert [r["__key__"] for r in read] == [s["__key__"] for s in samples]
    for src, got in zip(samples, read):
        assert torch.equal(got["image"], torch.from_numpy(src["image.png"]).permute(2, 0, 1))
        assert torch.equal(got["cam1"], torch.from_numpy(src["cam1.png"])[None])
        assert torch.equal(got["grey"], torch.from_numpy(grey)[None])
        assert torch.equal(got["tensor"], src["tensor.png"])
        pcm = torch.from_numpy(src["audio.wav"].waveform.astype(np.float32) / 32768.0)
        assert got["audio"].dtype == torch.float32 and torch.equal(got["audio"], pcm)
        assert got["audio.sample_rate"] == 8000
        assert torch.equal(got["mono"], torch.from_numpy(float_wave)) and got["mono.sample_rate"] == 16000
        assert torch.equal(got["wave"], torch.from_numpy(float_wave))
        assert torch.equal(got["acc"], torch.from_numpy(src["acc.npy"])) and got["acc"].dtype == torch.float32
        assert got["ints"].dtype == torch.int64 and got["ints"].tolist() == [[0, 1, 2], [3, 4, 5]]
        assert got["label"] == src["label.cls"] and got["meta"] == src["meta.json"] and got["note"] == "héllo"
        assert got["__shard__"].startswith("train-")


def test_manifest_describes_fields_splits_and_shards(toy):
    root = toy(n=23, maxcount=10, splits=("train", "test"))
    m = load_manifest(root)
    assert m["builder"] == "toy"
    assert m["splits"]["train"]["count"] == 23
    assert [s["count"] for s in m["splits"]["train"]["shards"]] == [10, 10, 3]
    assert [s["name"] for s in m["splits"]["test"]["shards"]] == [
        "test-000000.tar",
        "test-000001.tar",
        "test-000002.tar",
    ]
    f = m["fields"]
    assert f["image.png"] == {"modality": "image", "shape": [3, 6, 5], "dtype": "uint8"}
    assert f["cam0.png"]["modality"] == "camera" and f["cam0.png"]["camera_group"] == "cam"
    assert f["audio.wav"]["modality"] == "audio" and f["audio.wav"]["sample_rate"] == 8000
    assert f["audio.wav"]["shape"] == [2, 50]
    assert f["acc.npy"] == {"modality": "sensor", "shape": [3, 7], "dtype": "float32"}
    assert f["label.cls"]["modality"] == "label" and f["meta.json"]["modality"] == "meta"
    for shard in m["splits"]["train"]["shards"]:
        assert (root / shard["name"]).stat().st_size == shard["bytes"]


def test_varying_shapes_and_rates_are_recorded(tmp_path):
    samples = [
        {"__key__": "a", "x.wav": Audio(np.zeros(10, np.float32), 8000), "v.npy": np.zeros(4, np.float32)},
        {"__key__": "b", "x.wav": Audio(np.zeros(12, np.float32), 16000), "v.npy": np.zeros(4, np.float32)},
    ]
    m = write_dataset(tmp_path, {"train": samples}, modalities={"v.npy": "vector"})
    assert m["fields"]["x.wav"]["shape"] == [1, None] and m["fields"]["x.wav"]["sample_rate"] == [8000, 16000]
    assert m["fields"]["v.npy"]["modality"] == "vector"


def test_keys_with_dots_and_slashes_are_sanitised(tmp_path):
    samples = [{"__key__": "img.001/left", "x.cls": 1}, {"__key__": 7, "x.cls": 2}]
    m = write_dataset(tmp_path, {"train": samples})
    assert [s["__key__"] for s in iter_samples(tmp_path, "train")] == ["img_001_left", "7"]
    assert [s["x"] for s in iter_samples(tmp_path, "train")] == [1, 2]
    assert m["keys_sanitised"] == 1
    assert sanitize_key("a.b c") == "a_b_c"


def test_keys_that_collide_after_sanitising_are_refused(tmp_path):
    with pytest.raises(WriteError, match=r"key 'a_b' \(stored as 'a_b'\) repeats sample #0"):
        write_dataset(tmp_path, {"train": [{"__key__": "a.b", "x.cls": 1}, {"__key__": "a_b", "x.cls": 2}]})


def test_inconsistent_fields_fail_naming_the_key(tmp_path):
    samples = [{"__key__": "a", "x.cls": 1, "y.txt": "t"}, {"__key__": "b", "x.cls": 1, "z.txt": "t"}]
    with pytest.raises(WriteError, match=r"key 'b': fields differ .* missing \['y.txt'\], extra \['z.txt'\]"):
        write_dataset(tmp_path, {"train": samples})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("w.pth", b"x", r"\.pth is refused"),
        ("w.pickle", b"x", r"\.pickle is refused"),
        ("img.png", np.zeros((4, 4), np.float32), r"image array must be uint8 .* got float32"),
        ("img.png", b"not an image", r"corrupt or unsupported image bytes"),
        ("a.wav", np.zeros(4), r"needs Audio\(waveform, sample_rate\)"),
        ("a.wav", b"RIFF....", r"not a PCM WAV"),
        ("a.npy", np.array([{}], dtype=object), r"would need pickle"),
        ("l.cls", "3", r"must be an int; got str"),
        ("x.foo", 1, r"unknown extension \.foo"),
        ("a.b.png", np.zeros((2, 2), np.uint8), r"name 'a.b' must match"),
    ],
)
def test_invalid_values_fail_at_write_time(tmp_path, field, value, message):
    with pytest.raises(WriteError, match=message) as err:
        write_dataset(tmp_path, {"train": [{"__key__": "k1", field: value}]})
    assert "key 'k1'" in str(err.value)


def test_bad_source_file_fails_naming_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(WriteError, match=r"field 'img.png' \(file .*broken.png\): corrupt or unsupported image"):
        write_dataset(tmp_path / "out", {"train": [{"__key__": "a", "img.png": bad}]})


def test_paths_and_bytes_are_stored_verbatim(tmp_path):
    png = io.BytesIO()
    Image.fromarray(np.full((3, 3), 9, np.uint8)).save(png, format="PNG")
    (tmp_path / "a.png").write_bytes(png.getvalue())
    write_dataset(
        tmp_path / "out", {"train": [{"__key__": "a", "img.png": tmp_path / "a.png", "raw.png": png.getvalue()}]}
    )
    (sample,) = iter_samples(tmp_path / "out", "train")
    assert sample["img"].tolist() == [[[9] * 3] * 3] and torch.equal(sample["img"], sample["raw"])


def test_8_and_32_bit_pcm_wav_decode_to_unit_range():
    for width, dtype, full in ((1, np.uint8, 255), (4, np.int32, 2**31 - 1)):
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1), w.setsampwidth(width), w.setframerate(100)
            w.writeframes(np.array([full, full], dtype=dtype).tobytes())
        waveform, rate = decode_value("wav", buf.getvalue())
        assert rate == 100 and waveform.shape == (1, 2) and 0.99 < float(waveform[0, 0]) <= 1.0


def test_float_audio_is_quantised_to_16_bit():
    data, info = encode_value("a.wav", Audio(np.array([0.5, -1.0, 2.0]), 8000))
    waveform, _ = decode_value("wav", data)
    assert waveform.tolist() == [[0.5, -1.0, 32767 / 32768]] and info["sample_rate"] == 8000
    with pytest.raises(FieldError, match="NaN"):
        encode_value("a.wav", Audio(np.array([np.nan]), 8000))


def test_shards_are_deterministic_and_a_crashed_write_is_detected(tmp_path, make_samples):
    write_dataset(tmp_path / "a", {"train": make_samples(4)})
    write_dataset(tmp_path / "b", {"train": make_samples(4)})
    assert (tmp_path / "a/train-000000.tar").read_bytes() == (tmp_path / "b/train-000000.tar").read_bytes()

    def crashing():
        yield from make_samples(3)
        raise RuntimeError("builder died")

    with pytest.raises(RuntimeError, match="builder died"):
        write_dataset(tmp_path / "a", {"train": crashing()})  # over an existing, complete data set
    with pytest.raises(ManifestError, match="no manifest .*the write did not finish"):
        load_manifest(tmp_path / "a")


def test_maxsize_starts_new_shards(tmp_path):
    samples = [{"__key__": f"k{i}", "x.npy": np.zeros(1000, np.float32)} for i in range(5)]
    # each sample takes 512 (header) + 4608 (4128 bytes of .npy padded to 512) = 5120 tar bytes
    m = write_dataset(tmp_path, {"train": samples}, maxsize=11000)
    assert [s["count"] for s in m["splits"]["train"]["shards"]] == [2, 2, 1]
    m = write_dataset(tmp_path, {"train": samples}, maxsize=100)  # an oversized sample gets a shard of its own
    assert [s["count"] for s in m["splits"]["train"]["shards"]] == [1] * 5


def test_webdataset_reads_our_shards(toy):
    import webdataset as wds

    root = toy(n=12, maxcount=5)
    urls = sorted(str(p) for p in root.glob("train-*.tar"))
    keys = [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False, nodesplitter=lambda u: u)]
    assert keys == [f"s{i:03d}" for i in range(12)]
    first = next(iter(wds.WebDataset(urls[:1], shardshuffle=False, nodesplitter=lambda u: u)))
    assert json.loads(first["meta.json"]) == {"i": 0} and int(first["label.cls"]) == 0


@pytest.mark.parametrize("fmt", ["pax", "gnu", "ustar"])
def test_header_scanner_agrees_with_tarfile_on_long_names(tmp_path, fmt):
    import tarfile

    from multiview.data.reader import index_shard

    names = ["k" * 150 + ".x.txt", "dir/" + "d" * 120 + ".y.cls", "short.z.json"]
    if fmt == "ustar":
        names = ["a" * 90 + "/" + "b" * 60 + ".x.txt", "short.z.json"]  # ustar splits long paths into a prefix
    path = tmp_path / "t.tar"
    fmts = {"pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT, "ustar": tarfile.USTAR_FORMAT}
    with tarfile.open(path, "w", format=fmts[fmt]) as tar:
        for i, name in enumerate(names):
            info = tarfile.TarInfo(name)
            info.size = i + 1
            tar.addfile(info, io.BytesIO(b"7" * (i + 1)))
    with tarfile.open(path) as tar:
        expected = [(m.name.split(".", 1)[0], m.offset_data, m.size) for m in tar]
    entries = index_shard(path)
    got = [(e.key, *next(iter(e.members.values()))) for e in entries]
    assert got == expected
