"""Where this process stands among the processes of a run: one lookup for the data layer, the objectives and the
loop (torch.distributed when a process group is up, else the launcher's RANK / WORLD_SIZE, else one process)."""

from __future__ import annotations

import os

import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


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
