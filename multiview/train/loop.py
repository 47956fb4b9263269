"""The pretraining loop: recipe -> Accelerate -> checkpoints, metrics, exported encoders.

One process on CPU or GPU, or many through ``accelerate launch`` / ``torchrun``. The data layer splits samples by
rank and worker itself (the WebDataset loader is never ``prepare()``-d, see docs/training.md).
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from multiview.core.threads import configure_threads, local_processes
from multiview.train.build import build_model, build_views
from multiview.train.checkpoint import (
    CheckpointManager,
    TrainState,
    find_checkpoint,
)
from multiview.train.data import build_loader, move_to_device, split_batch
from multiview.train.metrics_log import MetricsLogger, to_number
from multiview.train.optim import build_optimizer, build_scheduler
from multiview.train.recipe import Recipe, dump_recipe
from multiview.train.sync_bn import convert_global_batchnorm
from multiview.train.worker_signals import quiet_workers

log = logging.getLogger("multiview.train")


class TrainingDiverged(RuntimeError):
    """A loss became NaN or inf; the message names the step and the objective."""


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM arrived; a checkpoint was saved before stopping."""

    def __init__(self, signum: int, checkpoint: Path | None):
        self.signum = signum
        self.checkpoint = checkpoint
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name}; checkpoint saved at {checkpoint} (resume with --resume)")


@dataclass
class RunSummary:
    run_dir: Path
    steps: int
    final_checkpoint: Path | None
    last_metrics: dict = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)  # the logged total loss per optimiser step (rank 0)
    main_process: bool = True  # False on the other processes of a distributed run (they print nothing)


def make_accelerator(recipe: Recipe) -> Accelerator:
    cpu = recipe.train.device == "cpu" or (recipe.train.device == "auto" and not torch.cuda.is_available())
    return Accelerator(
        cpu=cpu,
        mixed_precision=recipe.train.precision,
        gradient_accumulation_steps=recipe.train.grad_accum,
        step_scheduler_with_optimizer=False,
    )


def per_process_batch(recipe: Recipe, world_size: int) -> int:
    """train.batch_size is the global batch: split over processes and accumulation steps."""
    parts = world_size * recipe.train.grad_accum
    if recipe.train.batch_size % parts:
        raise ValueError(
            f"train.batch_size={recipe.train.batch_size} is not divisible by processes x grad_accum "
            f"= {world_size} x {recipe.train.grad_accum}"
        )
    return recipe.train.batch_size // parts


