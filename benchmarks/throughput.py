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

Equal work. The methods do not encode the same number of images per step: DIM(L) encodes ONE view of each of
the B samples (B images), SimCLR, AMDIM and CMC two views (2B images). The headline is therefore per ENCODED
IMAGE: encoded images per CPU-second (= views x batch / CPU s per step) and its ratio to lightly's SimCLR. A second
DIM row, ``dim@2B``, runs DIM at batch 2B so that it encodes as many images per step as the others (equal encoded
images per step; its per-step objective also grows: B x B critic scores become 2B x 2B). Samples (dataset items) per
CPU-second are printed as well, labelled as such: by that measure DIM looks twice as fast as it is per image.

Methods alternate step by step, in a rotating order, so load changes on this shared machine hit all alike;
each step is timed alone, in CPU time of the one thread (robust to other jobs' load) and in wall time, and the
median is reported. Noise: each round gives one ratio per method (lightly's CPU time per encoded image in that
round over the method's, neighbouring steps); the median and the interquartile range [p25, p75] of these
per-round ratios are reported, and a second, identical lightly SimCLR (``simclr_lightly_aa``) is timed the same
way as an A/A control: its ratio would be 1.000 on a quiet machine, and its spread is the noise floor.

    python benchmarks/throughput.py [--steps 12 --batch 128 --warm 2]

One torch thread (OMP_NUM_THREADS=1). Last line: JSON with, per method, encoded images and samples per CPU-s and
the ratios to lightly.
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

METHODS = ("dim", "dim@2B", "amdim", "cmc", "cmc+cmi", "simclr_lightly", "simclr_lightly_aa")
BASE = "simclr_lightly"
# Fashion-MNIST classes -> coarse groups: 0 tops (T-shirt, pullover, coat, shirt), 1 trouser/dress,
# 2 footwear (sandal, sneaker, ankle boot), 3 bag.
COARSE = torch.tensor([0, 1, 0, 1, 0, 2, 0, 2, 3, 2])


def batch_of(method: str, args) -> int:
    """Samples per step: ``dim@2B`` runs DIM at twice the batch (as many encoded images per step as 2-view methods)."""
    return 2 * args.batch if method == "dim@2B" else args.batch


def views_of(method: str, args) -> int:
    """Views the encoder encodes per sample in one step (DIM 1, the others 2; lightly's SimCLRTransform: 2)."""
    if method.startswith("simclr_lightly"):
        return 2
    return objective_spec("cmc" if method.startswith("cmc") else method.removesuffix("@2B"), args)[1]


def recipe_for(method: str, args, shards: Path, run_dir: Path):
    if method == "cmc+cmi":
        cmc, n_views = objective_spec("cmc", args)
        half = args.n_rkhs // 2
        cmi = {"name": "cmi", "weight": 0.1, "args": {"view": "view0", "splits": [half, args.n_rkhs - half],
               "attributes": ["label", "coarse"], "num_values": [10, 4], "task_weight": 0.0, "hidden": [256, 256]}}  # fmt: skip
        objectives = [cmc, cmi]
    else:
        objective, n_views = objective_spec(method.removesuffix("@2B"), args)
        objectives = [objective]
    return validate_recipe(
        {
            "name": f"throughput_{method.replace('+', '_').replace('@', '_')}",
            "data": {"path": str(shards), "split": "train", "keep": ["label"]},
            "views": view_spec(args.cmc_views if method.startswith("cmc") else "amdim", n_views),
            "encoders": {"image": encoder_spec(args)},
            "objectives": objectives,
            "optimizer": {"name": "adam", "lr": args.lr},
            "schedule": {"name": "cosine", "warmup_steps": 10},
            "train": {
                "batch_size": batch_of(method, args),
                "steps": 10**6,
                "seed": args.seed,
                "device": "cpu",
                "threads": 1,
            },
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


def quartiles(values: list[float]) -> tuple[float, float]:
    """The 25th and 75th percentiles (inclusive method)."""
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


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
    parser.add_argument("--simclr-lr", type=float, default=2e-3)
    parser.add_argument(
        "--simclr-blur", type=float, default=0.5, help="SimCLRTransform gaussian_blur (lightly's default)"
    )
    parser.add_argument("--simclr-min-scale", type=float, default=0.08, help="SimCLRTransform min_scale (its default)")
    parser.add_argument("--simclr-cj-strength", type=float, default=1.0, help="SimCLRTransform cj_strength (default)")
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
        steps = {m: our_step(m, args, shards, Path(tmp)) for m in METHODS if not m.startswith("simclr_lightly")}
        for m in ("simclr_lightly", "simclr_lightly_aa"):  # two identical instances: the second is the A/A control
            steps[m] = build_simclr_lightly(ctx, 10**6, m).step
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
              "load_avg_1min_seen": [round(v, 2) for v in loads], "encoder": encoder_spec(args),
              "headline": "encoded images per CPU-s (views x batch / CPU s per step), ratio to lightly SimCLR",
              "methods": {}}  # fmt: skip
    n_img = {m: views_of(m, args) * batch_of(m, args) for m in METHODS}
    base = statistics.median(cpu[BASE]) / n_img[BASE]  # CPU s per encoded image of lightly's SimCLR
    print(f"\n{'method':<18}{'views x batch':>14}{'img/CPU s':>11}{'ratio':>8}{'per round [p25, p75]':>24}"
          f"{'samples/CPU s':>15}{'CPU ms/step [p25, p75]':>26}{'wall ms':>9}")  # fmt: skip
    for m in METHODS:
        c, w = statistics.median(cpu[m]), statistics.median(wall[m])
        rounds = [(b / n_img[BASE]) / (x / n_img[m]) for b, x in zip(cpu[BASE], cpu[m])]  # neighbouring steps
        rq, cq = quartiles(rounds), quartiles([1e3 * x for x in cpu[m]])
        entry = {"views": views_of(m, args), "batch": batch_of(m, args), "encoded_images_per_step": n_img[m],
                 "encoded_images_per_cpu_s": round(n_img[m] / c, 1), "ratio_vs_lightly": round(base / (c / n_img[m]), 3),
                 "ratio_per_round_median": round(statistics.median(rounds), 3),
                 "ratio_per_round_iqr": [round(v, 3) for v in rq], "samples_per_cpu_s": round(batch_of(m, args) / c, 1),
                 "cpu_ms": round(1e3 * c, 1), "cpu_ms_iqr": [round(v, 1) for v in cq], "wall_ms": round(1e3 * w, 1)}  # fmt: skip
        result["methods"][m] = entry
        print(f"{m:<18}{str(entry['views']) + ' x ' + str(entry['batch']):>14}{entry['encoded_images_per_cpu_s']:>11}"
              f"{entry['ratio_vs_lightly']:>8.3f}{entry['ratio_per_round_median']:>10.3f} [{rq[0]:.3f}, {rq[1]:.3f}]"
              f"{entry['samples_per_cpu_s']:>15}{entry['cpu_ms']:>10} [{cq[0]:.0f}, {cq[1]:.0f}]{entry['wall_ms']:>9}")  # fmt: skip
    print("ratio = encoded images per CPU-s over lightly SimCLR's (> 1: ours does more encoder work per CPU-s); medians"
          " of per-step CPU time; per round: the same ratio from each round's neighbouring steps (median [p25, p75]);"
          " simclr_lightly_aa: a second identical lightly run (A/A control, the noise floor)")  # fmt: skip
    print(f"load average (1 min) seen: {result['load_avg_1min_seen']}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
