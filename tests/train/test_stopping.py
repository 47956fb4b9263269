"""Stopping keeps its promises: a signal to the whole process group saves, a crash leaves one record per step."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from multiview.train.loop import Trainer, TrainingDiverged, pretrain
from multiview.train.metrics_log import read_metrics
from multiview.train.recipe import validate_recipe


def _records(path) -> list[dict]:
    try:
        return read_metrics(path)
    except (FileNotFoundError, ValueError):  # not written yet, or a line half written
        return []


def test_sigterm_to_the_process_group_with_loader_workers_saves_and_resumes_exactly(
    vector_shards, tmp_path, tiny_recipe
):
    """What SLURM does: SIGTERM to every process of the job, DataLoader workers included."""
    steps = 60
    recipe = tiny_recipe(vector_shards, tmp_path / "runs", steps=steps)
    recipe["data"]["num_workers"] = 2
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    metrics = tmp_path / "runs" / "tiny" / "metrics.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "multiview", "pretrain", str(path)]
    run = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while len(_records(metrics)) < 3 and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert run.poll() is None, "the run ended before it could be stopped"
        os.killpg(run.pid, signal.SIGTERM)  # the main process and its loader workers alike
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "killed by signal" not in err
    done = read_metrics(metrics)[-1]["step"]
    assert 3 <= done < steps
    saved = re.search(r"checkpoint saved at (\S+)", err).group(1)
    assert saved.endswith(f"step_{done:06d}")  # the stop saved the last step it finished
    assert (tmp_path / "runs" / "tiny" / "checkpoints" / f"step_{done:06d}").is_dir()

    resumed = Trainer(validate_recipe(recipe)).fit(resume="latest")  # nothing redone: it goes on from `done`
    assert resumed.losses and len(resumed.losses) == steps - done
    recipe["log"]["dir"] = str(tmp_path / "full")
    full = pretrain(validate_recipe(recipe))
    records = read_metrics(metrics)
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    assert [r["loss"] for r in records] == pytest.approx(full.losses, rel=1e-5, abs=1e-6)


def test_a_crash_after_the_last_checkpoint_leaves_each_step_once_in_the_log(vector_shards, tmp_path, tiny_recipe):
    recipe = validate_recipe(tiny_recipe(vector_shards, tmp_path / "parts", steps=12) | {"checkpoint": {"every": 4}})
    trainer = Trainer(recipe)
    original = trainer._micro_step

    def crash_at_step_7(batch):
        if trainer.state.step == 6:
            raise KeyboardInterrupt("kill -9")  # no handler runs, nothing is saved: the log is ahead of step 4
        return original(batch)

    trainer._micro_step = crash_at_step_7
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    log = trainer.run_dir / "metrics.jsonl"
    assert [r["step"] for r in read_metrics(log)] == [1, 2, 3, 4, 5, 6]
    with log.open("a") as f:
        f.write('{"step": 7, "time": 17')  # torn by the kill mid-write
    Trainer(recipe).fit(resume="latest")  # from step_000004
    records = read_metrics(log)
    assert [r["step"] for r in records] == list(range(1, 13))
    full = pretrain(validate_recipe(tiny_recipe(vector_shards, tmp_path / "full", steps=12)))
    assert [r["loss"] for r in records] == pytest.approx(full.losses, rel=1e-5, abs=1e-6)


def test_nan_message_names_the_step_the_log_would_have_given_it(vector_shards, tmp_path, tiny_recipe):
    recipe = tiny_recipe(vector_shards, tmp_path, steps=8) | {"optimizer": {"name": "sgd", "lr": 1e30}}
    recipe["checkpoint"] = {"every": 1, "keep": 1}
    with pytest.raises(TrainingDiverged) as info:
        pretrain(validate_recipe(recipe))
    step = int(re.search(r"non-finite loss at step (\d+)", str(info.value)).group(1))
    logged = [r["step"] for r in read_metrics(tmp_path / "tiny" / "metrics.jsonl")]
    assert logged == list(range(1, step))  # every step before the bad one, which is the next
    assert f"step_{step - 1:06d}" in str(info.value)  # the last good checkpoint: the step before
