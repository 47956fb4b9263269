"""Run by tests/objectives/test_distributed.py under ``torchrun --standalone --nproc_per_node 2``.

Each process first runs ONE-process training steps on the whole global batch (no process group yet: the
gathers are identities), then joins the gloo group and runs the same steps under DDP on its half of the batch.
It saves, per run and step, the loss, the parameter gradients (after DDP's averaging) and the objective's
buffers (CMC's bank) to ``OUT/rank<r>.pt``; the test compares them.
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

GLOBAL_BATCH, STEPS, BANK = 8, 2, 40
OBJECTIVES = {
    "amdim": dict(name="amdim", views=("view0", "view1"), seed=3),
    "cmc": dict(name="cmc", views=("view0", "view1"), temperature=0.2),
    "cmc_bank": dict(
        name="cmc", views=("view0", "view1"), negatives="bank", bank_size=BANK, feature_dim=8, num_negatives=16, seed=5
    ),
    "cmc_pair_heads": dict(name="cmc", views=("view0", "view1"), pair_heads=True, feature_dim=8, head_dim=5),
}


class TinyEncoder(nn.Module):
    """``[B, 3, 11, 11]`` -> r7 ``[B, 8, 7, 7]``, r5 ``[B, 8, 5, 5]``, global ``[B, 8]``.

    No batch norm: DDP would keep per-process statistics, which a one-process run cannot reproduce.
    """

    def __init__(self, d: int = 8):
        super().__init__()
        self.c7, self.c5, self.c1 = nn.Conv2d(3, d, 5), nn.Conv2d(d, d, 3), nn.Conv2d(d, d, 5)

    def forward(self, x: torch.Tensor) -> Features:
        r7 = F.relu(self.c7(x))
        r5 = F.relu(self.c5(r7))
        return Features(self.c1(r5).flatten(1), {"r5": r5, "r7": r7})


class Model(nn.Module):
    def __init__(self, spec: dict):
        super().__init__()
        torch.manual_seed(0)
        self.encoders = nn.ModuleDict({"view0": TinyEncoder(), "view1": TinyEncoder()})
        self.objective = create(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
        self.last: dict = {}

    def forward(self, views: dict, batch: dict) -> torch.Tensor:
        features = {name: self.encoders[name](x) for name, x in views.items()}
        self.last = {name: f.detach() for name, f in features.items()}
        return self.objective(features, batch).loss


def data():
    g = torch.Generator().manual_seed(1)
    views = [{v: torch.randn(GLOBAL_BATCH, 3, 11, 11, generator=g) for v in ("view0", "view1")} for _ in range(STEPS)]
    index = [torch.randperm(BANK, generator=g)[:GLOBAL_BATCH] for _ in range(STEPS)]
    return views, index


def train(spec: dict, rows: slice, wrap: bool) -> dict:
    model = Model(spec)
    core = model
    if wrap:
        # broadcast_buffers=False: each process must keep the same memory bank by itself.
        model = DistributedDataParallel(model, broadcast_buffers=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    views, index = data()
    record = {"loss": [], "grads": [], "buffers": []}
    for step in range(STEPS):
        batch = {"index": index[step][rows]}
        loss = model({k: v[rows] for k, v in views[step].items()}, batch)
        optimizer.zero_grad()
        loss.backward()
        record["loss"].append(loss.detach())
        record["grads"].append({n: p.grad.clone() for n, p in core.named_parameters()})
        optimizer.step()
        core.objective.after_step(core.last, batch)
        record["buffers"].append({n: b.clone() for n, b in core.objective.named_buffers()})
    return record


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    single = {kind: train(spec, slice(None), wrap=False) for kind, spec in OBJECTIVES.items()}
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    half = GLOBAL_BATCH // world
    rows = slice(rank * half, (rank + 1) * half)
    ddp = {kind: train(spec, rows, wrap=True) for kind, spec in OBJECTIVES.items()}
    torch.save({"single": single, "ddp": ddp, "world": world}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