@contextmanager
def stop_signals() -> Iterator[dict]:
    """Turn SIGINT/SIGTERM into a flag the loop checks after each step, so it can save before exiting."""
    flag: dict = {"signum": None}
    previous = {}

    def handler(signum, _frame):
        flag["signum"] = signum

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Trainer:
    """Runs a recipe. ``Trainer(recipe).fit(resume=None)``; see :func:`pretrain`."""

    def __init__(self, recipe: Recipe, run_dir: str | Path | None = None):
        self.recipe = recipe
        self.run_dir = Path(run_dir) if run_dir else recipe.run_dir
        self.accelerator = make_accelerator(recipe)
        # torch threads from the CPUs this process may use (affinity, cgroup quota) shared among the local
        # processes and their loader workers; train.threads, OMP_NUM_THREADS or the user's set_num_threads win
        self.thread_plan = configure_threads(
            recipe.train.threads,
            processes=local_processes(default=self.accelerator.num_processes),
            workers=recipe.data.num_workers,
        )
        if self.accelerator.is_main_process:
            log.info(self.thread_plan.line())
        set_seed(recipe.train.seed)
        views = build_views(recipe)
        self.view_names = tuple(views.view_names)
        self.model = build_model(recipe, views)
        if self.accelerator.num_processes > 1 and recipe.train.sync_bn:
            # batch statistics over the global batch, so N processes train as one (torch's SyncBatchNorm refuses CPU)
            self.model = convert_global_batchnorm(self.model)
        self._setup_optimisers()
        self.micro_batch = per_process_batch(recipe, self.accelerator.num_processes)
        self.loader, self.stream, _ = build_loader(
            recipe, self.micro_batch, self.accelerator.process_index, self.accelerator.num_processes, views
        )
        quiet_workers(self.loader)  # a signal to the process group stops the run here, where it can save
        self.batches_per_epoch = len(self.loader)
        self.steps_per_epoch = self.batches_per_epoch // recipe.train.grad_accum
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"an epoch has {self.batches_per_epoch} batches per process, fewer than train.grad_accum="
                f"{recipe.train.grad_accum}: lower train.batch_size or raise data.epoch_size"
            )
        self.total_steps = recipe.train.steps or recipe.train.epochs * self.steps_per_epoch
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, recipe.schedule)
        self.state = TrainState()
        self.checkpoints = CheckpointManager(
            self.run_dir / "checkpoints", recipe, self.accelerator, before_save=self._gather_stream_states
        )
        self.checkpoints.register(self.scheduler, self.state, *self.aux_optimizers.values())

    def _setup_optimisers(self) -> None:
        aux_names = self.model.auxiliary_parameter_names()
        if aux_names and self.accelerator.num_processes > 1:
            # Extra players have their own optimisers and gradient all-reduce; DDP must not touch them.
            from torch.nn.parallel import DistributedDataParallel

            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.model, sorted(aux_names))
        main_params = [p for n, p in self.model.named_parameters() if n not in aux_names]
        optimizer = build_optimizer(main_params, self.recipe.optimizer)
        self.aux_steps = self.model.auxiliary_steps()
        self.model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        self._core = None
        self.aux_optimizers = {
            name: torch.optim.Adam(step.module.parameters(), lr=step.lr, betas=tuple(step.betas))
            for name, step in self.aux_steps
        }

    @property
    def core(self):
        if self._core is None:
            self._core = self.accelerator.unwrap_model(self.model)
        return self._core

    # ------------------------------------------------------------------ steps

    def _check_finite(self, losses: Mapping[str, torch.Tensor], step: int) -> None:
        # one host sync per step: every loss in one tensor, names worked out only when something is wrong
        finite = torch.isfinite(torch.stack([loss.detach().float() for loss in losses.values()])).all()
        if self.accelerator.num_processes > 1:  # every process must stop together, or the others hang
            finite = (
                self.accelerator.reduce(finite.float().reshape(1), reduction="sum") == self.accelerator.num_processes
            )
        if not bool(finite):
            bad = [name for name, loss in losses.items() if not torch.isfinite(loss.detach()).all()]
            values = {name: to_number(loss) for name, loss in losses.items()}
            culprit = ", ".join(bad) or "(on another process)"
            raise TrainingDiverged(
                f"non-finite loss at step {step}: objective {culprit} (losses: {values}); the last good checkpoint "
                f"is {self.checkpoints.latest()} -- lower the learning rate, enable train.grad_clip or check the data"
            )

    def _aux_update(self, output, batch: Mapping) -> dict[str, torch.Tensor]:
        """One update of every extra player on detached features; gradients averaged over processes."""
        detached = {name: f.detach() for name, f in output.features.items()}
        metrics = {}
        for name, step in self.aux_steps:
            optimizer = self.aux_optimizers[name]
            optimizer.zero_grad(set_to_none=True)
            with self.accelerator.autocast():
                loss = step.loss_fn(detached, batch)
            if not torch.isfinite(loss.detach()):
                raise TrainingDiverged(f"non-finite loss at step {self.state.step + 1}: auxiliary step {name}")
            loss.backward()
            if self.accelerator.num_processes > 1:
                for p in step.module.parameters():
                    if p.grad is not None:
                        p.grad = self.accelerator.reduce(p.grad, reduction="mean")
            optimizer.step()
            metrics[f"{name}/loss"] = loss.detach()
        return metrics

    def _micro_step(self, batch: Mapping) -> tuple:
        views, batch = split_batch(move_to_device(batch, self.accelerator.device), self.view_names)
        # Gradients are cleared when a micro-step opens an accumulation cycle (the wrapped optimizer's zero_grad
        # acts only while the previous micro-step synced), not after the step: clearing them after the step
        # made the following forward and backward run ~5 % slower on CPU (allocator churn; benchmarks/overhead.py).
        self.optimizer.zero_grad(set_to_none=True)
        with self.accelerator.accumulate(self.model):
            with self.accelerator.autocast():
                output = self.model(views, batch)
            self._check_finite(output.losses, self.state.step + 1)  # the step in flight, as the log numbers it
            self.accelerator.backward(output.loss)
            if self.accelerator.sync_gradients and self.recipe.train.grad_clip:
                self.accelerator.clip_grad_norm_(self.model.parameters(), self.recipe.train.grad_clip)
            self.optimizer.step()
        aux_metrics = self._aux_update(output, batch) if self.aux_steps else {}
        self.core.after_step(output, batch)
        return output, aux_metrics

    # ------------------------------------------------------------------ loop

    def _batches(self) -> Iterator[Mapping]:
        """Batches from the current stream position on, epoch after epoch."""
        while True:
            position = {"epoch": self.state.epoch, "batches": self.state.batches_in_epoch}
            saved = self.state.streams.get(str(self.accelerator.process_index), {})  # this process's, on resume
            self.stream.load_state_dict({**saved, **position})
            self.state.streams = {}
            for batch in self.loader:
                self.state.batches_in_epoch += 1
                self._stream_state = self.stream.state_dict()  # worker positions: what an exact resume needs
                yield batch
            self.state.epoch += 1
            self.state.batches_in_epoch = 0
            self._stream_state = {}

    def _gather_stream_states(self) -> None:
        """Every process's stream position into the train state (saved by the main process alone)."""
        from accelerate.utils import gather_object

        states = gather_object([getattr(self, "_stream_state", {})])
        self.state.streams = {str(rank): state for rank, state in enumerate(states)}

    def _log_record(self, output, aux_metrics, samples_per_s: float) -> dict:
        record = {
            "loss": output.loss.detach(),
            "lr": self.scheduler.get_last_lr()[0],
            "samples_per_s": samples_per_s,
        }
        record.update({f"{name}/loss": loss.detach() for name, loss in output.losses.items()})
        record.update({k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in output.metrics.items()})
        record.update(aux_metrics)
        if self.accelerator.num_processes > 1:  # average across processes (metrics are per-rank estimates)
            keys = sorted(record)
            values = torch.tensor([to_number(record[k]) for k in keys], device=self.accelerator.device)
            values = self.accelerator.reduce(values, reduction="mean")
            record = dict(zip(keys, values.tolist()))
        record["epoch"] = self.state.epoch
        return record

    def fit(self, resume: str | Path | None = None, stop_after: int | None = None) -> RunSummary:
        """Train to the recipe's end (or ``stop_after`` optimiser steps, for tests of resuming)."""
        recipe, acc = self.recipe, self.accelerator
        if resume is not None:
            self.checkpoints.load(find_checkpoint(resume, self.run_dir))
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            dump_recipe(recipe, self.run_dir / "recipe.yaml")
        # the log continues from the checkpoint: records past its step (written before a crash) are dropped
        logger = MetricsLogger(self.run_dir, acc.is_main_process, recipe.log.tensorboard, start_step=self.state.step)
        progress = tqdm(
            total=self.total_steps,
            initial=self.state.step,
            disable=not (acc.is_main_process and recipe.log.progress),
            desc=recipe.name,
            dynamic_ncols=True,
        )
        summary = RunSummary(self.run_dir, self.state.step, None, main_process=acc.is_main_process)
        last_step_saved = None
        batches = self._batches()
        tick, samples = time.perf_counter(), 0
        with stop_signals() as stop:
            while self.state.step < self.total_steps and (stop_after is None or self.state.step < stop_after):
                for _ in range(recipe.train.grad_accum):
                    output, aux_metrics = self._micro_step(next(batches))
                self.scheduler.step()
                self.state.step += 1
                samples += recipe.train.batch_size
                progress.update(1)
                if self.state.step % recipe.log.every == 0 or self.state.step == self.total_steps:
                    rate = samples / max(time.perf_counter() - tick, 1e-9)
                    record = self._log_record(output, aux_metrics, rate)
                    logger.log(self.state.step, record)
                    summary.losses.append(to_number(record["loss"]))
                    summary.last_metrics = {k: to_number(v) for k, v in record.items()}
                    progress.set_postfix(
                        loss=f"{to_number(record['loss']):.4f}", lr=f"{record['lr']:.2e}", sps=f"{rate:.0f}"
                    )
                    tick, samples = time.perf_counter(), 0
                every = recipe.checkpoint.every
                if every and self.state.step % every == 0:
                    summary.final_checkpoint = self.checkpoints.save(self.state.step)
                    last_step_saved = self.state.step
                if stop["signum"] is not None:
                    path = (
                        self.checkpoints.save(self.state.step)
                        if last_step_saved != self.state.step
                        else (summary.final_checkpoint)
                    )
                    progress.close()
                    raise TrainingInterrupted(stop["signum"], path)
        progress.close()
        logger.close()
        if last_step_saved != self.state.step:
            summary.final_checkpoint = self.checkpoints.save(self.state.step)
        summary.steps = self.state.step
        return summary


def pretrain(
    recipe: Recipe,
    resume: str | Path | None = None,
    run_dir: str | Path | None = None,
    stop_after: int | None = None,
) -> RunSummary:
    """Run a recipe end to end; returns where the run lives and its last metrics."""
    return Trainer(recipe, run_dir).fit(resume=resume, stop_after=stop_after)
