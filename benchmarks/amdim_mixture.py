"""Step time of AMDIM with mixture representations (ours) vs. plain AMDIM (the baseline), same encoder and batch.

One step is what training pays per batch for the encoder and the objective: both views through the AMDIM trunk
(``amdim_small`` at 64 px, narrow: ndf 32, n_rkhs 256, one 1x1 block per stage), the objective, and the backward
pass into the encoder and the objective's parameters (the mixture head). The optimiser step is left out (the same
Adam on nearly the same parameters for both). The baseline is the library's ``amdim`` objective, ours is
``amdim_mixture`` with k components: the only difference is the objective. Also timed, the same way: the objective
alone (forward + backward on fixed features), which isolates what the mixture adds.

Timing alternates: after ``--warmup`` untimed steps of each, ``--repeats`` rounds of one step of each, who goes
first swapping every round. On CPU each step is timed in CPU seconds of the process (with one thread: the thread's
time, robust to other jobs on a shared machine); on CUDA in wall time with synchronisation. Reported: the median of
each side, the ratio of the medians, and the noise of the per-round ratios (ours / the neighbouring baseline step):
median, interquartile range and the standard error of their mean.

    python benchmarks/amdim_mixture.py [--batch 32] [--k 4] [--repeats 12] [--warmup 2] [--threads 1]

Last line: JSON ``{"step": {...}, "objective_only": {...}, "config": {...}}``, each timing block with ``ours_ms``,
``baseline_ms``, ``ratio``, ``ratio_rounds_median``, ``ratio_rounds_iqr``, ``ratio_rounds_se``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported: extra threads spin-wait on 2 busy cores

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402

from multiview import encoders, objectives  # noqa: E402
from multiview.encoders.features import Features  # noqa: E402

GOAL = 1.3
VIEWS = ("view0", "view1")


def build(args):
    """-> (encoder, baseline objective, our objective, the two views' images)."""
    torch.manual_seed(0)
    trunk = {"ndf": args.ndf, "embed_dim": args.n_rkhs, "n_depth": 1, "img_size": 64}
    encoder = encoders.create("amdim", model_name="amdim_small", in_chans=3, n_rkhs=args.n_rkhs, trunk_kwargs=trunk)
    baseline = objectives.create("amdim", views=VIEWS)
    ours = objectives.create("amdim_mixture", views=VIEWS, feature_dim=args.n_rkhs, n_components=args.k)
    images = {v: torch.randn(args.batch, 3, args.size, args.size) for v in VIEWS}
    device = args.device
    return encoder.to(device), baseline.to(device), ours.to(device), {v: x.to(device) for v, x in images.items()}


def full_step(encoder, objective, images) -> Callable[[], float]:
    """One forward + backward through the encoder and ``objective``; returns the loss."""
    params = list(encoder.parameters()) + list(objective.parameters())

    def step() -> float:
        for p in params:
            p.grad = None
        loss = objective({v: encoder(x) for v, x in images.items()}, {}).loss
        loss.backward()
        return loss.item()

    return step


def objective_step(objective, features: dict[str, Features]) -> Callable[[], float]:
    """Forward + backward of the objective alone, on fixed leaf features."""
    leaves = {v: Features(f.global_.detach().requires_grad_(), {k: m.detach().requires_grad_() for k, m in f.local.items()})
              for v, f in features.items()}  # fmt: skip

    def step() -> float:
        loss = objective(leaves, {}).loss
        loss.backward()
        return loss.item()

    return step


def _clock(device: str) -> float:
    """CPU seconds of the process on CPU (the one thread's time with one thread), wall seconds on CUDA."""
    if device == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def time_alternating(ours, baseline, repeats: int, warmup: int, device: str) -> dict:
    """Milliseconds per call of each side over ``repeats`` rounds taking turns, and the per-round ratios' noise."""
    fns = {"ours": ours, "baseline": baseline}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {"ours": [], "baseline": []}
    for r in range(repeats):
        for side in ("ours", "baseline") if r % 2 == 0 else ("baseline", "ours"):
            start = _clock(device)
            fns[side]()
            times[side].append((_clock(device) - start) * 1e3)
    rounds = [o / b for o, b in zip(times["ours"], times["baseline"])]
    ours_ms, base_ms = statistics.median(times["ours"]), statistics.median(times["baseline"])
    q = statistics.quantiles(rounds, n=4) if len(rounds) > 1 else [rounds[0]] * 3
    se = statistics.stdev(rounds) / math.sqrt(len(rounds)) if len(rounds) > 1 else float("nan")
    return {
        "ours_ms": round(ours_ms, 2),
        "baseline_ms": round(base_ms, 2),
        "ratio": round(ours_ms / base_ms, 3),
        "ratio_rounds_median": round(statistics.median(rounds), 3),
        "ratio_rounds_iqr": [round(q[0], 3), round(q[2], 3)],
        "ratio_rounds_mean": round(statistics.fmean(rounds), 3),
        "ratio_rounds_se": round(se, 3),
    }


def report(label: str, r: dict) -> None:
    print(
        f"{label:<15} ours (mixture) {r['ours_ms']:.1f} ms  baseline (plain AMDIM) {r['baseline_ms']:.1f} ms  "
        f"ratio {r['ratio']:.3f} (per round: median {r['ratio_rounds_median']:.3f}, IQR {r['ratio_rounds_iqr']}, "
        f"mean {r['ratio_rounds_mean']:.3f} +- {r['ratio_rounds_se']:.3f} SE)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64, help="image side (the 64 px layout: 64-71 give r7 7x7)")
    parser.add_argument("--ndf", type=int, default=32)
    parser.add_argument("--n-rkhs", type=int, default=256)
    parser.add_argument("--k", type=int, default=4, help="mixture components")
    parser.add_argument("--repeats", type=int, default=12, help="alternating rounds (one step of each per round)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each side first")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: robust on a shared machine)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    encoder, baseline, ours, images = build(args)
    clock = "wall" if args.device == "cuda" else "CPU"
    print(f"B={args.batch} size={args.size} ndf={args.ndf} n_rkhs={args.n_rkhs} k={args.k} device={args.device} "
          f"threads={torch.get_num_threads()} repeats={args.repeats} warmup={args.warmup} (alternating; {clock} time); "
          f"load average {os.getloadavg()}")  # fmt: skip
    results = {"step": time_alternating(
        full_step(encoder, ours, images), full_step(encoder, baseline, images), args.repeats, args.warmup, args.device
    )}  # fmt: skip
    report("encoder + loss", results["step"])
    with torch.no_grad():
        features = {v: encoder(x) for v, x in images.items()}
    results["objective_only"] = time_alternating(
        objective_step(ours, features), objective_step(baseline, features), args.repeats, args.warmup, args.device
    )
    report("objective only", results["objective_only"])
    met = results["step"]["ratio"] <= GOAL
    print(f"goal: step ratio <= {GOAL}: {'met' if met else 'NOT met'}; load average at the end {os.getloadavg()}")
    config = {k: getattr(args, k) for k in ("batch", "size", "ndf", "n_rkhs", "k", "repeats", "warmup", "device")}
    config |= {"threads": torch.get_num_threads(), "clock": clock, "load_avg_end": os.getloadavg()[0]}
    print(json.dumps(results | {"goal_met": met, "config": config}))


if __name__ == "__main__":
    main()
