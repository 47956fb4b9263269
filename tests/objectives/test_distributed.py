"""A real 2-process CPU run (torchrun, gloo) of AMDIM and CMC (in-batch, memory bank, pair heads).

What is checked, per training step (2 steps, SGD in between):
- the MEAN of the per-process losses equals the one-process loss on the global batch (every loss term is a mean
  over the process's rows, gathered negatives included);
- the parameter gradients after DDP's averaging equal the one-process gradients (1e-5 relative);
- CMC's memory bank, log Z and AMDIM's step counter are identical on both processes and equal the one-process
  ones (the bank update uses the gathered vectors and indices).
"""

import shutil
import sys
from pathlib import Path

import pytest
import torch

from .conftest import run_two_processes

WORKER = Path(__file__).with_name("_ddp_worker.py")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    if shutil.which("torchrun") is None and not sys.executable:
        pytest.skip("torchrun not available")
    return run_two_processes(WORKER, tmp_path_factory.mktemp("ddp"))


@pytest.mark.distributed
@pytest.mark.parametrize("kind", ["amdim", "cmc", "cmc_bank", "cmc_pair_heads"])
def test_two_processes_match_one(results, kind):
    single = results[0]["single"][kind]
    ranks = [r["ddp"][kind] for r in results]
    assert results[0]["world"] == 2
    for step in range(len(single["loss"])):
        mean_loss = sum(r["loss"][step] for r in ranks) / 2
        torch.testing.assert_close(mean_loss, single["loss"][step], rtol=1e-5, atol=1e-6)
        assert not torch.equal(ranks[0]["loss"][step], ranks[1]["loss"][step])  # the halves differ
        for name, want in single["grads"][step].items():
            for r in ranks:
                torch.testing.assert_close(r["grads"][step][name], want, rtol=1e-5, atol=1e-6, msg=f"{kind} {name}")
        for name, want in single["buffers"][step].items():
            for r in ranks:
                torch.testing.assert_close(r["buffers"][step][name], want, rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.distributed
def test_bank_moves_between_steps(results):
    """Guard against a vacuous bank comparison: the bank really changes after each step."""
    buffers = results[0]["single"]["cmc_bank"]["buffers"]
    assert not torch.equal(buffers[0]["bank"], buffers[1]["bank"])
