"""Run logs: metrics as JSON lines (and TensorBoard events when it is installed)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch


def to_number(value) -> float:
    return float(value.detach().float().item()) if isinstance(value, torch.Tensor) else float(value)


class MetricsLogger:
    """Appends one JSON object per logged step to ``<run>/metrics.jsonl``; only the main process writes.

    ``start_step``: the step the run continues from (a resumed checkpoint's, 0 for a fresh run). Records past it --
    logged after that checkpoint by a run that then died -- are dropped first, so every step appears once.
    """

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool = False, start_step: int = 0):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.writer = None
        if enabled:
            truncate_metrics(self.path, start_step)
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=start_step + 1)
            except ImportError:
                print(
                    "log.tensorboard: tensorboard is not installed (pip install 'multiview[tensorboard]'); "
                    "writing JSONL only"
                )

    def log(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        record = {
            "step": step,
            "time": round(time.time(), 3),
            **{k: to_number(v) for k, v in metrics.items()},
        }
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key not in ("step", "time"):
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the records of ``path`` up to ``last_step`` (and drop a line torn by a crash mid-write); the file is
    replaced atomically, so a crash now leaves the old log or the new one."""
    if not path.is_file():
        return
    kept, dropped = [], False
    with path.open() as f:
        for line in f:
            try:
                record = json.loads(line)
                keep = isinstance(record, dict) and int(record["step"]) <= last_step
            except (ValueError, KeyError, TypeError):
                keep = False
            if keep:
                kept.append(line if line.endswith("\n") else line + "\n")
            else:
                dropped = True
    if not dropped:
        return
    partial = path.with_name(path.name + ".partial")
    with partial.open("w") as f:
        f.writelines(kept)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def read_metrics(path: str | Path) -> list[dict]:
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]
