"""Forward + backward time and peak memory of each objective at realistic shapes, vs. the loop references.

Shapes: B = 256, D = 1024, r7 ``[B, D, 7, 7]``, r5 ``[B, D, 5, 5]`` (AMDIM); DIM on Y ``[B, 1024]`` and a
``[B, 256, 7, 7]`` map with a 512-unit critic; CMC on two ``[B, 1024]`` views in-batch, and on two ``[B, 128]``
views (the paper's size) with a memory bank, K = 4096, N = 50,000; CMI on z ``[B, 1024]`` split 512 + 512, 10 values per attribute. "ours" is the library's
objective; "baseline" the one-anchor-at-a-time loop in ``multiview.objectives.reference`` on the same inputs
(checked equal here, and in the tests). The baseline is OUR OWN slow reference loop, not another library's
implementation: the ratio measures what vectorisation buys, not an advantage over another implementation.

Timing alternates: ``--repeats`` rounds, each one forward + backward of ours and one of the baseline, in turn (ours
first in even rounds, the baseline first in odd ones), after one untimed warm-up call of each. On CPU each call is
timed in CPU seconds of the process (run with OMP_NUM_THREADS=1: then it is the one thread's time, robust to other
jobs on a shared machine); on CUDA in wall time with synchronisation. Reported: the median of each side, the median
ratio of the rounds' neighbouring calls and its range [min, max] over rounds (the noise). Peak memory: the growth of the process's peak RSS during one forward +
backward, each measured in a fresh child process (CPU: VmHWM after a reset via /proc/self/clear_refs), or ``torch.cuda.max_memory_allocated`` on CUDA.

    python benchmarks/objectives.py [--batch 256] [--dim 1024] [--repeats 3] [--only amdim cmc]

Last line: JSON ``{"<objective>": {"ours_ms", "baseline_ms", "ratio", "ratio_rounds_median", "ratio_rounds_range",
"peak_mb", "baseline_peak_mb"}, ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from multiview.encoders.features import Features
from multiview.objectives import create
from multiview.objectives import reference as R

NAMES = ("amdim", "dim", "cmc", "cmc_bank", "cmi")


def setup(name: str, b: int, d: int, device: str):
    """-> (ours() -> loss, baseline() -> loss); both build the loss from the same leaf features."""
    g = torch.Generator().manual_seed(0)

    def leaf(*shape):
        return torch.randn(*shape, generator=g).to(device).requires_grad_(True)

    if name == "amdim":
        f = {v: Features(leaf(b, d), {"r5": leaf(b, d, 5, 5), "r7": leaf(b, d, 7, 7)}) for v in ("view0", "view1")}
        obj = create("amdim").to(device)

        def baseline():
            return R.amdim_loop(f, ("view0", "view1"), obj.source_locations(b, 25))

        return lambda: _fixed_step(obj, lambda: obj(f, {}).loss), baseline
    if name == "dim":
        f = {"x": Features(leaf(b, d), {"r7": leaf(b, 256, 7, 7)})}
        obj = create("dim", view="x", local="r7", global_dim=d, local_dim=256, estimator="nce", critic_dim=512).to(
            device
        )
        return lambda: obj(f, {}).loss, lambda: R.dim_loop(obj, f)
    if name in ("cmc", "cmc_bank"):
        f = {v: Features(leaf(b, d)) for v in ("L", "ab")}
        kwargs = {}
        if name == "cmc_bank":  # 128-d vectors as in the paper: the loop gathers [K + 1, D] bank rows per anchor
            f = {v: Features(leaf(b, 128)) for v in ("L", "ab")}
            kwargs = dict(negatives="bank", bank_size=50_000, feature_dim=128, num_negatives=4096)
        obj = create("cmc", views=("L", "ab"), **kwargs).to(device)
        batch = {"index": torch.randperm(50_000, generator=g)[:b].to(device)}
        obj(f, batch)  # sets Z once, as the first training batch would
        return lambda: _fixed_step(obj, lambda: obj(f, batch).loss), lambda: R.cmc_loop(obj, f, batch)
    if name == "cmi":
        f = {"z": Features(leaf(b, d))}
        obj = create("cmi", view="z", splits=(d // 2, d - d // 2), num_values=(10, 10)).to(device)
        batch = {
            "a1": torch.randint(10, (b,), generator=g).to(device),
            "a2": torch.randint(10, (b,), generator=g).to(device),
        }

        def baseline():
            z, labels = f["z"].global_, [batch["a1"], batch["a2"]]
            loss = obj.weight * R.cmi_adversarial_loop(obj, z, labels, 0.0)
            for k, (head, a) in enumerate(zip(obj.heads, labels)):
                loss = loss + obj.task_weight * F.cross_entropy(head(z[:, obj._slices()[k]]), a)
            return loss

        return lambda: _fixed_step(obj, lambda: obj(f, batch).loss), baseline
    raise ValueError(f"objective: expected one of {NAMES}, got {name!r}")


def _fixed_step(obj, fn):
    """Run ``fn`` and rewind the objective's step counter, so every call draws the same randomness."""
    step = int(obj.step)
    out = fn()
    obj.step.fill_(step)
    return out


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _clock(device: str) -> float:
    """CPU seconds of the process on CPU (the one thread's time with OMP_NUM_THREADS=1), wall seconds on CUDA."""
    return time.perf_counter() if device == "cuda" else time.process_time()


