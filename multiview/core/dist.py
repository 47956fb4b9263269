"""Where this process stands among the processes of a run, in one place: :func:`rank_and_world` for planning
(the data layer's split, the main process's jobs: the process group, else the launcher's RANK / WORLD_SIZE, else
one process) and :func:`group_rank_and_world` for collectives (the process group, else one process)."""

from __future__ import annotations

import os

import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def group_rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group; ``(0, 1)`` without one -- what collective code
    (gathers, offsets into gathered tensors) must use: outside a group every tensor is this process's alone, even
    under a launcher that set RANK."""
    if not is_distributed():
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def rank_and_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """``(rank, world_size)``: the explicit values where given, else the process group's, else env RANK /
    WORLD_SIZE (a launcher sets them before the group exists), else ``(0, 1)``. Raises ValueError when they do
    not describe a place (rank outside ``[0, world_size)``)."""
    if rank is None or world_size is None:
        if dist.is_available() and dist.is_initialized():
            found = dist.get_rank(), dist.get_world_size()
        else:
            found = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        rank = found[0] if rank is None else rank
        world_size = found[1] if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"rank must be in [0, world_size) and world_size >= 1; got rank={rank}, world_size={world_size}"
        )
    return rank, world_size
