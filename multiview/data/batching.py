"""What both streams share: per-sample seeds, rank lookup, mapping a batch through the views, collating, and
the DataLoader that hands batches out and records the stream's position (for exact resume).

A stream (:class:`~multiview.data.stream.ShardStream`, :class:`~multiview.data.webstream.WebStream`) implements
``prepare_workers(num_workers)`` (called before workers start), ``consumed(batch)`` (called for every batch the
loader hands out, in the main process), ``epoch_done(skipped)`` and ``state_dict`` / ``load_state_dict``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from multiview.core.dist import rank_and_world
from multiview.core.seeding import derive_generator

log = logging.getLogger("multiview.data")


TAILS = ("drop", "pad")


def check_stream_args(tail: str, on_error: str, batch_size: int | None, seed: Any, epoch_size: int | None) -> None:
    """The arguments both streams share; raises ValueError naming the argument, the value and what is expected."""
    from multiview.data.errors import ON_ERROR

    if tail not in TAILS:
        raise ValueError(f"tail is {tail!r}; expected one of {TAILS}")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error is {on_error!r}; expected one of {ON_ERROR}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or None; got {batch_size}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    if epoch_size is not None and epoch_size < 1:
        raise ValueError(f"epoch_size must be >= 1; got {epoch_size}")


def sample_generator(seed: int, epoch: int, key: str) -> torch.Generator:
    """The generator handed to ``map_fn`` for one sample: seeded by ``(seed, epoch, key)`` with
    :func:`multiview.core.seeding.derive_generator`, the function view generators use themselves."""
    return derive_generator(seed, epoch, key)


def resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit values, else torch.distributed when initialised, else env RANK / WORLD_SIZE, else (0, 1)."""
    return rank_and_world(rank, world_size)


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack a list of sample dicts: tensors -> ``[B, ...]``, ints / floats / bools -> ``[B]`` tensors,
    anything else (str, dict, list, None) -> a list. Tensors whose shapes differ raise ValueError naming the key.
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        first = values[0]
        if isinstance(first, torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(f"batch key {key!r}: tensors of different shapes {sorted(shapes)}; resize in map_fn")
            out[key] = torch.stack(values)
        elif isinstance(first, bool | np.bool_):
            out[key] = torch.tensor(values, dtype=torch.bool)
        elif isinstance(first, int | np.integer):
            out[key] = torch.tensor(values, dtype=torch.int64)
        elif isinstance(first, float):
            out[key] = torch.tensor(values, dtype=torch.float32)
        else:
            out[key] = values
    return out


def map_samples(
    map_fn: Callable | None, keep: Sequence[str], seed: int, epoch: int, samples: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``map_fn`` over the decoded samples of one batch, each with its generator seeded by ``(seed, epoch, key)``,
    and the ``keep`` keys of each sample copied next to its views. A ``map_fn.batch(samples, generators=...)`` method
    (every view generator, ``ViewStage``) maps them in one call, with the same per-sample generators as
    single calls (so the same views)."""
    if map_fn is None:
        return [dict(sample) for sample in samples]
    generators = [sample_generator(seed, epoch, sample["__key__"]) for sample in samples]
    batch_fn = getattr(map_fn, "batch", None)
    if callable(batch_fn) and len(samples) > 1:
        outs = list(batch_fn(samples, generators=generators))
        if len(outs) != len(samples):
            raise ValueError(
                f"map_fn.batch of {type(map_fn).__name__} returned {len(outs)} items for {len(samples)} "
                f"samples; expected one per sample"
            )
    else:
        outs = [map_fn(sample, g) for sample, g in zip(samples, generators)]
    items = []
    for sample, out in zip(samples, outs):
        item = dict(out)
        for key in keep:
            if key not in sample:
                raise ValueError(f"keep names {key!r}, which the decoded sample lacks (it has {sorted(sample)})")
            item[key] = sample[key]
        items.append(item)
    return items


class Batch(dict):
    """A collated batch (or a sample) that also carries ``skipped`` (bad samples left out of it, skip mode) and
    ``position`` (where its worker's stream stands after it: what an exact resume needs)."""

    skipped: int = 0
    position: Any = None


class ShardLoader(DataLoader):
    """A DataLoader over a stream that tells the stream each batch it hands out (``stream.consumed``: the count
    and position behind ``stream.state_dict()``) and, with workers, the samples they skipped.
    """

    def __iter__(self):
        stream = self.dataset
        stream.prepare_workers(self.num_workers)
        skipped = 0
        try:
            for batch in super().__iter__():
                stream.consumed(batch)
                skipped += getattr(batch, "skipped", 0)
                yield batch
        finally:
            stream.epoch_done(skipped if self.num_workers > 0 else None)


def make_loader(
    stream,
    batch_size: int | None = None,
    num_workers: int = 0,
    *,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
) -> ShardLoader:
    """A DataLoader of collated batches over ``stream`` (batches are made in the workers, in plan order).

    Args:
        stream: a ShardStream or WebStream; its ``batch_size`` is set here when it has none.
        batch_size: samples per batch; must match ``stream.batch_size`` if both are given.
        num_workers: DataLoader worker processes (0: in this process). Workers are not persistent so that
            ``set_epoch`` reaches them.
    """
    if batch_size is None and stream.batch_size is None:
        raise ValueError("make_loader needs a batch_size (here or on the stream); got none")
    if batch_size is not None and stream.batch_size not in (None, batch_size):
        raise ValueError(f"batch_size={batch_size} differs from the stream's batch_size={stream.batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0; got {num_workers}")
    stream.batch_size = stream.batch_size or batch_size
    stream.loader_workers = num_workers  # a WebStream's epoch layout depends on it
    extra = {"prefetch_factor": prefetch_factor} if num_workers > 0 and prefetch_factor else {}
    return ShardLoader(
        stream, batch_size=None, collate_fn=_identity, num_workers=num_workers, pin_memory=pin_memory, **extra
    )


def _identity(batch: Any) -> Any:
    """The loader's collate: batches are already collated in the stream (a module function so it pickles)."""
    return batch
