"""Recipe -> the training stream: shards, split by rank and worker in the data layer, through the views."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from multiview.data import ShardStream, make_loader
from multiview.data.location import choose_mode, resolve
from multiview.data.remote import IOOptions
from multiview.data.webstream import WebStream
from multiview.train.recipe import Recipe


class ViewStage:
    """The stream's map: decoded sample -> named views (picklable, for DataLoader workers); ``batch`` maps a
    whole batch at once (the stream prefers it).

    Drops the generator's ``__meta__`` (crop boxes, camera ids) unless ``keep_meta``: collating a list of dicts per
    batch costs time and the objectives do not use it.
    """

    def __init__(self, views, keep_meta: bool = False):
        self.views = views
        self.keep_meta = keep_meta

    def __call__(self, sample: dict, generator: torch.Generator) -> dict:
        return self._strip(self.views(sample, generator=generator))

    def batch(self, samples: list[dict], *, generators: list[torch.Generator]) -> list[dict]:
        """All samples of one batch at once: the generator's batched path (shared tensor ops across samples,
        e.g. the image crop generators), the same views as one call per sample."""
        if not hasattr(self.views, "batch"):  # a plain callable: one call per sample
            return [self(s, g) for s, g in zip(samples, generators)]
        return [self._strip(out) for out in self.views.batch(samples, generators=generators)]

    def _strip(self, views: dict) -> dict:
        out = dict(views)
        if not self.keep_meta:
            out.pop("__meta__", None)
        return out


def io_options(recipe: Recipe) -> IOOptions:
    """The recipe's ``data.io`` as the data layer's IOOptions."""
    io = recipe.data.io
    return IOOptions(io.timeout, io.retries, io.backoff, dict(io.storage_options))


def build_stream(recipe: Recipe, micro_batch: int, rank: int, world_size: int, map_fn) -> ShardStream | WebStream:
    """The recipe's stream for this process: indexed for a local folder with a manifest (unless ``data.mode``
    says stream), streamed for everything else. Raises SourceError naming the source before any data is read."""
    data = recipe.data
    source = resolve(data.path, data.split, io_options(recipe))
    common = dict(
        fields=data.fields,
        rename=data.rename,
        map_fn=map_fn,
        keep=["__key__", *data.keep],
        batch_size=micro_batch,
        shuffle=data.shuffle,
        resampled=data.resampled,
        tail="drop",
        seed=recipe.train.seed,
        rank=rank,
        world_size=world_size,
        on_error=data.on_error,
    )
    if choose_mode(source, data.mode) == "indexed":
        epoch_size = data.epoch_size if data.resampled else None
        return ShardStream(source.root, data.split, epoch_size=epoch_size, cache=data.cache, **common)
    return WebStream(source, epoch_size=data.epoch_size, shuffle_buffer=data.shuffle_buffer, **common)


def build_loader(recipe: Recipe, micro_batch: int, rank: int, world_size: int, views=None):
    """The recipe's loader and stream for this process: ``micro_batch`` samples per batch, equal batch counts on
    every rank, an incomplete final global batch dropped (training never sees a padded duplicate)."""
    from multiview.train.build import build_views

    views = views if views is not None else build_views(recipe)
    stream = build_stream(recipe, micro_batch, rank, world_size, ViewStage(views))
    loader = make_loader(stream, num_workers=recipe.data.num_workers, pin_memory=torch.cuda.is_available())
    return loader, stream, views


def split_batch(batch: Mapping[str, Any], view_names) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A collated batch -> (views ``{name: [B, ...]}``, the rest: labels, attributes, keys)."""
    views = {name: batch[name] for name in view_names}
    rest = {key: value for key, value in batch.items() if key not in views}
    return views, rest


def move_to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors to ``device`` (non-blocking from pinned memory); everything else unchanged."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
