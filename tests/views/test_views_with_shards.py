"""The views as multiview.data's map_fn: decoded shard samples in, collatable views out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import multiview.views as mv


def test_views_as_the_map_fn_of_a_shard_stream(tmp_path):
    import multiview.data as data

    rng = np.random.default_rng(0)
    samples = [
        {
            "__key__": f"s{i:03d}",
            "image.png": rng.integers(0, 256, (20, 24, 3), dtype=np.uint8),
            "audio.wav": data.Audio(rng.uniform(-0.3, 0.3, (1, 3000)).astype(np.float32), 8000),
            "label.cls": i % 3,
        }
        for i in range(6)
    ]
    data.write_dataset(tmp_path / "toy", {"train": samples}, builder="test_views")
    gen = mv.create(
        "modalities",
        modalities={
            "image": {"name": "amdim", "size": 16},
            "audio": {
                "name": "audio",
                "sample_rate": 8000,
                "n_fft": 256,
                "hop_length": 80,
                "n_mels": 16,
                "duration": 0.25,
            },
        },
    )
    stream = data.ShardStream(tmp_path / "toy", "train", map_fn=gen, batch_size=3, shuffle=False, seed=0)
    batches = list(stream)
    assert len(batches) == 2
    batch = batches[0]
    assert batch["image"].shape == (3, 3, 16, 16) and batch["audio"].shape == (3, 1, 16, 26)
    # The stream hands each sample a generator derived from (seed, epoch, key): the views are the library's.
    first = next(iter(data.iter_samples(tmp_path / "toy", "train")))
    want = gen(first, generator=mv.derive_generator(0, 0, first["__key__"]))
    # (the stream maps the batch through gen.batch: the same views, to float rounding)
    torch.testing.assert_close(batch["image"][0], want["image"], atol=1e-5, rtol=0)
    assert torch.equal(batch["audio"][0], want["audio"])
    stream.set_epoch(1)
    assert not torch.equal(next(iter(stream))["image"][0], want["image"])  # a new epoch, new views


def test_a_batched_map_fn_gives_the_same_batches_as_a_per_sample_one(tmp_path):
    import multiview.data as data

    rng = np.random.default_rng(1)
    samples = [
        {"__key__": f"s{i:03d}", "image.png": rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)} for i in range(10)
    ]
    data.write_dataset(tmp_path / "toy", {"train": samples}, builder="test_views")
    gen = mv.create("amdim", size=16)
    calls = []

    def per_sample(sample, generator):  # no .batch: the stream calls it once per sample
        calls.append(sample["__key__"])
        return gen(sample, generator)

    def batches(map_fn):
        return list(data.ShardStream(tmp_path / "toy", "train", map_fn=map_fn, batch_size=4, seed=3, tail="pad"))

    for got, want in zip(batches(gen), batches(per_sample), strict=True):
        assert got["__key__"] == want["__key__"] and torch.equal(got["__pad__"], want["__pad__"])
        torch.testing.assert_close(got["view0"], want["view0"], atol=1e-5, rtol=0)
        torch.testing.assert_close(got["view1"], want["view1"], atol=1e-5, rtol=0)
    assert len(calls) == 12  # 10 samples + 2 pads, one call each


def test_a_batched_map_fn_must_return_one_item_per_sample(tmp_path):
    import multiview.data as data

    samples = [{"__key__": f"s{i}", "x.npy": np.full(3, i, dtype=np.float32)} for i in range(4)]
    data.write_dataset(tmp_path / "toy", {"train": samples}, builder="test_views")

    class DropsOne:
        def __call__(self, sample, generator):
            return {"x": sample["x"]}

        def batch(self, samples, generators):
            return [{"x": s["x"]} for s in samples[1:]]

    stream = data.ShardStream(tmp_path / "toy", "train", map_fn=DropsOne(), batch_size=4)
    with pytest.raises(ValueError, match="map_fn.batch of DropsOne returned 3 items for 4 samples"):
        next(iter(stream))
