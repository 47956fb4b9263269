"""Run logs: metrics as JSON lines (and TensorBoard events when it is installed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch


def to_number(value) -> float:
    return float(value.detach().float().item()) if isinstance(value, torch.Tensor) else float(value)


class MetricsLogger:
    """Appends one JSON object per logged step to ``<run>/metrics.jsonl``; only the main process writes."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool = False):
        self.enabled = enabled
        self.path = Path(run_dir) / "metrics.jsonl"
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
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


def read_metrics(path: str | Path) -> list[dict]:
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]
