"""Fixtures for the shard layer: small data sets of every field type and a way to tamper with shards."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from multiview.data import Audio, write_dataset


def _make_samples(n: int, seed: int = 0, prefix: str = "s") -> list[dict]:
    """``n`` samples with an image, a camera pair, stereo audio, a sensor array, a label and metadata."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        samples.append(
            {
                "__key__": f"{prefix}{i:03d}",
                "image.png": rng.integers(0, 256, (6, 5, 3), dtype=np.uint8),
                "cam0.png": rng.integers(0, 256, (4, 4), dtype=np.uint8),
                "cam1.png": rng.integers(0, 256, (4, 4), dtype=np.uint8),
                "audio.wav": Audio(rng.integers(-32768, 32767, (2, 50), dtype=np.int16), 8000),
                "acc.npy": rng.normal(size=(3, 7)).astype(np.float32),
                "label.cls": i % 3,
                "meta.json": {"i": i},
            }
        )
    return samples


@pytest.fixture
def make_samples() -> Callable[..., list[dict]]:
    """``make_samples(n, seed=0, prefix="s")`` -> sample dicts of every field type (see ``_make_samples``)."""
    return _make_samples


@pytest.fixture
def toy(tmp_path: Path) -> Callable[..., Path]:
    """``toy(n=37, maxcount=10, splits=("train",))`` -> a written shard folder (uneven last shard)."""

    def build(n: int = 37, maxcount: int = 10, splits: tuple[str, ...] = ("train",), name: str = "toy") -> Path:
        root = tmp_path / name
        write_dataset(
            root, {s: _make_samples(n, seed=k) for k, s in enumerate(splits)}, maxcount=maxcount, builder="toy"
        )
        return root

    return build


def rewrite_shard(root: Path, shard: str, edit: Callable[[list[tuple[str, bytes]]], list[tuple[str, bytes]]]) -> None:
    """Rebuild one shard with ``edit(members)`` and fix the manifest's size and count, so that only the
    decoder (not the size check) can notice what changed -- as with bit rot inside a tar member.
    """
    path = root / shard
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]
    members = edit(members)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    manifest = json.loads((root / "manifest.json").read_text())
    for entry in manifest["splits"].values():
        for info in entry["shards"]:
            if info["name"] == shard:
                info["bytes"] = path.stat().st_size
                info["count"] = len({name.split(".", 1)[0] for name, _ in members})
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def tamper() -> Callable:
    return rewrite_shard


# ---- uneven shards for the streaming tests ----
def make_uneven(tmp_path: Path, sizes=(3, 9, 4, 12, 1, 7, 5), name="uneven") -> Path:
    """Shards of the given sizes (our writer, one sample size each, keys k00..), manifest included."""
    root = tmp_path / name
    rng = np.random.default_rng(0)
    samples, i = [], 0
    for size in sizes:
        for _ in range(size):
            samples.append({"__key__": f"k{i:02d}", "image.png": rng.integers(0, 255, (4, 4), dtype=np.uint8),
                            "label.cls": i % 3})  # fmt: skip
            i += 1
    write_dataset(root, {"train": samples}, maxcount=max(sizes))
    return _repack(root, sizes)


def _repack(root: Path, sizes) -> Path:
    """Rewrite ``root``'s single-split shards so shard i holds sizes[i] samples (manifest updated)."""
    members = []
    for tar in sorted(root.glob("train-*.tar")):
        with tarfile.open(tar) as t:
            members += [(m.name, t.extractfile(m).read()) for m in t.getmembers()]
        tar.unlink()
    per_sample = len(members) // sum(sizes)
    manifest = json.loads((root / "manifest.json").read_text())
    shards, pos = [], 0
    for s, size in enumerate(sizes):
        name = f"train-{s:06d}.tar"
        with tarfile.open(root / name, "w", format=tarfile.PAX_FORMAT) as t:
            for member, data in members[pos : pos + size * per_sample]:
                info = tarfile.TarInfo(member)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        pos += size * per_sample
        shards.append({"name": name, "count": size, "bytes": (root / name).stat().st_size})
    manifest["splits"]["train"]["shards"] = shards
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def foreign(root: Path) -> Path:
    """The same shards without the manifest: counts unknown, fields peeked."""
    (root / "manifest.json").unlink()
    return root