def time_alternating(ours, baseline, repeats: int, device: str) -> tuple[list[float], list[float]]:
    """Milliseconds per forward + backward of each side, ``repeats`` rounds taking turns (the first side alternates
    between rounds), after one untimed warm-up call of each."""
    fns = {"ours": ours, "baseline": baseline}
    for fn in fns.values():
        fn().backward()
    _sync(device)
    times: dict[str, list[float]] = {"ours": [], "baseline": []}
    for r in range(repeats):
        for side in ("ours", "baseline") if r % 2 == 0 else ("baseline", "ours"):
            start = _clock(device)
            fns[side]().backward()
            _sync(device)
            times[side].append((_clock(device) - start) * 1e3)
    return times["ours"], times["baseline"]


def peak_mb(name: str, impl: str, args) -> float:
    """Peak memory of one forward + backward: CUDA allocator stats, or a fresh child process's RSS growth."""
    if args.device == "cuda":
        ours, baseline = setup(name, args.batch, args.dim, "cuda")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        (ours if impl == "ours" else baseline)().backward()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    cmd = [sys.executable, __file__, "--child", name, impl, "--batch", str(args.batch), "--dim", str(args.dim)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def child(name: str, impl: str, args) -> None:
    """Peak RSS above the resident set just before one forward + backward (inputs already built)."""
    torch.set_num_threads(1)
    ours, baseline = setup(name, args.batch, args.dim, "cpu")
    fn = ours if impl == "ours" else baseline
    try:  # "5" resets the peak resident set (VmHWM) to the current one, so import-time peaks do not count
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        before = _status_mb("VmRSS")
        fn().backward()
        print(_status_mb("VmHWM") - before)
    except OSError:  # no /proc: fall back to the (never reset) peak RSS growth
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn().backward()
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds (one call of each side per round)")
    parser.add_argument("--only", nargs="+", default=list(NAMES), choices=NAMES)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args)
        return
    print(f"B={args.batch} D={args.dim} device={args.device} threads={torch.get_num_threads()} repeats={args.repeats} "
          f"(alternating; {'wall' if args.device == 'cuda' else 'CPU'} time); load average {os.getloadavg()}")  # fmt: skip
    print("baseline = our own one-anchor loop (multiview.objectives.reference): ratios measure vectorisation")
    results = {}
    for name in args.only:
        ours, baseline = setup(name, args.batch, args.dim, args.device)
        a, b = ours(), baseline()
        if not torch.allclose(a.detach().double(), b.detach().double(), rtol=1e-4):
            raise SystemExit(f"{name}: library loss {a.item():.6f} != loop reference {b.item():.6f}")
        ours_t, base_t = time_alternating(ours, baseline, args.repeats, args.device)
        ours_ms, base_ms = statistics.median(ours_t), statistics.median(base_t)
        rounds = [b / o for o, b in zip(ours_t, base_t)]
        results[name] = {
            "ours_ms": round(ours_ms, 1),
            "baseline_ms": round(base_ms, 1),
            "ratio": round(base_ms / ours_ms, 2),
            "ratio_rounds_median": round(statistics.median(rounds), 2),
            "ratio_rounds_range": [round(min(rounds), 2), round(max(rounds), 2)],
            "peak_mb": round(peak_mb(name, "ours", args), 1),
            "baseline_peak_mb": round(peak_mb(name, "baseline", args), 1),
        }
        r = results[name]
        print(
            f"{name:<9} loss {a.item():.4f}  ours {r['ours_ms']:.1f} ms  loop baseline {r['baseline_ms']:.1f} ms  "
            f"ratio {r['ratio']}x (rounds: median {r['ratio_rounds_median']}x, range {r['ratio_rounds_range']})  "
            f"peak ours {r['peak_mb']} MB  baseline {r['baseline_peak_mb']} MB"
        )
    print(f"load average at the end: {os.getloadavg()}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
