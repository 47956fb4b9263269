"""Overhead of ``multiview pretrain``'s training step vs. a bare hand-written PyTorch loop.

Same model (built from the same recipe with the same seed), same loss, same in-memory batches of real data
(UCI mfeat, six views), same batch size. The loops run in this process, taking turns step by step; the ratio is
the median over steps of ours / the neighbouring bare step (load changes on a shared machine cancel in it). A
second bare loop (same model again) is timed the same way as a control: its ratio to the first is the
measurement's noise floor and should read 1.00.

    python benchmarks/overhead.py [--steps 30 --rounds 5 --batch 256]

Last line: JSON with ours_ms, baseline_ms, ratio (goal: ratio <= 1.05), control_ratio, ratio_of_medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from multiview.train.data import split_batch
from multiview.train.loop import Trainer
from multiview.train.optim import build_optimizer, build_scheduler
from multiview.train.recipe import validate_recipe

VIEWS = ("pix", "fac", "fou", "kar", "zer", "mor")
DIMS = {"pix": 240, "fac": 216, "fou": 76, "kar": 64, "zer": 47, "mor": 6}


def recipe_dict(shards: Path, run_dir: Path, batch: int, width: int) -> dict:
    return {
        "name": "overhead",
        "data": {"path": str(shards), "split": "train", "keep": ["label"]},
        "views": {"name": "fields", "fields": {v: {"name": "vector", "noise": 0.1} for v in VIEWS}},
        "encoders": {v: {"kind": "mlp", "in_dim": DIMS[v], "hidden": [width, width], "out_dim": 128} for v in VIEWS},
        "objectives": [{"name": "cmc", "views": list(VIEWS), "mode": "full", "temperature": 0.1}],
        "optimizer": {"name": "adam", "lr": 1e-3},
        "schedule": {"name": "cosine", "warmup_steps": 10},
        "train": {"batch_size": batch, "steps": 10_000, "seed": 0, "device": "cpu"},
        "checkpoint": {"every": 0},
        "log": {"dir": str(run_dir), "progress": False},
    }


def ensure_mfeat(root: Path) -> Path:
    if (root / "manifest.json").is_file():
        return root
    from multiview.builders import mfeat

    mfeat.build(root)
    return root


def bare_loop_step(model, optimizer, scheduler, views, batch) -> None:
    """What a user would write by hand: forward, weighted loss, backward, step."""
    optimizer.zero_grad(set_to_none=True)
    features = {name: model.encoders[model.view_to_encoder[name]](x) for name, x in views.items()}
    loss = sum(model.weights[n] * objective(features, batch).loss for n, objective in model.objectives.items())
    loss.backward()
    optimizer.step()
    scheduler.step()


def time_step(step, batch) -> float:
    start = time.perf_counter()
    step(batch)
    return (time.perf_counter() - start) * 1e3


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default=None, help="mfeat shards (built into a temp folder when missing)")
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--width", type=int, default=512, help="hidden width of the MLP encoders")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        shards = ensure_mfeat(Path(args.shards) if args.shards else Path(tmp) / "mfeat")
        recipe = validate_recipe(recipe_dict(shards, Path(tmp) / "runs", args.batch, args.width))
        trainer = Trainer(recipe)  # ours: the exact step multiview pretrain runs
        batches = []
        for batch in trainer.loader:
            batches.append(batch)
            if len(batches) == args.steps:
                break
        if len(batches) < args.steps:  # 1000 training samples: cycle the epoch's batches
            batches = (batches * (args.steps // len(batches) + 1))[: args.steps]

        from multiview.train.build import build_model

        def bare_copy():
            model = build_model(recipe)  # the same architecture and initialisation
            model.load_state_dict(trainer.core.state_dict())
            optimizer = build_optimizer(model.parameters(), recipe.optimizer)
            scheduler = build_scheduler(optimizer, recipe.train.steps, recipe.schedule)
            return lambda pair: bare_loop_step(model, optimizer, scheduler, *pair)

        bare_batches = [split_batch(b, trainer.view_names) for b in batches]
        baseline, control = bare_copy(), bare_copy()  # control: a second bare loop, the A/A noise floor

        def ours(batch):
            trainer._micro_step(batch)
            trainer.scheduler.step()

        sides = [(ours, batches), (baseline, bare_batches), (control, bare_batches)]
        for fn, items in sides:  # warm-up (allocator, first-call checks)
            for item in items[:3]:
                fn(item)
        # Step by step, the three loops take turns (rotating who goes first), so each step of ours has a step
        # of the baseline within ~0.1 s of it: the per-step ratio of such neighbours cancels the load changes
        # of this shared machine, and its median is robust to the remaining spikes.
        times: list[list[float]] = [[], [], []]
        for r in range(args.rounds):
            for i in range(len(batches)):
                shift = (r * len(batches) + i) % 3
                for k in range(3):
                    side = (k + shift) % 3
                    fn, items = sides[side]
                    times[side].append(time_step(fn, items[i]))
        ours_ms, base_ms, control_ms = times
    result = {
        "ours_ms": round(statistics.median(ours_ms), 3),
        "baseline_ms": round(statistics.median(base_ms), 3),
        "ratio": round(statistics.median(o / b for o, b in zip(ours_ms, base_ms)), 4),
        "control_ratio": round(statistics.median(c / b for c, b in zip(control_ms, base_ms)), 4),
        "ratio_of_medians": None,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
    }
    result["ratio_of_medians"] = round(result["ours_ms"] / result["baseline_ms"], 4)
    print(f"multiview pretrain step: {result['ours_ms']:.2f} ms   bare PyTorch loop: {result['baseline_ms']:.2f} ms")
    print(f"ratio (ours / bare, median of neighbouring steps): {result['ratio']:.3f}  (goal <= 1.05)")
    print(f"control: a second bare loop / bare: {result['control_ratio']:.3f}  (the measurement's noise floor)")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
