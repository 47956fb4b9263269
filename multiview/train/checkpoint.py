"""Checkpoints: save, keep the last K, resume, and load trained encoders back for evaluation.

A checkpoint is a folder ``<run>/checkpoints/step_000100/`` holding Accelerate's state (model, optimiser, RNG
states of every process, scaler, registered objects: scheduler, train state with the data-stream position,
auxiliary optimisers) plus the resolved ``recipe.yaml``. It is written under a temporary name and renamed when
complete, so a crash mid-write never leaves a folder that looks finished.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from multiview.train.recipe import Recipe, dump_recipe

_STEP_DIR = re.compile(r"^step_(\d+)$")


@dataclass
class TrainState:
    """The loop's position: optimiser steps done, epoch, and batches of that epoch already consumed."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    # every process's stream.state_dict() (worker positions), gathered when a checkpoint is saved: Accelerate
    # saves this object from the main process only, and each process resumes from its own entry
    streams: dict = field(default_factory=dict)

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batches_in_epoch": self.batches_in_epoch,
            "streams": self.streams,
        }

    def load_state_dict(self, state: dict) -> None:
        self.step, self.epoch, self.batches_in_epoch = (
            state["step"],
            state["epoch"],
            state["batches_in_epoch"],
        )
        self.streams = dict(state.get("streams") or {})  # absent in checkpoints written before streaming


def list_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not checkpoint_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in checkpoint_dir.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def find_checkpoint(ref: str | Path, run_dir: Path) -> Path:
    """``latest`` (the newest of ``run_dir``), a run folder (its newest), or a checkpoint folder."""
    if str(ref) == "latest":
        found = list_checkpoints(run_dir / "checkpoints")
        if not found:
            raise FileNotFoundError(f"--resume latest: no checkpoint in {run_dir / 'checkpoints'}")
        return found[-1]
    path = Path(ref)
    if (path / "checkpoints").is_dir():
        return find_checkpoint("latest", path)
    if not (path / "recipe.yaml").is_file():
        raise FileNotFoundError(f"not a multiview checkpoint (no recipe.yaml): {path}")
    return path


class CheckpointManager:
    """Saves ``step_XXXXXX`` folders through Accelerate and keeps the newest ``recipe.checkpoint.keep``."""

    def __init__(self, checkpoint_dir: Path, recipe: Recipe, accelerator, before_save=None):
        """``before_save()``: called in every process right before a save (e.g. to gather per-process state)."""
        self.dir = Path(checkpoint_dir)
        self.recipe = recipe
        self.accelerator = accelerator
        self.before_save = before_save

    def register(self, *objects) -> None:
        for obj in objects:
            self.accelerator.register_for_checkpointing(obj)

    def latest(self) -> Path | None:
        found = list_checkpoints(self.dir)
        return found[-1] if found else None

    def save(self, step: int) -> Path:
        acc = self.accelerator
        if self.before_save is not None:
            self.before_save()
        final = self.dir / f"step_{step:06d}"
        partial = self.dir / f".step_{step:06d}.partial"
        if acc.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(partial), safe_serialization=True)
        acc.wait_for_everyone()
        if acc.is_main_process:
            dump_recipe(self.recipe, partial / "recipe.yaml")
            shutil.rmtree(final, ignore_errors=True)
            partial.rename(final)
            for old in list_checkpoints(self.dir)[: -self.recipe.checkpoint.keep]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def load(self, path: Path) -> None:
        self.accelerator.load_state(str(path))


def model_state_file(checkpoint: Path) -> Path:
    """The model weights inside a checkpoint folder (Accelerate names the first model ``model.safetensors``)."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (checkpoint / name).is_file():
            return checkpoint / name
    raise FileNotFoundError(f"no model weights (model.safetensors) in checkpoint {checkpoint}")


def load_model_state(checkpoint: Path) -> dict:
    path = model_state_file(checkpoint)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
