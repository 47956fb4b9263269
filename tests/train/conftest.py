"""Small real shard sets written on disk for the training tests."""

from __future__ import annotations

import numpy as np
import pytest

from multiview.data import write_dataset


def paired_vectors(n: int, dim: int = 12, seed: int = 0) -> list[dict]:
    """Two views sharing a latent: a = W_a z + noise, b = W_b z + noise, label = argmax of z[:4]."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 6)).astype(np.float32)
    w_a, w_b = rng.normal(size=(6, dim)), rng.normal(size=(6, dim))
    a = (z @ w_a + 0.1 * rng.normal(size=(n, dim))).astype(np.float32)
    b = (z @ w_b + 0.1 * rng.normal(size=(n, dim))).astype(np.float32)
    return [
        {"__key__": f"s{i:05d}", "a.npy": a[i], "b.npy": b[i], "label.cls": int(np.argmax(z[i, :4]))} for i in range(n)
    ]


@pytest.fixture(scope="session")
def vector_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards") / "pairs"
    samples = paired_vectors(320)
    write_dataset(root, {"train": samples[:256], "test": samples[256:]}, builder="test-pairs", maxcount=100)
    return root


def make_tiny_recipe(shards, run_dir, **train) -> dict:
    """A tiny CMC recipe over the ``vector_shards`` set (no batch norm, so 1 and N processes agree)."""
    return {
        "name": "tiny",
        "data": {"path": str(shards), "split": "train", "keep": ["label"], "shuffle": True},
        "views": {"name": "fields", "fields": {"a": {"name": "vector", "noise": 0.1}, "b": {"name": "vector"}}},
        "encoders": {
            key: {"kind": "mlp", "in_dim": 12, "hidden": [32], "out_dim": 16, "norm": "none", "input_norm": False}
            for key in ("a", "b")
        },
        "objectives": [{"name": "cmc", "views": ["a", "b"], "temperature": 0.2}],
        "optimizer": {"name": "adam", "lr": 3e-3},
        "schedule": {"name": "cosine", "warmup_steps": 2},
        "train": {"batch_size": 32, "steps": 12, "seed": 0, **train},
        "checkpoint": {"every": 0, "keep": 2},
        "log": {"every": 1, "dir": str(run_dir), "progress": False},
    }


@pytest.fixture
def tiny_recipe():
    return make_tiny_recipe
