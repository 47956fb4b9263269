"""Cross-process helpers for in-batch negatives.

``accelerator.gather`` (and ``torch.distributed.all_gather``) drop gradients, so a contrastive loss that uses
other processes' samples as negatives would only push gradients into the local half of each pair.
:func:`gather_with_grad` is an all-gather whose backward sums the incoming gradient over every process and hands
each one its own slice, so after DDP averages the parameter gradients they equal those of one process that saw
the whole global batch. Everything here is the identity with one process or no process group.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from multiview.core.dist import group_rank_and_world as rank_and_world  # noqa: F401 (re-exported)
from multiview.core.dist import is_distributed


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward all-reduces (sums) the gradient and keeps the local slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        rank, world = rank_and_world()
        ctx.rank, ctx.size = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # Every process's loss depends on our rows: their gradients must all reach our encoder.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.size
        return grad[start : start + ctx.size]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` on each of W processes -> ``[W * B, ...]`` (rank order), differentiable.

    Every process must pass the same shape. Identity (same tensor) with one process.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` -> ``[W * B, ...]`` without gradients (memory-bank updates, indices)."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over processes (a copy); ``x`` itself with one process."""
    if not is_distributed():
        return x
    x = x.clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / dist.get_world_size()


def local_offset(batch_size: int) -> int:
    """Index of this process's first row in a gathered ``[W * B, ...]`` tensor."""
    rank, _ = rank_and_world()
    return rank * batch_size
