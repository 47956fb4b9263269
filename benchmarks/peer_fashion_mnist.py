"""Representation quality under the same CPU budget on Fashion-MNIST: multiview's AMDIM, DIM and CMC vs. lightly's
SimCLR, a supervised encoder and raw pixels, all probed by the same linear probe.

Every learned method trains the SAME encoder (multiview's padding-free AMDIM trunk at 32 px, ``--ndf`` /
``--embed-dim`` / ``--n-rkhs``, one grey channel) with the same batch, optimiser (Adam with warm-up + cosine) and
the same training budget in CPU seconds of ONE thread (``--budget-s``). The learning rates and temperatures are each
side's best cell of the same small grid (benchmarks/README.md): ours and the supervised run ``--lr 4e-3``, CMC
``--cmc-temperature 0.5``; lightly ``--simclr-lr 2e-3``, ``--simclr-temperature 0.2`` (its default 0.5 scored lower).

- ours (amdim, dim, cmc): a recipe dict validated by ``multiview.train.recipe.validate_recipe`` and run by
  ``multiview.train.loop.Trainer.fit`` -- exactly what ``multiview pretrain`` runs (shards streamed from disk, views
  made per sample in the loop's process). Fashion-MNIST is grey, so CMC's L/ab colour split does not apply (the
  ``colorsplit`` generator refuses grey images): CMC contrasts two augmentation views (``--cmc-views``).
- lightly (simclr): its own plain loop -- ``lightly.transforms.SimCLRTransform`` (defaults, 32 px, one-channel
  normalisation) on PIL images in a DataLoader, ``lightly.models.modules.SimCLRProjectionHead``,
  ``lightly.loss.NTXentLoss`` (``--simclr-temperature``).
- supervised: a plain cross-entropy loop, the encoder plus a linear classifier, on the evaluation views (+ flips).

The budget is CPU time, not wall time: other jobs share this machine's 2 cores and the load changes from minute
to minute, so wall time would hand methods different amounts of compute. With one torch thread a method's CPU
time is what its wall time would be on an idle core. Before training, a calibration round (steps of every method
interleaved, median CPU time per step) converts the budget into a step count per method, so that each run's
cosine schedule ends where its budget does; the CPU time each run really used is reported next to its budget.

The probe (``multiview.eval.probes.linear_probe``: standardised frozen features, weight-decay search on a
stratified validation split, L-BFGS) is trained on the train images (all 60,000 by default, ``--probe-train``;
the weight-decay search runs on a stratified subset of ``--probe-search`` (10,000) of them, the final fit on all) and tested
on the official 10,000-image test split, on the deterministic evaluation view (the image resized to 32 px). Every
row (untrained and supervised encoders included) is probed on the same features, ``--probe-features`` (a comma
list, the first is the headline; see ``ProbeFeatures``):

- ``maps7`` (default): AMDIM's r1 + r5 + r7 probe on the trunk's own maps, before any head: r7 whole (7x7), r5
  average-pooled to 2x2, r1 (1x1), flattened and concatenated (3,648 dims at ndf 16). The DIM and AMDIM papers
  probe conv feature maps as well; a vector alone throws away where in the image a feature fired.
- ``maps``: the same with r7 pooled to 3x3 (1,088 dims; about a third of the probe's cost).
- ``global``: ``Features.global_`` (the r1 head's output: CMC's and AMDIM's contrastive embedding itself).
- ``trunk``: the trunk's pooled r1 before that head (SimCLR's usual probe layer).

Raw pixels go through the same probe (DATA.md: 0.847 on the full 60k split).

    python benchmarks/peer_fashion_mnist.py     # defaults: 44 min wall (2,655 s, --jobs 2) on 2 shared cores
    python benchmarks/peer_fashion_mnist.py --budget-s 5 --probe-train 2000 --probe-search 1000 --test-limit 1000 \
        --probe-features maps --methods cmc,simclr_lightly   # smoke run: about a minute

Same knobs on both sides. Each side's views can be tuned over the same knobs: the RandomResizedCrop lower bound
(``--view-min-scale``, ours, default 0.3; ``--simclr-min-scale``, lightly, default its 0.08) and the blur (lightly's
``--simclr-blur``, default its 0.5; lightly's own 32 px examples use 0.0; our AMDIM views never blur, i.e. 0.0);
``--simclr-cj-strength`` (default its 1.0) sets lightly's colour jitter (0.5 gives brightness / contrast 0.4, our
views' jitter). The defaults keep the recorded headline's settings.

Seeds and a tie rule. ``--seeds 0,1,2`` trains and probes every method once per seed (the step counts of one
calibration), then prints per method the mean top-1 and its standard error over seeds, the gain over the untrained
encoder of the same seed on the same probe (what pretraining buys), and a verdict for the best of ours against
lightly's SimCLR on the headline probe: the per-seed margins are paired (the same seed trains both), and a mean
margin within two standard errors of zero is a ``tie`` (one seed: ``undetermined``). The standard error is over
seeds only: every row is tested on the same test images, whose own sampling error (about 0.003 at 0.90 on 10,000)
it does not contain.

``--jobs N`` (default 2 on a machine with 2+ cores) trains and probes N methods at once, each in its own process
with one thread; the budgets are CPU seconds, so a method's figures do not depend on what runs beside it.

Runs with ONE torch thread (OMP_NUM_THREADS=1): with more threads than free cores OpenMP spin-waits (a CMC step
was measured 36x slower with 2 threads on this busy 2-core machine). Last line: JSON of every figure.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported (see the docstring)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import multiview.encoders as encoders  # noqa: E402
import multiview.views as views  # noqa: E402
from multiview.data import iter_samples  # noqa: E402
from multiview.encoders.features import Features  # noqa: E402
from multiview.eval.baselines import raw_features  # noqa: E402
from multiview.eval.bundle import MAPS7_GRID, pool_maps  # noqa: E402
from multiview.eval.embed import embed_samples  # noqa: E402
from multiview.eval.probes import linear_probe  # noqa: E402
from multiview.train.loop import Trainer  # noqa: E402
from multiview.train.recipe import validate_recipe  # noqa: E402

# Fashion-MNIST pixel statistics (train split, values in [0, 1]); every method normalises with them.
FM_MEAN, FM_STD = 0.2860, 0.3530
SSL_METHODS = ("amdim", "dim", "cmc", "simclr_lightly")
ALL_METHODS = (*SSL_METHODS, "supervised")


# ------------------------------------------------------------------------------------------------ data


def ensure_shards(root: Path, train_limit: int | None) -> Path:
    """The full shards at ``root`` (built when missing); with ``train_limit``, a sibling folder holding the first
    ``train_limit`` train images and the full test split (the builder's own ``limit`` would cut the test split)."""
    from multiview.builders import fashion_mnist

    if not (root / "manifest.json").is_file():
        print(f"building {root} from the Debian package (about a minute) ...", flush=True)
        fashion_mnist.build(root)
    counts = split_counts(root)
    if counts != fashion_mnist.SIZES:
        # Someone's smoke-test shards (datasets/fashion_mnist.py --limit N) at the shared path: leave them alone
        # and use (or build) a full copy next to them.
        full = root.parent / f"{root.name}_full"
        print(f"{root} holds {counts}, not the full split {fashion_mnist.SIZES}: using {full}", flush=True)
        if not (full / "manifest.json").is_file() or split_counts(full) != fashion_mnist.SIZES:
            fashion_mnist.build(full)
        root = full
    if train_limit is None:
        return root
    limited = root.parent / f"{root.name}_train{train_limit}"
    if not (limited / "manifest.json").is_file():
        from multiview.builders._common import write

        train = fashion_mnist.load_split("train", limit=train_limit)
        test = fashion_mnist.load_split("test")
        write(
            limited,
            {"train": fashion_mnist.iter_fashion_samples(train), "test": fashion_mnist.iter_fashion_samples(test)},
            {"train": len(train["labels"]), "test": len(test["labels"])},
            builder="fashion_mnist",
            builder_args={"train_limit": train_limit},
            extra={"split": f"first {train_limit} of the official train split; the full official test split"},
            maxcount=10000,
        )
    return limited


def split_counts(root: Path) -> dict[str, int]:
    manifest = json.loads((root / "manifest.json").read_text())
    return {name: int(entry["count"]) for name, entry in manifest["splits"].items()}


def take(samples, limit: int | None) -> list[dict]:
    out = []
    for sample in samples:
        if limit is not None and len(out) >= limit:
            break
        out.append(sample)
    return out


def eval_view_fn():
    """The deterministic evaluation view of every method: the whole 28 px image resized to 32 px, normalised."""
    gen = views.create(
        "amdim", size=32, n_views=1, crop="translate", mean=[FM_MEAN], std=[FM_STD], channels=1
    ).eval_transform()
    return lambda sample: gen(sample)["view0"]


# ------------------------------------------------------------------------------------------------ methods


def encoder_spec(args) -> dict:
    trunk = {"ndf": args.ndf, "embed_dim": args.embed_dim, "n_depth": args.n_depth}
    return {"kind": "amdim", "model_name": "amdim_small", "in_chans": 1, "n_rkhs": args.n_rkhs, "trunk_kwargs": trunk}


def make_encoder(args) -> nn.Module:
    spec = dict(encoder_spec(args))
    return encoders.create(spec.pop("kind"), **spec)


def view_spec(kind: str, n_views: int, min_scale: float = 0.3) -> dict:
    """Our view generators for 28 px grey images -> 32 px views (no saturation/hue/grayscale: one channel; the AMDIM
    views never blur). ``min_scale``: the AMDIM views' RandomResizedCrop lower bound (``--view-min-scale``)."""
    norm = {"mean": [FM_MEAN], "std": [FM_STD], "channels": 1}
    if kind == "amdim":
        return {"name": "amdim", "size": 32, "n_views": n_views, "scale": [min_scale, 1.0],
                "jitter": [0.4, 0.4, 0.0, 0.0], "gray_p": 0.0, **norm}  # fmt: skip
    if kind == "simclr":
        return {"name": "simclr", "size": 32, "n_views": n_views, "gray_p": 0.0, **norm}
    raise ValueError(f"--cmc-views: expected 'amdim' or 'simclr', got {kind!r}")


def objective_spec(method: str, args) -> tuple[dict, int]:
    """The recipe's objective entry and how many views it needs."""
    if method == "amdim":
        return {"name": "amdim", "views": ["view0", "view1"], "tasks": ["1t5", "1t7", "5t5"]}, 2
    if method == "dim":  # DIM(L): local JSD MI between Y and the 7x7 map, plus prior matching (its own step)
        return {"name": "dim", "view": "view0", "local": "r7", "global_dim": args.n_rkhs, "local_dim": args.n_rkhs,
                "critic_dim": 2 * args.n_rkhs, "local_size": 7}, 1  # fmt: skip
    if method == "cmc":
        return {"name": "cmc", "views": ["view0", "view1"], "temperature": args.cmc_temperature}, 2
    raise ValueError(f"no multiview objective for method {method!r}")


def recipe_for(method: str, args, shards: Path, run_dir: Path, steps: int):
    objective, n_views = objective_spec(method, args)
    view_kind = args.cmc_views if method == "cmc" else "amdim"
    data = {
        "name": f"peer_{method}",
        "data": {"path": str(shards), "split": "train", "keep": ["label"]},
        "views": view_spec(view_kind, n_views, args.view_min_scale),
        "encoders": {"image": encoder_spec(args)},
        "objectives": [objective],
        "optimizer": {"name": "adam", "lr": args.lr},
        "schedule": {"name": "cosine", "warmup_steps": min(args.warmup, max(steps // 10, 1))},
        "train": {"batch_size": args.batch, "steps": steps, "seed": args.seed, "device": "cpu", "threads": 1},
        "checkpoint": {"every": 0, "keep": 1},
        "log": {"every": 10, "dir": str(run_dir), "progress": False},
    }
    return validate_recipe(data, source=f"<peer benchmark: {method}>")


def warmup_cosine(optimizer, steps: int, warmup: int):
    """The same warm-up + cosine as our recipes, written out for the plain loops."""
    warmup = min(warmup, max(steps // 10, 1))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * min((step - warmup) / max(steps - warmup, 1), 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def cycle(loader):
    while True:
        yield from loader


@dataclass
class Run:
    """One method ready to train: ``step()`` runs one optimiser step (data included); ``encoder`` is probed."""

    step: Callable[[], None]
    encoder: nn.Module
    fit: Callable[[], None] | None = None  # the whole run (ours: Trainer.fit); default: step() repeated
    extra: dict = field(default_factory=dict)


class Context:
    def __init__(self, args, shards: Path, run_dir: Path, train_images: list[torch.Tensor], eval_view):
        self.args, self.shards, self.run_dir = args, shards, run_dir
        self.train_images, self.eval_view = train_images, eval_view
        self._pil = None
        self.labelled_train: list[dict] = []  # the train samples with their labels (supervised baseline)
        self.probe_train: list[dict] = []  # the probe's train samples (``--probe-train``)
        self.test_samples: list[dict] = []

    def pil_images(self):
        if self._pil is None:
            from torchvision.transforms.functional import to_pil_image

            self._pil = [to_pil_image(img) for img in self.train_images]
        return self._pil


def build_ours(method: str, ctx: Context, steps: int, tag: str) -> Run:
    recipe = recipe_for(method, ctx.args, ctx.shards, ctx.run_dir / tag, steps)
    trainer = Trainer(recipe)
    batches = trainer._batches()

    def step() -> None:  # one optimiser step as fit() runs it (for the calibration round only)
        trainer._micro_step(next(batches))
        trainer.scheduler.step()

    def fit() -> None:
        summary = trainer.fit()
        run.extra["last_loss"] = summary.last_metrics.get("loss")

    run = Run(step, trainer.core.encoders["image"], fit)
    return run


def build_simclr_lightly(ctx: Context, steps: int, tag: str) -> Run:
    """lightly's SimCLR with its own transforms, projection head and loss in a plain loop."""
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    args = ctx.args
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # lightly's GaussianBlur draws from numpy's global generator
    transform = SimCLRTransform(input_size=32, gaussian_blur=args.simclr_blur, min_scale=args.simclr_min_scale,
                                cj_strength=args.simclr_cj_strength, normalize={"mean": [FM_MEAN], "std": [FM_STD]})  # fmt: skip
    images = ctx.pil_images()

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return transform(images[i])

    loader = torch.utils.data.DataLoader(
        Pairs(), batch_size=args.batch, shuffle=True, drop_last=True, num_workers=0,
        generator=torch.Generator().manual_seed(args.seed),
    )  # fmt: skip
    encoder = make_encoder(args)
    head = SimCLRProjectionHead(args.n_rkhs, args.n_rkhs, 128)
    criterion = NTXentLoss(temperature=args.simclr_temperature)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=args.simclr_lr)
    scheduler = warmup_cosine(optimizer, steps, args.warmup)
    batches = cycle(loader)
    encoder.train()

    def step() -> None:
        x0, x1 = next(batches)
        z0, z1 = head(encoder(x0).global_), head(encoder(x1).global_)  # views one by one: BN stats per view
        loss = criterion(z0, z1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()

    return Run(step, encoder)


def build_supervised(ctx: Context, steps: int, tag: str) -> Run:
    """The encoder plus a linear classifier, cross-entropy on the evaluation views with random flips."""
    args = ctx.args
    torch.manual_seed(args.seed)
    samples = ctx.labelled_train
    encoder = make_encoder(args)
    classifier = nn.Linear(args.n_rkhs, 10)
    optimizer = torch.optim.Adam([*encoder.parameters(), *classifier.parameters()], lr=args.lr)
    scheduler = warmup_cosine(optimizer, steps, args.warmup)
    generator = torch.Generator().manual_seed(args.seed)
    order = iter(())
    encoder.train()

    def next_batch() -> list[int]:
        nonlocal order
        idx = [i for _, i in zip(range(args.batch), order)]
        if len(idx) < args.batch:  # a new epoch (the incomplete tail is dropped, as in the other loops)
            order = iter(torch.randperm(len(samples), generator=generator).tolist())
            idx = [i for _, i in zip(range(args.batch), order)]
        return idx

    def step() -> None:
        idx = next_batch()
        x = torch.stack([ctx.eval_view(samples[i]) for i in idx])
        y = torch.tensor([samples[i]["label"] for i in idx])
        flip = torch.rand(len(idx), generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        loss = F.cross_entropy(classifier(encoder(x).global_), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()

    return Run(step, encoder)


def build(method: str, ctx: Context, steps: int, tag: str) -> Run:
    if method == "simclr_lightly":
        return build_simclr_lightly(ctx, steps, tag)
    if method == "supervised":
        return build_supervised(ctx, steps, tag)
    return build_ours(method, ctx, steps, tag)


# ------------------------------------------------------------------------------------------------ budget


def calibrate(methods: list[str], ctx: Context, warm: int, measured: int) -> dict[str, float]:
    """Median CPU seconds per optimiser step of every method; steps of the methods interleaved round-robin so a
    change of machine load hits them alike (a throw-away model per method: the real runs start fresh)."""
    runs = {m: build(m, ctx, 10**6, f"calibrate_{m}") for m in methods}
    times: dict[str, list[float]] = {m: [] for m in methods}
    for i in range(warm + measured):
        for m in methods if i % 2 == 0 else methods[::-1]:
            start = time.process_time()
            runs[m].step()
            if i >= warm:
                times[m].append(time.process_time() - start)
    return {m: statistics.median(t) for m, t in times.items()}


def train(method: str, ctx: Context, steps: int) -> tuple[Run, dict]:
    load_before = os.getloadavg()[0]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    run = build(method, ctx, steps, method)
    if run.fit is not None:
        run.fit()
    else:
        for _ in range(steps):
            run.step()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    stats = {"steps": steps, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
             "samples_seen": steps * ctx.args.batch, "load_avg_1min": [round(load_before, 2),
             round(os.getloadavg()[0], 2)], **run.extra}  # fmt: skip
    return run, stats


def run_task(ctx: Context, task: str, steps: int) -> dict:
    """Train ``task`` for ``steps`` (none for ``random_init``: the untrained encoder, what training adds on top of
    the architecture) and probe it; its figures."""
    if task == "random_init":
        torch.manual_seed(ctx.args.seed)
        start = time.process_time()
        stats = probe(make_encoder(ctx.args), ctx, ctx.probe_train, ctx.test_samples)
        stats["probe_cpu_s"] = round(time.process_time() - start, 1)
        return stats
    run, stats = train(task, ctx, steps)
    start = time.process_time()
    stats.update(probe(run.encoder, ctx, ctx.probe_train, ctx.test_samples))
    stats["probe_cpu_s"] = round(time.process_time() - start, 1)
    stats["samples_per_cpu_s"] = round(stats["samples_seen"] / max(stats["cpu_s"], 1e-9), 1)
    return stats


def describe(task: str, stats: dict) -> str:
    if task == "random_init":
        return f"random init: linear top-1 {stats['linear_top1']:.4f}"
    return (f"{task}: {stats['steps']} steps in {stats['cpu_s']} CPU s ({stats['wall_s']} s wall), "
            f"linear top-1 {stats['linear_top1']:.4f}")  # fmt: skip


def load_context(args, run_dir: Path) -> Context:
    """The shards, the evaluation view and the sample lists every task reads."""
    shards = ensure_shards(Path(args.shards), args.train_limit)
    train_samples = list(iter_samples(shards, "train", fields=["image", "label"]))
    ctx = Context(args, shards, run_dir, [s["image"] for s in train_samples], eval_view_fn())
    ctx.labelled_train = train_samples
    ctx.probe_train = train_samples[: args.probe_train] if args.probe_train else train_samples
    ctx.test_samples = take(iter_samples(shards, "test", fields=["image", "label"]), args.test_limit)
    return ctx


_WORKER_CTX: Context | None = None


def _worker_init(args, run_dir: Path, parent_pid: int) -> None:
    global _WORKER_CTX
    torch.set_num_threads(1)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    _WORKER_CTX = load_context(args, run_dir)


def _exit_with_parent(parent_pid: int) -> None:
    """A killed benchmark (``kill``, not Ctrl-C, which reaches the whole process group) must not leave its workers
    training on: they would eat the CPU of whatever runs next."""
    while os.getppid() == parent_pid:
        time.sleep(2.0)
    os._exit(1)


def _worker_run(task: str, steps: int) -> dict:
    return run_task(_WORKER_CTX, task, steps)


def run_in_processes(args, run_dir: Path, jobs: dict[str, int]):
    """Yield ``(task, figures)`` of every job as it completes, ``args.jobs`` fresh processes (spawned, one torch
    thread each) working through them."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=context, initializer=_worker_init,
                             initargs=(args, run_dir, os.getpid())) as pool:  # fmt: skip
        futures = {pool.submit(_worker_run, task, n): task for task, n in jobs.items()}
        for future in as_completed(futures):
            yield futures[future], future.result()


# ------------------------------------------------------------------------------------------------ probe


# The probe feature sets. "maps" is AMDIM's r1 + r5 + r7 probe on the trunk's own maps (before any head): each map
# average-pooled to a small grid and flattened, then concatenated -- the DIM/AMDIM papers probe conv feature maps
# too, and every method (untrained and supervised included) is probed on the same layers. "maps7" keeps r7 whole.
# The pooling is the library's (multiview.eval.bundle.pool_maps), so `multiview eval linear --features maps7` (or
# `--features trunk_maps --grid 3,2,1` for "maps") reproduces these columns from a checkpoint.
PROBE_GRIDS = {"maps": [3, 2, 1], "maps7": MAPS7_GRID}  # grids of the trunk's r7, r5, r1
PROBE_FEATURES = (*PROBE_GRIDS, "trunk", "global")


class ProbeFeatures(nn.Module):
    """Every requested probe feature set of an AMDIM encoder in one forward pass, concatenated in ``Features.global_``
    (``[B, sum of the sets' dims]``; ``slices`` says which columns belong to which set).

    - ``global``: ``Features.global_`` (the r1 head's output, ``[B, n_rkhs]``; CMC's and AMDIM's contrastive
      embedding itself);
    - ``trunk``: the trunk's pooled r1 before that head (``[B, embed_dim]``, SimCLR's usual probe layer);
    - ``maps``: r7, r5 and r1 of the trunk average-pooled to 3x3, 2x2 and 1x1 (``[B, 9 C7 + 4 C5 + embed_dim]``);
    - ``maps7``: the same with r7 whole (7x7: ``[B, 49 C7 + 4 C5 + embed_dim]``).
    """

    def __init__(self, encoder: nn.Module, sets: list[str]):
        super().__init__()
        self.encoder, self.sets = encoder, list(sets)
        self.slices: dict[str, slice] = {}

    def forward(self, x: torch.Tensor) -> Features:
        r7, r5, r1 = self.encoder.trunk.forward_intermediates(x, intermediates_only=True)
        parts = {}
        for name in self.sets:
            if name == "global":  # AmdimEncoder.forward's r1 head on the same trunk pass (no second forward)
                parts[name] = self.encoder.heads["r1"](r1).mean(dim=(2, 3))
            elif name == "trunk":
                parts[name] = r1.mean(dim=(2, 3))
            else:
                parts[name] = pool_maps([r7, r5, r1], PROBE_GRIDS[name])
        start = 0
        for name, part in parts.items():
            self.slices[name] = slice(start, start + part.shape[1])
            start += part.shape[1]
        return Features(torch.cat(list(parts.values()), dim=1))


def probe(encoder: nn.Module, ctx: Context, train_samples, test_samples) -> dict:
    """Linear probe on every set of ``--probe-features``; the first is the headline (``linear_top1``), the others
    get a suffix (``linear_top1_global``, ...)."""
    encoder.eval()
    sets = ctx.args.probe_features
    features = ProbeFeatures(encoder, sets)
    tr = embed_samples(train_samples, {"x": (features, ctx.eval_view)}, batch_size=256)["x"]
    te = embed_samples(test_samples, {"x": (features, ctx.eval_view)}, batch_size=256)["x"]
    out = {}
    for i, name in enumerate(sets):
        cols = features.slices[name]
        result = linear_probe(tr.embeddings[:, cols], tr.labels, te.embeddings[:, cols], te.labels,
                              search_limit=ctx.args.probe_search or None)  # fmt: skip
        suffix = "" if i == 0 else f"_{name}"
        out.update({f"linear_top1{suffix}": round(result.top1, 4), f"weight_decay{suffix}": result.weight_decay,
                    f"dim{suffix}": result.dim})  # fmt: skip
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default="shards/fashion_mnist", help="Fashion-MNIST shards (built when missing)")
    parser.add_argument("--train-limit", type=int, default=None, help="pretrain on the first N train images only")
    parser.add_argument("--probe-train", type=int, default=0, help="train images for the linear probe (0: all 60k)")
    parser.add_argument(
        "--probe-search",
        type=int,
        default=10000,
        help="probe weight-decay search on a stratified subset of N train images (0: all)",
    )
    parser.add_argument("--test-limit", type=int, default=None, help="probe on the first N test images (default all)")
    parser.add_argument("--budget-s", type=float, default=300.0, help="training CPU seconds (1 thread) per method")
    parser.add_argument("--methods", default=",".join(ALL_METHODS), help=f"comma list of {', '.join(ALL_METHODS)}")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-3, help="Adam learning rate of ours and the supervised run")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up steps (at most a tenth of a run)")
    parser.add_argument("--ndf", type=int, default=16, help="AMDIM trunk base width (shared by every method)")
    parser.add_argument("--embed-dim", type=int, default=256, help="AMDIM trunk output width")
    parser.add_argument("--n-depth", type=int, default=1, help="extra 1x1 blocks per trunk stage")
    parser.add_argument("--n-rkhs", type=int, default=128, help="feature dim D of the encoder outputs")
    parser.add_argument("--cmc-views", default="amdim", choices=("amdim", "simclr"), help="our view generator for CMC")
    parser.add_argument("--cmc-temperature", type=float, default=0.5)
    parser.add_argument("--simclr-lr", type=float, default=2e-3, help="Adam learning rate of lightly's SimCLR")
    parser.add_argument(
        "--simclr-temperature", type=float, default=0.2, help="lightly NTXentLoss temperature (lightly's default: 0.5)"
    )
    parser.add_argument(
        "--view-min-scale", type=float, default=0.3, help="our AMDIM views' crop scale lower bound (no blur: never)"
    )
    parser.add_argument(
        "--simclr-blur",
        type=float,
        default=0.5,
        help="SimCLRTransform gaussian_blur probability (lightly's default 0.5; its 32 px examples use 0.0)",
    )
    parser.add_argument(
        "--simclr-min-scale", type=float, default=0.08, help="SimCLRTransform min_scale (lightly's default 0.08)"
    )
    parser.add_argument(
        "--simclr-cj-strength", type=float, default=1.0, help="SimCLRTransform cj_strength (lightly's default 1.0)"
    )
    parser.add_argument(
        "--probe-features",
        default="maps7",
        help=f"comma list of {', '.join(PROBE_FEATURES)} (see ProbeFeatures); the first is the headline",
    )
    parser.add_argument("--no-random-init", dest="random_init", action="store_false", help="skip the untrained row")
    parser.add_argument("--calib-warm", type=int, default=2)
    parser.add_argument("--calib-steps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seeds",
        default=None,
        help="comma list of seeds (overrides --seed): every method is trained and probed once per seed, with the step "
        "counts of one calibration; reported: mean and standard error over seeds, and a tie rule (see Verdict)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="train and probe this many methods at once, each in its own process with one thread (budgets are CPU "
        "seconds, so a method's figures do not depend on its neighbour)",
    )
    parser.add_argument("--run-dir", default=None, help="where our runs go (default: a temporary folder)")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.jobs < 1:
        parser.error(f"--jobs: expected >= 1, got {args.jobs}")
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown or not methods:
        parser.error(f"--methods: unknown {unknown}; expected a comma list of {', '.join(ALL_METHODS)}")
    try:
        args.seeds = [int(v) for v in args.seeds.split(",") if v.strip()] if args.seeds else [args.seed]
    except ValueError:
        parser.error(f"--seeds: expected a comma list of integers, got {args.seeds!r}")
    if not args.seeds or len(set(args.seeds)) < len(args.seeds):
        parser.error(f"--seeds: expected distinct integers, got {args.seeds}")
    for flag in ("simclr_blur", "simclr_min_scale", "view_min_scale"):
        if not 0.0 <= getattr(args, flag) <= 1.0:
            parser.error(f"--{flag.replace('_', '-')}: expected a value in [0, 1], got {getattr(args, flag)}")
    args.seed = args.seeds[0]
    args.probe_features = [f.strip() for f in args.probe_features.split(",") if f.strip()]
    unknown = sorted(set(args.probe_features) - set(PROBE_FEATURES))
    if unknown or not args.probe_features or len(set(args.probe_features)) < len(args.probe_features):
        parser.error(f"--probe-features: got {args.probe_features}; expected distinct names of {PROBE_FEATURES}")
    torch.set_num_threads(1)
    print(f"torch threads: {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); "
          f"cores: {os.cpu_count()}; load average at start: {os.getloadavg()}", flush=True)  # fmt: skip
    t_start = time.perf_counter()
    loads = [os.getloadavg()[0]]

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run_dir) if args.run_dir else Path(tmp)
        ctx = load_context(args, run_dir)
        train_samples, probe_train, test_samples = ctx.labelled_train, ctx.probe_train, ctx.test_samples
        print(f"data: {len(train_samples)} pretraining images, probe {len(probe_train)} train / "
              f"{len(test_samples)} test (official test split)", flush=True)  # fmt: skip

        results: dict[str, dict] = {}
        start = time.process_time()
        xtr, xte = raw_features(probe_train, test_samples, "image")
        raw = linear_probe(xtr, [s["label"] for s in probe_train], xte, [s["label"] for s in test_samples])
        results["raw_pixels"] = {"linear_top1": round(raw.top1, 4), "weight_decay": raw.weight_decay,
                                 "dim": raw.dim, "probe_cpu_s": round(time.process_time() - start, 1)}  # fmt: skip
        print(f"raw pixels: linear top-1 {raw.top1:.4f}", flush=True)

        per_step = calibrate(methods, ctx, args.calib_warm, args.calib_steps)
        loads.append(os.getloadavg()[0])
        steps = {m: max(1, int(args.budget_s / per_step[m])) for m in methods}
        print("calibration (median CPU s/step): " + ", ".join(f"{m} {per_step[m]:.3f} -> {steps[m]} steps"
              for m in methods), flush=True)  # fmt: skip

        tasks = (["random_init"] if args.random_init else []) + methods
        jobs = {task: steps.get(task, 0) for task in tasks}  # random_init trains for no step
        per_seed: dict[int, dict[str, dict]] = {}
        for seed in args.seeds:  # the same step counts for every seed: one calibration
            seed_args = argparse.Namespace(**{**vars(args), "seed": seed})
            ctx.args = seed_args
            if len(args.seeds) > 1:
                print(f"--- seed {seed}", flush=True)
            if args.jobs == 1:
                outcomes = ((task, run_task(ctx, task, n)) for task, n in jobs.items())
            else:  # one process per task at a time; CPU-second budgets make them independent of each other's load
                outcomes = run_in_processes(seed_args, run_dir, jobs)
            seed_results: dict[str, dict] = {}
            for task, stats in outcomes:
                if task in per_step:
                    stats["calib_cpu_s_per_step"] = round(per_step[task], 4)
                seed_results[task] = stats
                loads.append(os.getloadavg()[0])
                print(describe(task, stats), flush=True)
            per_seed[seed] = {t: seed_results[t] for t in tasks}  # in the order asked, not of completion
        ctx.args = args
        for task, stats in per_seed[args.seeds[0]].items():
            results[task] = stats  # the first seed's figures keep the single-seed layout

    ours = [m for m in ("amdim", "dim", "cmc") if m in results]
    summary = {
        "budget_cpu_s_per_method": args.budget_s,
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "load_avg_1min_seen": [round(v, 2) for v in loads],
        "batch": args.batch,
        "lr": args.lr,
        "simclr_lr": args.simclr_lr,
        "cmc_temperature": args.cmc_temperature,
        "simclr_temperature": args.simclr_temperature,
        "simclr_transform": {
            "gaussian_blur": args.simclr_blur,
            "min_scale": args.simclr_min_scale,
            "cj_strength": args.simclr_cj_strength,
        },
        "view_min_scale": args.view_min_scale,
        "seeds": args.seeds,
        "encoder": encoder_spec(args),
        "cmc_views": args.cmc_views,
        "probe_features": args.probe_features,
        "probe_grids": {f: PROBE_GRIDS[f] for f in args.probe_features if f in PROBE_GRIDS},
        "probe_search": args.probe_search,
        "pretrain_images": len(train_samples),
        "probe_train": len(probe_train),
        "probe_test": len(test_samples),
        "methods": results,
        "per_seed": {str(seed): r for seed, r in per_seed.items()},
        "over_seeds": over_seeds(per_seed, args.probe_features),
        "total_wall_s": round(time.perf_counter() - t_start, 1),
    }
    summary["verdict"] = verdict(per_seed, args.probe_features[0])
    for suffix in feature_suffixes(args.probe_features):
        key = f"linear_top1{suffix}"
        scored = [m for m in ours if key in results[m]]
        if not scored:
            continue
        best = max(scored, key=lambda m: results[m][key])
        summary[f"best_ours{suffix}"] = best
        summary[f"best_ours_top1{suffix}"] = results[best][key]
        summary[f"goal_0.90_met{suffix}"] = results[best][key] >= 0.90
        if key in results.get("simclr_lightly", {}):
            lightly_top1 = results["simclr_lightly"][key]
            summary[f"lightly_simclr_top1{suffix}"] = lightly_top1
            summary[f"ratio_best_ours_over_lightly{suffix}"] = round(results[best][key] / lightly_top1, 4)
            summary[f"best_ours_above_lightly{suffix}"] = results[best][key] > lightly_top1
    print_table(summary)
    print(json.dumps(summary))
    return summary


def mean_se(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard error of the mean (sample std / sqrt(n)); no standard error from one value."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None)


def over_seeds(per_seed: dict[int, dict[str, dict]], sets: list[str]) -> dict[str, dict]:
    """Per method and probe feature set: mean and standard error of top-1 over seeds, and of the gain over the
    untrained encoder (``random_init``) of the same seed on the same probe -- what pretraining buys."""
    out: dict[str, dict] = {}
    methods = next(iter(per_seed.values())).keys()
    for method in methods:
        entry: dict = {}
        for suffix in feature_suffixes(sets):
            key = f"linear_top1{suffix}"
            tops = [r[method][key] for r in per_seed.values() if key in r.get(method, {})]
            if not tops:
                continue
            mean, se = mean_se(tops)
            entry[f"top1{suffix}"] = {
                "mean": round(mean, 4),
                "se": None if se is None else round(se, 4),
                "n": len(tops),
            }
            gains = [r[method][key] - r["random_init"][key] for r in per_seed.values()
                     if key in r.get(method, {}) and key in r.get("random_init", {})]  # fmt: skip
            if gains and method != "random_init":
                mean, se = mean_se(gains)
                entry[f"gain_over_untrained{suffix}"] = {
                    "mean": round(mean, 4),
                    "se": None if se is None else round(se, 4),
                }
        out[method] = entry
    return out


def verdict(per_seed: dict[int, dict[str, dict]], headline: str) -> dict | None:
    """Best of ours (highest mean headline top-1 over seeds) against lightly's SimCLR, seed by seed (the same seed
    trains both: paired). Tie rule: when the mean per-seed margin lies within two standard errors of it (|mean| <=
    2 SE), the result is a tie; with one seed there is no standard error and the verdict is ``undetermined``."""
    key = "linear_top1"
    ours = [m for m in ("amdim", "dim", "cmc") if all(key in r.get(m, {}) for r in per_seed.values())]
    if not ours or not all(key in r.get("simclr_lightly", {}) for r in per_seed.values()):
        return None
    best = max(ours, key=lambda m: statistics.fmean(r[m][key] for r in per_seed.values()))
    margins = [r[best][key] - r["simclr_lightly"][key] for r in per_seed.values()]
    mean, se = mean_se(margins)
    if se is None:
        call = "undetermined (one seed: no standard error)"
    elif abs(mean) <= 2 * se:
        call = "tie"
    else:
        call = "ours above lightly" if mean > 0 else "lightly above ours"
    return {"probe": headline, "best_ours": best, "seeds": len(margins), "margin_mean": round(mean, 4),
            "margin_se": None if se is None else round(se, 4), "margins": [round(m, 4) for m in margins],
            "rule": "tie when |mean per-seed margin| <= 2 standard errors", "call": call}  # fmt: skip


def feature_suffixes(sets: list[str]) -> list[str]:
    """The key suffix of each probe feature set: none for the headline (the first), ``_<name>`` for the others."""
    return ["" if i == 0 else f"_{name}" for i, name in enumerate(sets)]


def fmt_mean_se(entry: dict, signed: bool = False) -> str:
    mean = f"{entry['mean']:+.4f}" if signed else f"{entry['mean']:.4f}"
    return mean if entry["se"] is None else f"{mean} ({entry['se']:.4f})"


def print_table(summary: dict) -> None:
    sets, suffixes = summary["probe_features"], feature_suffixes(summary["probe_features"])
    print()
    print(f"Fashion-MNIST linear probe ({summary['probe_train']} train / {summary['probe_test']} test), "
          f"budget {summary['budget_cpu_s_per_method']} CPU s per method, 1 thread, batch {summary['batch']}; "
          f"seed {summary['seeds'][0]} below")  # fmt: skip
    print(f"{'method':<16}" + "".join(f"{'linear (' + s + ')':>16}" for s in sets)
          + f"{'steps':>7}{'CPU s':>8}{'wall s':>8}{'samples/CPU s':>15}")  # fmt: skip
    for name, r in summary["methods"].items():
        cells = "".join(f"{r['linear_top1' + x]:>16.4f}" if "linear_top1" + x in r else f"{'-':>16}" for x in suffixes)
        print(f"{name:<16}{cells}{r.get('steps', '-'):>7}{r.get('cpu_s', '-'):>8}"
              f"{r.get('wall_s', '-'):>8}{r.get('samples_per_cpu_s', '-'):>15}")  # fmt: skip
    if len(summary["seeds"]) > 1 or "random_init" in summary["methods"]:
        print(
            f"\nover seeds {summary['seeds']}: mean top-1 (standard error); gain over the untrained encoder, same probe"
        )
        print(f"{'method':<16}" + "".join(f"{'linear (' + s + ')':>20}{'gain':>18}" for s in sets))
        for name, entry in summary["over_seeds"].items():
            cells = ""
            for x in suffixes:
                top, gain = entry.get("top1" + x), entry.get("gain_over_untrained" + x)
                cells += f"{fmt_mean_se(top):>20}" if top else f"{'-':>20}"
                cells += f"{fmt_mean_se(gain, signed=True):>18}" if gain else f"{'-':>18}"
            print(f"{name:<16}{cells}")
    if summary.get("verdict"):
        v = summary["verdict"]
        se = "n/a" if v["margin_se"] is None else f"{v['margin_se']:.4f}"
        print(f"verdict [{v['probe']}]: {v['best_ours']} - lightly SimCLR = {v['margin_mean']:+.4f} (SE {se}, "
              f"{v['seeds']} seeds, margins {v['margins']}): {v['call']} ({v['rule']})")  # fmt: skip
    for suffix, layer in zip(suffixes, sets):
        if f"ratio_best_ours_over_lightly{suffix}" in summary:
            print(f"[{layer}] best of ours: {summary['best_ours' + suffix]} {summary['best_ours_top1' + suffix]:.4f}; "
                  f"lightly SimCLR {summary['lightly_simclr_top1' + suffix]:.4f}; "
                  f"ratio {summary['ratio_best_ours_over_lightly' + suffix]:.4f}")  # fmt: skip
    print(f"load average (1 min) seen: {summary['load_avg_1min_seen']}")


if __name__ == "__main__":
    main()
