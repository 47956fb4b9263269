"""Shards we did not write, read as they are: webdataset's ShardWriter, img2dataset's layout, members under
sub-folders, every image / audio / array / text format we decode; inspect, verify and index on them."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from multiview.data import iter_samples, make_loader
from multiview.data.location import resolve
from multiview.data.webstream import WebStream

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def image_bytes(fmt: str, seed: int, size=(6, 5)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {}
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(buf, format=fmt, **options)
    return buf.getvalue()


def wav_bytes(seed: int, rate=8000, n=400) -> bytes:
    pcm = np.random.default_rng(seed).integers(-3000, 3000, n, dtype=np.int16)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def sndfile_bytes(fmt: str, seed: int, rate=8000, n=800) -> bytes:
    import soundfile as sf

    wave_ = np.random.default_rng(seed).uniform(-0.3, 0.3, (n, 1)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, wave_, rate, format=fmt)
    return buf.getvalue()


def npy_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(seed).normal(size=(3, 4)).astype(np.float32))
    return buf.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_webdataset_shardwriter_shards_stream_with_a_field_mapping(tmp_path):
    import webdataset as wds

    out = tmp_path / "wds"
    out.mkdir()
    with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=5) as sink:
        for i in range(12):
            sink.write({"__key__": f"sample{i:04d}", "input.jpg": image_bytes("JPEG", i), "output.cls": i % 4,
                        "extra.json": {"i": i}})  # fmt: skip
    source = resolve(out)
    assert len(source.urls) == 3 and source.counts is None
    fields = source.fields()
    assert fields["input.jpg"]["modality"] == "image" and fields["output.cls"]["modality"] == "label"
    stream = WebStream(out, rename={"image": "input", "label": "output"}, fields=["image", "label"], batch_size=4,
                       seed=0)  # fmt: skip
    batches = list(make_loader(stream))
    assert stream.keep == ["__key__", "label"]
    assert batches[0]["image"].shape == (4, 3, 6, 5) and batches[0]["label"].dtype == torch.int64
    assert sorted(k for b in batches for k in b["__key__"]) == [f"sample{i:04d}" for i in range(12)]


def test_img2dataset_layout_reads_as_is_and_ignores_the_files_beside_the_tars(tmp_path):
    out = tmp_path / "img2dataset"
    for shard in range(2):
        members = []
        for i in range(3):
            key = f"{shard:05d}{i:04d}"
            members += [(f"{key}.jpg", image_bytes("JPEG", 10 * shard + i)), (f"{key}.txt", b"a caption\n"),
                        (f"{key}.json", json.dumps({"url": "x", "key": key}).encode())]  # fmt: skip
        write_tar(out / f"{shard:05d}.tar", members)
        (out / f"{shard:05d}.parquet").write_bytes(b"PAR1 not read")
        (out / f"{shard:05d}_stats.json").write_text("{}")
    source = resolve(out, "train")
    assert [Path(u).name for u in source.urls] == ["00000.tar", "00001.tar"]
    samples = list(iter_samples(out, "train"))
    assert len(samples) == 6 and samples[0]["jpg"].shape == (3, 6, 5)
    assert samples[0]["txt"] == "a caption\n" and samples[0]["json"]["key"] == "000000000"


def test_members_under_sub_folders_and_every_decoded_format(tmp_path):
    members = []
    for i in range(2):
        key = f"a/b/k{i}"
        members += [
            (f"{key}.jpg", image_bytes("JPEG", i)),
            (f"{key}.jpeg", image_bytes("JPEG", i + 5)),
            (f"{key}.png", image_bytes("PNG", i)),
            (f"{key}.webp", image_bytes("WEBP", i)),
            (f"{key}.wav", wav_bytes(i)),
            (f"{key}.flac", sndfile_bytes("FLAC", i)),
            (f"{key}.ogg", sndfile_bytes("OGG", i)),
            (f"{key}.npy", npy_bytes(i)),
            (f"{key}.json", b'{"x": 1}'),
            (f"{key}.txt", "ünïcode".encode()),
            (f"{key}.cls", b"7\n"),
            (f"{key}.pth", b"\x80\x04 pickled: never loaded"),
            (f"{key}.mp4", b"not decoded"),
        ]
    tar = write_tar(tmp_path / "mixed" / "shard-0.tar", members)
    samples = list(iter_samples(tar, "train"))
    assert [s["__key__"] for s in samples] == ["a/b/k0", "a/b/k1"]
    s = samples[0]
    for name in ("jpg", "jpeg", "png", "webp"):
        assert s[name].dtype == torch.uint8 and s[name].shape == (3, 6, 5)
    assert torch.equal(
        s["png"], torch.from_numpy(np.asarray(Image.open(io.BytesIO(image_bytes("PNG", 0))))).permute(2, 0, 1)
    )
    assert s["wav"].shape == (1, 400) and s["wav.sample_rate"] == 8000
    assert s["flac"].shape == (1, 800) and s["flac.sample_rate"] == 8000 and s["flac"].dtype == torch.float32
    assert s["ogg"].shape[0] == 1 and s["ogg.sample_rate"] == 8000
    assert s["npy"].shape == (3, 4) and s["json"] == {"x": 1} and s["txt"] == "ünïcode" and s["cls"] == 7
    assert "pth" not in s and "mp4" not in s  # not decoded unless asked for; a .pth is never unpickled
    with pytest.raises(ValueError, match=r"field 'pth': .*refused"):
        list(iter_samples(tar, "train", fields=["pth"]))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "multiview.cli", "shards", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={"no_proxy": "127.0.0.1",
                          **__import__("os").environ})  # fmt: skip


def test_cli_inspect_verify_and_index_a_foreign_source_over_http(tmp_path, http_server):
    out = tmp_path / "foreign"
    for shard in range(3):
        members = []
        for i in range(shard + 2):  # a sample's members together, as every writer stores them
            members += [(f"{shard}{i:03d}.jpg", image_bytes("JPEG", i)), (f"{shard}{i:03d}.cls", str(i).encode())]
        write_tar(out / f"{shard:05d}.tar", members)
        http_server.put(f"{shard:05d}.tar", out / f"{shard:05d}.tar")
    pattern = http_server.url_for("{00000..00002}.tar")
    shown = run_cli("inspect", pattern)
    assert shown.returncode == 0, shown.stderr
    assert "jpg" in shown.stdout and "image" in shown.stdout and "3 shard(s)" in shown.stdout
    assert "counts unknown" in shown.stdout

    broken = bytearray((out / "00001.tar").read_bytes())
    at = broken.index(b"\xff\xd8")  # corrupt the first JPEG of shard 1
    broken[at + 2 : at + 60] = b"\0" * 58
    http_server.put("00001.tar", bytes(broken))
    checked = run_cli("verify", pattern)
    assert (
        checked.returncode == 1 and "BAD" in checked.stdout and "00001.tar, key '1000', field 'jpg'" in checked.stdout
    )
    assert "9 samples checked, 1 problem(s)" in checked.stdout

    indexed = run_cli("index", str(out))
    assert indexed.returncode == 0, indexed.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["count"] for s in manifest["splits"]["train"]["shards"]] == [2, 3, 4]
    source = resolve(out)
    assert source.root == out and source.counts == [2, 3, 4]  # now indexed, with exact epochs
    assert sorted(s["__key__"] for s in iter_samples(out, "train")) == sorted(
        f"{s}{i:03d}" for s in range(3) for i in range(s + 2)
    )
    assert run_cli("index", pattern).returncode == 1  # a URL pattern has no folder to write into: --out


def test_pipe_sources_stream(tmp_path):
    tar = write_tar(tmp_path / "p" / "x.tar", [(f"k{i}.cls", str(i).encode()) for i in range(3)])
    assert [s["cls"] for s in iter_samples(f"pipe:cat {tar}", "train")] == [0, 1, 2]
