"""Run by tests/objectives/test_lightly_loss.py under ``torchrun --standalone --nproc_per_node 2``.

The ``lightly`` objective over a cross-modal pair (two MLP encoders with different input sizes), for several lightly
losses with ``gather_distributed`` at its default (True). Each process first runs ONE-process training steps on the
whole global batch (no process group yet), then joins the gloo group and runs the same steps under DDP on its half.
It saves, per run and step, the loss and the parameter gradients (after DDP's averaging) to ``OUT/rank<r>.pt``.

Barlow Twins is special: lightly standardises each process's rows with that process's own batch statistics and
averages the cross-correlation matrices, so its one-process reference (``barlow_per_chunk``) standardises each half
of the global batch on its own; the plain global-batch loss is saved too, to show that it differs.
"""

import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from multiview.encoders.features import Features
from multiview.objectives import create

GLOBAL_BATCH, STEPS, DIM = 16, 2, 8
IN_DIMS = {"a": 12, "b": 6}
LOSSES = {
    "ntxent": ("NTXentLoss", {"temperature": 0.2}),
    "dcl": ("DCLLoss", {"temperature": 0.3}),
    "dclw": ("DCLWLoss", {"temperature": 0.3, "sigma": 0.4}),
    "directclr": ("DirectCLRLoss", {"loss_dim": 5}),
    "vicreg": ("VICRegLoss", {}),
    "negcos": ("NegativeCosineSimilarity", {}),
    "barlow": ("BarlowTwinsLoss", {"lambda_param": 0.01}),
}


def barlow_per_chunk(z_a: torch.Tensor, z_b: torch.Tensor, chunks: int, lambda_param: float) -> torch.Tensor:
    """Barlow Twins with each of ``chunks`` row blocks standardised on its own and the cross-correlations averaged:
    what lightly's ``BarlowTwinsLoss(gather_distributed=True)`` computes over ``chunks`` processes."""

    def standardise(z):
        return F.batch_norm(z, None, None, training=True)

    c = torch.stack(
        [standardise(a).T @ standardise(b) / a.shape[0] for a, b in zip(z_a.chunk(chunks), z_b.chunk(chunks))]
    ).mean(0)
    on_diagonal = (torch.diagonal(c) - 1).pow(2).sum()
    off_diagonal = (c - torch.diag(torch.diagonal(c))).pow(2).sum()
    return on_diagonal + lambda_param * off_diagonal


class Model(nn.Module):
    """Two encoders (no batch norm: DDP would keep per-process statistics) and the objective."""

    def __init__(self, loss: str, loss_args: dict):
        super().__init__()
        torch.manual_seed(0)
        self.encoders = nn.ModuleDict(
            {v: nn.Sequential(nn.Linear(d, 16), nn.ReLU(), nn.Linear(16, DIM)) for v, d in IN_DIMS.items()}
        )
        self.objective = create("lightly", loss=loss, loss_args=loss_args, views=["a", "b"])

    def forward(self, views: dict, reference=None) -> torch.Tensor:
        features = {name: Features(self.encoders[name](x)) for name, x in views.items()}
        if reference is not None:
            return reference(features["a"].global_, features["b"].global_)
        return self.objective(features).loss


def data():
    g = torch.Generator().manual_seed(1)
    return [{v: torch.randn(GLOBAL_BATCH, d, generator=g) for v, d in IN_DIMS.items()} for _ in range(STEPS)]


def train(kind: str, rows: slice, wrap: bool, reference=None) -> dict:
    model = core = Model(*LOSSES[kind])
    if wrap:
        model = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    record = {"loss": [], "grads": []}
    for views in data():
        loss = model({k: v[rows] for k, v in views.items()}, reference)
        optimizer.zero_grad()
        loss.backward()
        record["loss"].append(loss.detach())
        record["grads"].append({n: p.grad.clone() for n, p in core.named_parameters()})
        optimizer.step()
    return record


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    single = {kind: train(kind, slice(None), wrap=False) for kind in LOSSES}
    single["barlow_per_chunk"] = train(
        "barlow", slice(None), wrap=False, reference=lambda a, b: barlow_per_chunk(a, b, 2, 0.01)
    )
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    half = GLOBAL_BATCH // world
    rows = slice(rank * half, (rank + 1) * half)
    ddp = {kind: train(kind, rows, wrap=True) for kind in LOSSES}
    torch.save({"single": single, "ddp": ddp, "world": world}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
