"""The Trainer chooses torch's CPU threads through multiview.core.threads, logs the choice, and keeps
train.threads as the override."""

from __future__ import annotations

import os

import pytest
import torch

from multiview.core import threads
from multiview.train.loop import Trainer
from multiview.train.recipe import validate_recipe


@pytest.fixture
def eight_cpus(monkeypatch, tmp_path):
    for name in (*threads.THREAD_ENV, *threads.LOCAL_SIZE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(threads, "CGROUP_ROOT", tmp_path / "no-cgroup")
    monkeypatch.setattr(threads, "_TORCH_DEFAULT", 64)
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_applied", before)
    yield
    torch.set_num_threads(before)


def test_trainer_applies_and_logs_the_plan(eight_cpus, vector_shards, tmp_path, tiny_recipe, caplog):
    recipe = tiny_recipe(vector_shards, tmp_path)
    recipe["data"]["num_workers"] = 5
    with caplog.at_level("INFO", logger="multiview.train"):
        trainer = Trainer(validate_recipe(recipe))
    assert torch.get_num_threads() == trainer.thread_plan.threads == 3  # 8 CPUs - 5 loader workers
    assert any(
        r.getMessage().startswith("CPU threads: 8 CPUs usable (affinity), 1 local process, 5 loader workers each -> 3")
        for r in caplog.records
    )
    recipe["train"]["threads"] = 2
    assert Trainer(validate_recipe(recipe)).thread_plan.override == "train.threads=2"
    assert torch.get_num_threads() == 2
