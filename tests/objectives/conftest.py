import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def run_two_processes(worker: Path, out: Path) -> list[dict]:
    """Run ``worker OUT`` under ``torchrun --standalone --nproc_per_node 2`` (gloo, one thread each, bounded) and
    load what each rank saved as ``OUT/rank<r>.pt``."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(worker),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seed, and run on one thread: these tensors are small, and on a busy 2-core machine two threads per op
    spend more time waiting for each other than computing (seen: 0.3 s -> 8 s). Restored afterwards."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
