"""Training step time with torch's defaults vs. multiview's CPU-thread defaults (multiview.core.threads), on an
idle machine and under a competing load this script makes itself.

The step is the one ``multiview pretrain`` runs (``Trainer._micro_step`` + the scheduler) on a small real recipe:
CMC across the six UCI mfeat views (MLP encoders), batches from the recipe's own DataLoader with ``--workers``
loader workers (1 by default, as in the recipe of issue 16), so a step includes waiting for its batch. Each side
is its own Python process (the OpenMP wait policy is read once, when torch loads), built from the same recipe and
seed, kept alive for the whole run:

- ``default``: torch imported first, OMP_WAIT_POLICY unset, torch's default thread count (the machine's cores);
- ``threads``: the same, but the thread count multiview chooses (what a script that imports torch first gets);
- ``ours``: ``multiview`` imported first (OMP_WAIT_POLICY=PASSIVE, KMP_BLOCKTIME=0) and the Trainer's own choice
  -- what ``multiview pretrain`` gets.

Blocks of ``--steps`` steps take turns (the side that goes first rotates every round), ``--rounds`` rounds per
phase. The idle phase runs first; then ``--load`` busy Python processes spin (each exits by itself after
``--load-seconds`` and is killed when the phase ends) and the loaded phase runs. Ratios are ours / default of the
median step time (below 1: ours is faster).

    env -u OMP_NUM_THREADS -u OMP_WAIT_POLICY python benchmarks/threads.py [--steps 3 --rounds 4 --load 2]

Last line: JSON with ours_ms, default_ms, ratio (under load), threads_ms and the same for the idle phase, the
thread counts and the Trainer's log line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIDES = ("default", "threads", "ours")
SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def child(side: str, shards: str, run_dir: str, workers: int, batch: int, width: int) -> None:
    """One side: build the Trainer, then run the number of steps read from each stdin line, answer with times."""
    if side == "ours":
        import multiview  # noqa: F401  first, as the CLI does: sets OpenMP's wait policy before torch loads
    import torch

    default_threads = torch.get_num_threads()
    sys.path.insert(0, str(HERE))
    from overhead import recipe_dict  # the same recipe as the overhead benchmark

    from multiview.core.threads import plan_threads
    from multiview.train.loop import Trainer
    from multiview.train.recipe import validate_recipe

    spec = recipe_dict(Path(shards), Path(run_dir), batch, width)
    spec["data"]["num_workers"] = workers
    trainer = Trainer(validate_recipe(spec))
    if side == "default":
        torch.set_num_threads(default_threads)
    elif side == "threads":
        torch.set_num_threads(plan_threads(workers=workers).chosen)
    batches = trainer._batches()
    for _ in range(3):  # warm-up: allocator, first-call checks, the workers' start
        trainer._micro_step(next(batches))
    info = {
        "threads": torch.get_num_threads(),
        "wait_policy": trainer.thread_plan.wait_policy,  # notes when it came too late for this process
        "spincount": os.environ.get("GOMP_SPINCOUNT"),
        "plan": trainer.thread_plan.line(),
    }
    print("READY " + json.dumps(info), flush=True)
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            start = time.perf_counter()
            trainer._micro_step(next(batches))
            trainer.scheduler.step()
            times.append((time.perf_counter() - start) * 1e3)
        print("TIMES " + json.dumps(times), flush=True)


def _answer(proc: subprocess.Popen, tag: str):
    for line in proc.stdout:
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1 :])
    raise RuntimeError(f"a benchmark side ended without answering {tag} (exit code {proc.wait()})")


def start_load(n: int, seconds: float) -> list[subprocess.Popen]:
    """``n`` busy Python processes, each spinning for at most ``seconds``."""
    return [subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=seconds)]) for _ in range(n)]


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default=None, help="mfeat shards (built into a temp folder when missing)")
    parser.add_argument("--steps", type=int, default=3, help="steps per block")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per phase (each: one block per side)")
    parser.add_argument("--load", type=int, default=2, help="busy processes in the loaded phase")
    parser.add_argument("--load-seconds", type=float, default=600, help="each busy process exits after this")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers of the recipe")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--width", type=int, default=512, help="hidden width of the MLP encoders")
    parser.add_argument("--skip-idle", action="store_true", help="only the loaded phase")
    parser.add_argument(
        "--ours-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra environment variable for the 'ours' side only (e.g. GOMP_SPINCOUNT=10000), repeatable",
    )
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.shards, args.run_dir, args.workers, args.batch, args.width)

    unset = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.shards:
            shards = Path(args.shards)
        else:
            sys.path.insert(0, str(HERE))
            from overhead import ensure_mfeat

            shards = ensure_mfeat(Path(tmp) / "mfeat")
        common = [
            "--shards",
            str(shards),
            "--workers",
            str(args.workers),
            "--batch",
            str(args.batch),
            "--width",
            str(args.width),
        ]
        sides = {
            side: subprocess.Popen(
                [sys.executable, __file__, "--child", side, "--run-dir", str(Path(tmp) / side), *common],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env | dict(item.split("=", 1) for item in args.ours_env) if side == "ours" else env,
            )
            for side in SIDES
        }
        try:
            info = {side: _answer(proc, "READY") for side, proc in sides.items()}  # built one after the other
            for side in SIDES:
                print(
                    f"{side}: {info[side]['threads']} threads, OMP_WAIT_POLICY={info[side]['wait_policy']}, "
                    f"GOMP_SPINCOUNT={info[side]['spincount']}"
                )
            print(info["ours"]["plan"])
            phases = [] if args.skip_idle else [("idle", 0)]
            for phase, load in [*phases, ("loaded", args.load)]:
                spinners = start_load(load, args.load_seconds)
                loadavg_start = os.getloadavg()[0]
                times: dict[str, list[float]] = {side: [] for side in SIDES}
                start = time.perf_counter()
                try:
                    if spinners:
                        time.sleep(1.0)  # let the spinners start
                    for r in range(args.rounds):
                        for k in range(len(SIDES)):
                            side = SIDES[(k + r) % len(SIDES)]
                            sides[side].stdin.write(f"{args.steps}\n")
                            sides[side].stdin.flush()
                            times[side] += _answer(sides[side], "TIMES")
                finally:
                    stop(spinners)
                med = {side: statistics.median(times[side]) for side in SIDES}
                result[phase] = {
                    "ours_ms": round(med["ours"], 1),
                    "default_ms": round(med["default"], 1),
                    "ratio": round(med["ours"] / med["default"], 4),
                    "threads_ms": round(med["threads"], 1),
                    "threads_ratio": round(med["threads"] / med["default"], 4),
                    "busy_processes": load,
                    "loadavg_1min": [round(loadavg_start, 2), round(os.getloadavg()[0], 2)],
                    "seconds": round(time.perf_counter() - start, 1),
                }
                r = result[phase]
                print(
                    f"{phase} ({load} busy processes, load avg {r['loadavg_1min'][0]} -> {r['loadavg_1min'][1]}): "
                    f"ms/step ours {r['ours_ms']:.1f}, threads only {r['threads_ms']:.1f}, default "
                    f"{r['default_ms']:.1f}; ratio ours/default {r['ratio']:.3f} (threads only {r['threads_ratio']:.3f})"
                )
        finally:
            for proc in sides.values():
                proc.stdin.close()  # a side exits at the end of its input
            for proc in sides.values():
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    stop([proc])
    loaded = result["loaded"]
    out = {
        "ours_ms": loaded["ours_ms"],
        "default_ms": loaded["default_ms"],
        "ratio": loaded["ratio"],
        "threads_ms": loaded["threads_ms"],
        "idle": result.get("idle"),
        "loaded": loaded,
        "threads": {side: info[side]["threads"] for side in SIDES},
        "wait_policy": {side: info[side]["wait_policy"] for side in SIDES},
        "ours_env": args.ours_env,
        "plan": info["ours"]["plan"],
        "workers": args.workers,
        "steps_per_block": args.steps,
        "rounds": args.rounds,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
