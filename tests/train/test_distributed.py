"""A real 2-process run (torchrun, gloo on CPU) against 1 process with the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from multiview.train.metrics_log import read_metrics

SCRIPT = Path(__file__).with_name("_ddp_pretrain.py")


def launch(recipe: dict, out: Path, nproc: int, mode: str = "fit") -> tuple[list[dict], list[list[list[str]]]]:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(SCRIPT), str(path), str(out), mode]
    if nproc > 1:
        torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
        cmd = [torchrun, "--standalone", f"--nproc_per_node={nproc}", *cmd[1:]]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert done.returncode == 0, done.stderr[-4000:]
    metrics = read_metrics(Path(recipe["log"]["dir"]) / recipe["name"] / "metrics.jsonl")
    keys = [json.loads((out / f"keys_rank{r}_{mode.replace(':', '')}.json").read_text()) for r in range(nproc)]
    return metrics, keys


@pytest.mark.distributed
def test_two_processes_match_one_with_the_same_global_batch(vector_shards, tmp_path, tiny_recipe):
    steps = 8  # one epoch: 256 samples / 32 per global batch
    one, keys_one = launch(tiny_recipe(vector_shards, tmp_path / "runs1", steps=steps), tmp_path / "one", 1)
    two, keys_two = launch(tiny_recipe(vector_shards, tmp_path / "runs2", steps=steps), tmp_path / "two", 2)

    # the same loss curve (mean of the per-rank losses == the full-batch loss, negatives gathered across ranks)
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=2e-4, abs=2e-4)
    assert [r["cmc/mi_a_b"] for r in two] == pytest.approx([r["cmc/mi_a_b"] for r in one], rel=2e-3, abs=2e-3)

    # each rank trains on half of every global batch; no sample twice in the epoch; together they cover it
    rank0, rank1 = keys_two
    assert len(rank0) == len(rank1) == steps and all(len(b) == 16 for b in rank0 + rank1)
    flat = [k for batch in rank0 + rank1 for k in batch]
    assert len(flat) == len(set(flat)) == 256
    for step in range(steps):
        assert sorted(rank0[step] + rank1[step]) == sorted(keys_one[0][step])


@pytest.mark.distributed
def test_two_processes_resume_a_streamed_epoch_exactly(vector_shards, tmp_path, tiny_recipe):
    """Each process resumes from its own worker positions (gathered into the checkpoint by the main process)."""
    foreign = shutil.copytree(vector_shards, tmp_path / "foreign")  # shards of 100, 100, 56
    recipe = tiny_recipe(foreign, tmp_path / "runs_full", steps=12)
    recipe["data"].update(mode="stream", num_workers=2, shuffle_buffer=40)  # streamed, counts from the manifest
    full, keys_full = launch(recipe, tmp_path / "full", 2)
    recipe["log"]["dir"] = str(tmp_path / "runs_parts")
    launch(recipe, tmp_path / "parts", 2, mode="stop:5")  # mid-epoch (3 steps per epoch: 3 shards, 4 slots)
    resumed, keys_resumed = launch(recipe, tmp_path / "parts", 2, mode="resume")
    assert [r["step"] for r in resumed] == list(range(1, 13))
    assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in full], rel=1e-5, abs=1e-6)
    for rank in range(2):  # the batches after the checkpoint are the uninterrupted run's, on every process
        assert keys_resumed[rank] == keys_full[rank][5:]


@pytest.mark.distributed
def test_two_processes_with_batch_norm_match_one_and_print_one_summary(vector_shards, tmp_path, tiny_recipe):
    """BatchNorm statistics are the global batch's (synchronised across processes, train.sync_bn): the MLP's
    default norm gives 1 process == 2. Run through the CLI under torchrun: the summary is printed once."""
    steps = 6
    recipe = tiny_recipe(vector_shards, tmp_path / "runs1", steps=steps)
    for spec in recipe["encoders"].values():
        spec["norm"] = "batch"
    one, _ = launch(recipe, tmp_path / "one", 1)

    recipe["log"]["dir"] = str(tmp_path / "runs2")
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(recipe))
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "multiview", "pretrain", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=400)
    assert done.returncode == 0, done.stderr[-4000:]
    summaries = [line for line in done.stdout.splitlines() if line.startswith('{"run_dir"')]
    assert len(summaries) == 1, done.stdout  # rank 0 only
    two = read_metrics(tmp_path / "runs2" / "tiny" / "metrics.jsonl")
    assert json.loads(summaries[0])["steps"] == steps
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=2e-4, abs=2e-4)
