"""Throughput of a full pretraining step: multiview's objectives (dim, amdim, cmc, cmc+cmi) vs. lightly's SimCLR.

Every method trains the same encoder (the AMDIM trunk at 32 px of benchmarks/peer_fashion_mnist.py) on
Fashion-MNIST with the same batch. A step is everything a user's run pays for one optimiser step: reading and
decoding the batch, making the views, forward, backward, the optimiser (and the auxiliary players' steps: DIM's
prior discriminator, CMI's discriminators; CMC's after-step hook).

- ours: ``multiview.train.loop.Trainer`` built from a recipe validated by ``validate_recipe``; one step is the
  loop's ``_micro_step`` on the next batch of its stream plus the scheduler step -- what ``fit()`` runs per step.
- lightly: SimCLRTransform in a DataLoader, SimCLRProjectionHead and NTXentLoss in a plain loop (as in the peer
  benchmark).
- cmc+cmi: CMC plus the conditional-MI regulariser on view0's vector split in two halves, for the attributes
  ``label`` (10 classes) and ``coarse`` (4 groups of classes: tops, trousers+dresses, footwear, bags), which the
  benchmark adds to each batch (Fashion-MNIST has no second attribute field; the derivation costs microseconds).

Methods alternate step by step, in a rotating order, so load changes on this shared machine hit all alike;
each step is timed alone, in CPU time of the one thread (robust to other jobs' load) and in wall time, and the
median is reported. Samples/s are per CPU-second of one thread (= wall on an idle core).

    python benchmarks/throughput.py [--steps 12 --batch 128 --warm 2]

One torch thread (OMP_NUM_THREADS=1). Last line: JSON with samples/s per method and the ratios to lightly.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported: extra threads spin-wait on 2 busy cores

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_fashion_mnist import (  # noqa: E402
    Context,
    build_simclr_lightly,
    encoder_spec,
    ensure_shards,
    eval_view_fn,
    objective_spec,
    view_spec,
)

from multiview.data import iter_samples  # noqa: E402
from multiview.train.loop import Trainer  # noqa: E402
from multiview.train.recipe import validate_recipe  # noqa: E402

METHODS = ("dim", "amdim", "cmc", "cmc+cmi", "simclr_lightly")
# Fashion-MNIST classes -> coarse groups: 0 tops (T-shirt, pullover, coat, shirt), 1 trouser/dress,
# 2 footwear (sandal, sneaker, ankle boot), 3 bag.
COARSE = torch.tensor([0, 1, 0, 1, 0, 2, 0, 2, 3, 2])


def recipe_for(method: str, args, shards: Path, run_dir: Path):
    if method == "cmc+cmi":
        cmc, n_views = objective_spec("cmc", args)
        half = args.n_rkhs // 2
        cmi = {"name": "cmi", "weight": 0.1, "args": {"view": "view0", "splits": [half, args.n_rkhs - half],
               "attributes": ["label", "coarse"], "num_values": [10, 4], "task_weight": 0.0, "hidden": [256, 256]}}  # fmt: skip
        objectives = [cmc, cmi]
    else:
        objective, n_views = objective_spec(method, args)
        objectives = [objective]
    return validate_recipe(
        {
            "name": f"throughput_{method.replace('+', '_')}",
            "data": {"path": str(shards), "split": "train", "keep": ["label"]},
            "views": view_spec(args.cmc_views if method.startswith("cmc") else "amdim", n_views),
            "encoders": {"image": encoder_spec(args)},
            "objectives": objectives,
            "optimizer": {"name": "adam", "lr": args.lr},
            "schedule": {"name": "cosine", "warmup_steps": 10},
            "train": {"batch_size": args.batch, "steps": 10**6, "seed": args.seed, "device": "cpu", "threads": 1},
            "checkpoint": {"every": 0},
            "log": {"dir": str(run_dir), "progress": False},
        },
        source=f"<throughput benchmark: {method}>",
    )


def our_step(method: str, args, shards: Path, run_dir: Path):
    trainer = Trainer(recipe_for(method, args, shards, run_dir))
    batches = trainer._batches()
    with_coarse = method == "cmc+cmi"

    def step() -> None:
        batch = next(batches)
        if with_coarse:
            batch = {**batch, "coarse": COARSE[torch.as_tensor(batch["label"])]}
        trainer._micro_step(batch)
        trainer.scheduler.step()

    return step


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default="shards/fashion_mnist", help="Fashion-MNIST shards (built when missing)")
    parser.add_argument("--train-limit", type=int, default=5000, help="images the streams draw from")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per method")
    parser.add_argument("--warm", type=int, default=2, help="untimed steps per method first")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--ndf", type=int, default=16)
    parser.add_argument("--embed-dim", type=int, default=256)
    parser.add_argument("--n-depth", type=int, default=1)
    parser.add_argument("--n-rkhs", type=int, default=128)
    parser.add_argument("--cmc-views", default="amdim", choices=("amdim", "simclr"))
    parser.add_argument("--cmc-temperature", type=float, default=0.1)
    parser.add_argument("--simclr-temperature", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch threads: {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); "
          f"cores: {os.cpu_count()}; load average at start: {os.getloadavg()}", flush=True)  # fmt: skip
    loads = [os.getloadavg()[0]]

    with tempfile.TemporaryDirectory() as tmp:
        shards = ensure_shards(Path(args.shards), args.train_limit)
        images = [s["image"] for s in iter_samples(shards, "train", fields=["image"])]
        ctx = Context(args, shards, Path(tmp), images, eval_view_fn())
        steps = {m: our_step(m, args, shards, Path(tmp)) for m in METHODS if m != "simclr_lightly"}
        steps["simclr_lightly"] = build_simclr_lightly(ctx, 10**6, "throughput").step
        for _ in range(args.warm):
            for step in steps.values():
                step()
        cpu = {m: [] for m in METHODS}
        wall = {m: [] for m in METHODS}
        order = list(METHODS)
        for i in range(args.steps):
            rotated = order[i % len(order) :] + order[: i % len(order)]  # each method takes every slot in turn
            for m in rotated:
                c0, w0 = time.process_time(), time.perf_counter()
                steps[m]()
                cpu[m].append(time.process_time() - c0)
                wall[m].append(time.perf_counter() - w0)
        loads.append(os.getloadavg()[0])

    result = {"batch": args.batch, "steps": args.steps, "threads": torch.get_num_threads(), "cores": os.cpu_count(),
              "load_avg_1min_seen": [round(v, 2) for v in loads], "encoder": encoder_spec(args), "methods": {}}  # fmt: skip
    base = statistics.median(cpu["simclr_lightly"])
    print(f"\n{'method':<16}{'samples/CPU s':>15}{'CPU ms/step':>13}{'wall ms/step':>14}{'ratio vs lightly':>18}")
    for m in METHODS:
        c, w = statistics.median(cpu[m]), statistics.median(wall[m])
        entry = {"samples_per_cpu_s": round(args.batch / c, 1), "cpu_ms": round(1e3 * c, 1), "wall_ms": round(1e3 * w, 1),
                 "ratio_vs_lightly": round(base / c, 3)}  # fmt: skip
        result["methods"][m] = entry
        print(f"{m:<16}{entry['samples_per_cpu_s']:>15}{entry['cpu_ms']:>13}{entry['wall_ms']:>14}"
              f"{entry['ratio_vs_lightly']:>18}")  # fmt: skip
    print("ratio = our samples/s over lightly SimCLR's samples/s (> 1: ours faster); medians of per-step CPU time")
    print(f"load average (1 min) seen: {result['load_avg_1min_seen']}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
