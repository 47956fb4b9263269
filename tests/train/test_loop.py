"""The pretraining loop on real shards: end to end, resume, NaN stop, signals, export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from multiview.train.loop import Trainer, TrainingDiverged, TrainingInterrupted, pretrain
from multiview.train.metrics_log import read_metrics
from multiview.train.recipe import load_recipe, validate_recipe


def run(recipe_dict, **kwargs):
    return pretrain(validate_recipe(recipe_dict), **kwargs)


def test_end_to_end_logs_checkpoints_and_learns(vector_shards, tmp_path, tiny_recipe):
    summary = run(tiny_recipe(vector_shards, tmp_path, steps=24))
    records = read_metrics(summary.run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 25))
    assert {"loss", "lr", "samples_per_s", "cmc/loss", "cmc/mi_a_b", "cmc/mi_b_a", "epoch"} <= set(records[0])
    # 256 samples / 32 per step = 8 steps per epoch
    assert records[7]["epoch"] == 0 and records[8]["epoch"] == 1
    first, last = records[0]["loss"], sum(r["loss"] for r in records[-4:]) / 4
    assert last < first - 0.5, (first, last)  # the shared latent is easy: the loss must drop
    assert summary.final_checkpoint.name == "step_000024"
    assert (summary.final_checkpoint / "recipe.yaml").is_file()
    assert load_recipe(summary.run_dir / "recipe.yaml").train.steps == 24


def test_resume_gives_the_same_losses(vector_shards, tmp_path, tiny_recipe):
    full = run(tiny_recipe(vector_shards, tmp_path / "full", steps=12))
    recipe = validate_recipe(tiny_recipe(vector_shards, tmp_path / "parts", steps=12))
    Trainer(recipe).fit(stop_after=5)  # stops mid-epoch (8 steps per epoch) and saves step_000005
    resumed = Trainer(recipe).fit(resume="latest")
    full_losses = [r["loss"] for r in read_metrics(full.run_dir / "metrics.jsonl")]
    part_records = read_metrics(resumed.run_dir / "metrics.jsonl")
    assert [r["step"] for r in part_records] == list(range(1, 13))
    assert [r["loss"] for r in part_records] == pytest.approx(full_losses, rel=1e-5, abs=1e-6)


def test_checkpoints_keep_the_newest(vector_shards, tmp_path, tiny_recipe):
    summary = run(tiny_recipe(vector_shards, tmp_path, steps=8) | {"checkpoint": {"every": 2, "keep": 2}})
    names = sorted(p.name for p in (summary.run_dir / "checkpoints").iterdir())
    assert names == ["step_000006", "step_000008"]


def test_nan_loss_stops_naming_step_and_objective(vector_shards, tmp_path, tiny_recipe):
    recipe = tiny_recipe(vector_shards, tmp_path, steps=8) | {"optimizer": {"name": "sgd", "lr": 1e30}}
    recipe["checkpoint"] = {"every": 1, "keep": 5}
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at step \d+: objective cmc") as info:
        run(recipe)
    assert "last good checkpoint" in str(info.value)


def test_sigterm_saves_a_checkpoint_then_resumes(vector_shards, tmp_path, tiny_recipe):
    recipe = validate_recipe(tiny_recipe(vector_shards, tmp_path, steps=12))
    trainer = Trainer(recipe)
    original = trainer._micro_step

    def step_then_signal(batch):
        out = original(batch)
        if trainer.state.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    trainer._micro_step = step_then_signal
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit()
    assert info.value.checkpoint.name == "step_000003"  # the step in flight finishes, then it saves
    summary = Trainer(recipe).fit(resume="latest")
    assert summary.steps == 12


def test_cli_pretrain_and_export(vector_shards, tmp_path, tiny_recipe):
    import yaml

    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(yaml.safe_dump(tiny_recipe(vector_shards, tmp_path / "runs", steps=3)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "multiview", "pretrain", str(recipe_path), "train.steps=4"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["steps"] == 4
    out = tmp_path / "a.safetensors"
    done = subprocess.run(
        [sys.executable, "-m", "multiview", "export", result["run_dir"], "--modality", "a", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    import multiview

    encoder = multiview.load_encoder(out)
    assert encoder(torch.randn(5, 12)).global_.shape == (5, 16)


def test_cli_bad_recipe_exit_code(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("name: x\ndata: {path: p}\nviews: {name: v}\nencoders: {}\nobjectives: []\n"))
    done = subprocess.run([sys.executable, "-m", "multiview", "pretrain", str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert f"{path}" in done.stderr and "train" in done.stderr


def test_recipe_imports_register_user_components(vector_shards, tmp_path, tiny_recipe, monkeypatch):
    (tmp_path / "my_plugin_xyz.py").write_text(
        textwrap.dedent(
            """
            import torch.nn.functional as F
            from multiview.objectives import register
            from multiview.objectives.base import Objective, ObjectiveOutput

            @register("align_xyz")
            class Align(Objective):
                name = "align_xyz"
                def requires(self):
                    return {"a": (), "b": ()}
                def compute(self, features, batch):
                    a, b = (F.normalize(features[v].global_, dim=1) for v in ("a", "b"))
                    loss = (a - b).pow(2).sum(1).mean()
                    return ObjectiveOutput(loss, {"distance": loss.detach()})
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tiny_recipe(vector_shards, tmp_path, steps=2)
    recipe["objectives"].append({"name": "align_xyz", "weight": 0.5})
    recipe["imports"] = ["my_plugin_xyz"]
    summary = run(recipe)
    assert "align_xyz/distance" in summary.last_metrics
    recipe["imports"] = ["no_such_plugin_xyz"]
    with pytest.raises(ValueError, match="imports: cannot import 'no_such_plugin_xyz'"):
        run(recipe)


def test_gradient_accumulation_makes_one_step_of_the_summed_micro_batch_gradients(vector_shards, tmp_path, tiny_recipe):
    import copy

    from multiview.train.data import split_batch

    recipe = tiny_recipe(vector_shards, tmp_path, steps=3, grad_accum=2) | {
        "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.0},
        "schedule": {"name": "constant"},
    }
    trainer = Trainer(validate_recipe(recipe))
    model = copy.deepcopy(trainer.core)
    micro_batches = [batch for _, batch in zip(range(6), trainer.loader)]  # 16 samples each: 32 / 2
    assert len(micro_batches[0]["__key__"]) == 16
    trainer.fit()
    # By hand: each optimiser step takes the mean of two micro-batch gradients; grads cleared between steps.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(3):
        optimizer.zero_grad()
        for batch in micro_batches[2 * step : 2 * step + 2]:
            views, rest = split_batch(batch, trainer.view_names)
            (model(views, rest).loss / 2).backward()
        optimizer.step()
    for (name, want), got in zip(model.named_parameters(), trainer.core.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)
