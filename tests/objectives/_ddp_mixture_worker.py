"""Run by tests/objectives/test_amdim_mixture.py under ``torchrun --standalone --nproc_per_node 2``.

Each process runs STEPS steps of the amdim_mixture objective on leaf features: first as ONE process on the whole
global batch (no process group: the gathers are identities), then in the gloo group on its half of the batch.
Between steps the mixture head takes an SGD step with its gradients averaged over processes, as DDP would average
them. Saved per run and step to ``OUT/rank<r>.pt``: the loss, the head's gradients (averaged) and the features'
gradients (this process's rows; they are NOT averaged, so under 2 processes they are twice the one-process ones:
the one-process loss is the mean of the two processes' losses).
"""

import os
import sys

import torch
import torch.distributed as dist

from multiview.encoders.features import Features
from multiview.objectives import create

GLOBAL_BATCH, STEPS, DIM, K = 8, 2, 8, 3
SPEC = dict(views=("view0", "view1"), feature_dim=DIM, n_components=K, hidden=6, seed=3, alpha=0.1, sharpness=2.0)


def data() -> list[dict[str, dict[str, torch.Tensor]]]:
    """Per step: view -> {"global": [B, D], "r5": [B, D, 5, 5], "r7": [B, D, 7, 7]} for the global batch."""
    g = torch.Generator().manual_seed(1)
    shapes = {"global": (DIM,), "r5": (DIM, 5, 5), "r7": (DIM, 7, 7)}
    return [
        {v: {k: torch.randn(GLOBAL_BATCH, *s, generator=g) for k, s in shapes.items()} for v in ("view0", "view1")}
        for _ in range(STEPS)
    ]


def build():
    torch.manual_seed(0)
    objective = create("amdim_mixture", **SPEC)
    with torch.no_grad():  # a last layer away from zero: the components differ from the first step on
        objective.head.w2.normal_(0, 0.3)
        objective.head.b2.normal_(0, 0.3)
    return objective


def train(rows: slice, world: int) -> dict:
    objective = build()
    optimizer = torch.optim.SGD(objective.parameters(), lr=0.5)
    record = {"loss": [], "head_grads": [], "feature_grads": []}
    for step_data in data():
        leaves = {v: {k: t[rows].clone().requires_grad_(True) for k, t in m.items()} for v, m in step_data.items()}
        features = {v: Features(m["global"], {"r5": m["r5"], "r7": m["r7"]}) for v, m in leaves.items()}
        loss = objective(features, {}).loss
        optimizer.zero_grad()
        loss.backward()
        for p in objective.parameters():  # what DDP does to the head's gradients
            if world > 1:
                dist.all_reduce(p.grad)
                p.grad /= world
        record["loss"].append(loss.detach())
        record["head_grads"].append({n: p.grad.clone() for n, p in objective.named_parameters()})
        record["feature_grads"].append({f"{v}.{k}": t.grad.clone() for v, m in leaves.items() for k, t in m.items()})
        optimizer.step()
    return record


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    single = train(slice(None), world=1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    half = GLOBAL_BATCH // world
    ddp = train(slice(rank * half, (rank + 1) * half), world)
    torch.save({"single": single, "ddp": ddp, "world": world, "rank": rank}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
