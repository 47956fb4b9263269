"""ShardStream: a deterministic, resumable stream of (mapped, batched) samples over a shard folder.

How an epoch is laid out (every process computes the same plan from seed, epoch and the manifest):

1. The plan is a list of sample references. Non-resampled: every sample of the split once, in one global
   order (a permutation seeded by ``(seed, epoch)`` when shuffling, stored order otherwise). Resampled: shards
   drawn with replacement by a generator seeded with ``(seed, epoch)`` until ``epoch_size`` samples are
   covered, their samples shuffled and cut to ``epoch_size``.
2. The plan is cut into global batches of ``batch_size`` and dealt to ranks in turn: global batch ``b`` goes
   to rank ``b % world_size``, so step ``i`` of all ranks together is one contiguous slice of the plan.
   Every rank gets the same number of batches ``K``: with ``tail="drop"`` the plan is cut to
   ``K * world_size * batch_size`` samples (``K`` rounded down); with ``tail="pad"`` it is extended by
   repeating its first samples, each flagged ``__pad__ = True`` so evaluation can drop them (``K`` rounded up).
3. Inside a rank, DataLoader worker ``w`` of ``W`` makes rank batches ``w, w + W, w + 2W, ...``; the
   DataLoader takes one batch from each worker in turn, so the batches come out in plan order whatever ``W``.

Hence in non-resampled mode with ``tail="pad"`` each sample is seen exactly once per epoch across all ranks x
workers (plus flagged repeats), and the stream does not depend on ``accelerator.prepare()``: do not prepare the
loader, move batches to the device yourself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from multiview.data.batching import (  # noqa: F401 (re-exported: the public names of this module until 0.1)
    TAILS,
    Batch,
    ShardLoader,
    check_stream_args,
    collate,
    make_loader,
    map_samples,
    resolve_rank,
    sample_generator,
)
from multiview.data.errors import ErrorPolicy, ShardError
from multiview.data.expect import collate_named, map_checked
from multiview.data.reader import ShardReader

log = logging.getLogger(__name__)


def epoch_plan(
    counts: Sequence[int],
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    resampled: bool,
    epoch_size: int | None,
    batch: int,
    world_size: int,
    tail: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The global sample order of one epoch -> (``global_index [M]`` int64, ``is_pad [M]`` bool).

    ``M = K * world_size * batch`` with ``K`` the batches per rank; a global index ``g`` is sample
    ``g - offsets[s]`` of the shard ``s`` holding it (offsets = cumulative shard counts).
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        raise ValueError("the split holds no samples")
    rng = np.random.default_rng([seed, epoch])
    if resampled:
        offsets = np.concatenate([[0], np.cumsum(counts)])
        drawn, covered = [], 0
        while covered < epoch_size:  # shards with replacement (empty shards are never drawn)
            s = int(rng.choice(len(counts), p=counts / total))
            drawn.append(np.arange(offsets[s], offsets[s + 1]))
            covered += int(counts[s])
        order = np.concatenate(drawn)
        order = (rng.permutation(order) if shuffle else order)[:epoch_size]
    else:
        order = rng.permutation(total) if shuffle else np.arange(total)
    per_step = world_size * batch
    steps = len(order) // per_step if tail == "drop" else -(-len(order) // per_step)
    if steps == 0:
        raise ValueError(
            f"{len(order)} samples make no full step of world_size x batch_size = {per_step} with tail='drop'; "
            "use tail='pad' or a smaller batch"
        )
    size = steps * per_step
    is_pad = np.arange(size) >= len(order)
    return np.resize(order, size), is_pad


class ShardStream(IterableDataset):
    """A deterministic stream over one split of a shard folder, split by rank and DataLoader worker.

    Args:
        root: shard folder with manifest.json.
        split: split name.
        fields: field names (no extension) to decode; None decodes all.
        map_fn: ``map_fn(sample, generator) -> dict`` applied to each decoded sample (the view generator);
            ``generator`` is a torch.Generator seeded from ``(seed, epoch, key)``. When map_fn has a method
            ``batch(samples, generators=[...])`` (every multiview view generator does) each batch is mapped in
            one call with the same generators: the same views, with tensor ops shared across samples.
        keep: keys of the decoded sample copied next to map_fn's output (default: ``__key__`` and every field
            of modality ``label``). Without map_fn the whole decoded sample is kept.
        batch_size: samples per batch (collated in the worker); None yields single samples.
        shuffle: shuffle the global order (non-resampled) / the drawn samples (resampled).
        resampled: draw shards with replacement, ``epoch_size`` samples per epoch.
        epoch_size: samples per epoch across all ranks (resampled mode only; default the split's count).
        tail: "drop" or "pad" (see the module docstring); default "pad".
        seed: base seed (non-negative int).
        rank, world_size: this process's place; default from torch.distributed, else env RANK / WORLD_SIZE.
        on_error: "raise" or "skip" (a bad sample is replaced by a repeat of a good one of its batch flagged
            ``__pad__``; the count is logged at the end of the epoch and kept in ``skipped``).
        cache: keep decoded samples in memory after their first read, so later epochs skip tar reads and
            decoding (small data sets; map_fn must not modify the sample in place -- view generators do not).
            Each DataLoader worker keeps its own cache, and workers are re-created each epoch, so the cache
            pays off with ``num_workers=0``.
        rename: ``{name in the batch: name in the shard}`` (e.g. ``{"image": "pix"}``); ``fields`` may use either.

    Every item carries ``__pad__`` (bool) and ``__index__`` (int, the sample's position in the split: a stable
    per-sample id for memory banks, e.g. CMC's ``index_key: __index__``). ``len(stream)`` is the number of items (batches) per rank per epoch.

    Examples:
        >>> stream = ShardStream("shards/mfeat", "train", batch_size=64, seed=0)  # doctest: +SKIP
        >>> loader = make_loader(stream, num_workers=2)  # doctest: +SKIP
        >>> for epoch in range(3):  # doctest: +SKIP
        ...     stream.set_epoch(epoch)
        ...     for batch in loader: ...
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        fields: Sequence[str] | None = None,
        map_fn: Callable[[dict, torch.Generator], Mapping[str, Any]] | None = None,
        keep: Sequence[str] | None = None,
        batch_size: int | None = None,
        shuffle: bool = True,
        resampled: bool = False,
        epoch_size: int | None = None,
        tail: str = "pad",
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        on_error: str = "raise",
        cache: bool = False,
        rename: Mapping[str, str] | None = None,
    ):
        super().__init__()
        check_stream_args(tail, on_error, batch_size, seed, epoch_size)
        if epoch_size is not None and not resampled:
            raise ValueError(f"epoch_size={epoch_size} needs resampled=True (a non-resampled epoch is the split)")
        self.reader = ShardReader(root, split, fields, rename=rename)
        self.root, self.split = Path(root), split
        self.epoch_size = epoch_size or sum(self.reader.counts)
        self.map_fn, self.batch_size, self.shuffle, self.resampled = map_fn, batch_size, shuffle, resampled
        self.tail, self.seed, self.on_error = tail, seed, on_error
        self.rank, self.world_size = rank, world_size
        if keep is None:
            fields_info = self.reader.manifest["fields"]
            labels = [f.rpartition(".")[0] for f, info in fields_info.items() if info.get("modality") == "label"]
            target = {old: new for new, old in (rename or {}).items()}
            keep = ["__key__", *(target.get(label, label) for label in labels)]
        self.keep = list(keep)
        self.epoch = 0
        self.batches_consumed = 0  # counted by make_loader's loader in the main process
        self._start = 0  # items to skip at the next iteration (resume)
        self.skipped = 0
        self._cache: dict[tuple[int, int], dict[str, Any]] | None = {} if cache else None
        self._fields_seen: set[str] = set()  # fields of the samples mapped so far (map_checked's reference)

    # ------------------------------------------------------------------------------------------ position
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate next. Re-selecting the epoch a state was loaded for keeps its position."""
        if epoch != self.epoch:
            self._start = 0
            self.batches_consumed = 0
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batches"}``: the epoch and how many items of it the loader has handed out."""
        return {"epoch": self.epoch, "batches": self.batches_consumed}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue from a state: the next iteration starts at item ``state["batches"]`` of ``state["epoch"]``."""
        missing = {"epoch", "batches"} - set(state)
        if missing:
            raise ValueError(f"stream state needs keys epoch and batches; missing {sorted(missing)} in {dict(state)}")
        self.epoch = int(state["epoch"])
        self._start = self.batches_consumed = int(state["batches"])

    # ---------------------------------------------------------------------------------------------- plan
    def _plan(self) -> tuple[np.ndarray, np.ndarray, int, int]:
        """This rank's items: (``global_index [K, B]``, ``is_pad [K, B]``, rank, world_size)."""
        rank, world = resolve_rank(self.rank, self.world_size)
        batch = self.batch_size or 1
        order, is_pad = epoch_plan(
            self.reader.counts,
            seed=self.seed,
            epoch=self.epoch,
            shuffle=self.shuffle,
            resampled=self.resampled,
            epoch_size=self.epoch_size,
            batch=batch,
            world_size=world,
            tail=self.tail,
        )
        # [steps * world * batch] -> [steps, world, batch]; this rank's column is its batch sequence
        order = order.reshape(-1, world, batch)[:, rank]
        is_pad = is_pad.reshape(-1, world, batch)[:, rank]
        return order, is_pad, rank, world

    def __len__(self) -> int:
        rank, world = resolve_rank(self.rank, self.world_size)
        per_step = world * (self.batch_size or 1)
        n = self.epoch_size if self.resampled else sum(self.reader.counts)
        return n // per_step if self.tail == "drop" else -(-n // per_step)

    # ----------------------------------------------------------------------------------------- iteration
    def _read(self, policy: ErrorPolicy, shard: int, j: int) -> dict[str, Any] | None:
        if self._cache is None:
            return policy.attempt(self.reader.read, shard, j, ident=(shard, j))
        if (shard, j) not in self._cache:
            sample = policy.attempt(self.reader.read, shard, j, ident=(shard, j))
            if sample is None:
                return None  # not cached: a skip is counted (and logged) in every epoch it happens
            self._cache[(shard, j)] = sample
        return self._cache[(shard, j)]

    def _batch(
        self, refs: np.ndarray, pads: np.ndarray, offsets: np.ndarray, policy: ErrorPolicy
    ) -> tuple[list[dict], list[tuple[str, str]]]:
        """The mapped items of one batch and the ``(key, shard)`` each came from (for collate's messages)."""
        read: list[tuple[dict[str, Any], bool, int] | None] = []  # (decoded sample, pad, index in the split)
        for g, pad in zip(refs.tolist(), pads.tolist()):
            shard = int(np.searchsorted(offsets, g, side="right") - 1)
            sample = self._read(policy, shard, g - int(offsets[shard]))
            read.append(None if sample is None else (sample, bool(pad), g))
        present = [pos for pos, entry in enumerate(read) if entry is not None]
        samples = [read[pos][0] for pos in present]
        mapped, alive = map_checked(self.map_fn, self.keep, self.seed, self.epoch, samples, policy, self._fields_seen)
        items: list[dict | None] = [None] * len(read)
        origins: list[tuple[str, str]] = [("", "")] * len(read)
        for item, a in zip(mapped, alive):
            pos = present[a]
            sample, pad, g = read[pos]
            item["__pad__"] = pad
            item["__index__"] = g  # position in the split, in [0, count): memory banks key their rows by it
            items[pos], origins[pos] = item, (str(sample["__key__"]), str(sample["__shard__"]))
        good = [pos for pos, item in enumerate(items) if item is not None]
        if not good:
            where = f"{self.root} split {self.split!r}, epoch {self.epoch}"
            raise ShardError(where, f"every sample of a batch of {len(items)} failed to decode (see the log)")
        # keep the batch size equal on every rank: a skipped sample becomes a flagged repeat of a good one
        for i, item in enumerate(items):
            if item is None:
                src = good[i % len(good)]
                items[i], origins[i] = {**items[src], "__pad__": True}, origins[src]
        return items, origins

    # ------------------------------------------------------------------------------------ loader hooks
    def prepare_workers(self, num_workers: int) -> None:
        """Before the loader's workers start: index every shard once, here, so workers inherit the indexes
        instead of each re-reading the tar headers."""
        self.batches_consumed = self._start
        if num_workers > 0:
            self.reader.index_all()

    def consumed(self, batch: Batch) -> None:
        """The loader handed ``batch`` out (main process)."""
        self.batches_consumed += 1

    def epoch_done(self, skipped: int | None) -> None:
        """The loader's pass ended; ``skipped`` is what its workers skipped (None without workers: counted here)."""
        self._start = 0
        if skipped is not None:
            self.skipped += skipped
            if skipped:
                log.warning(
                    "%s split %r epoch %d: skipped %d bad sample(s) this epoch",
                    self.root,
                    self.split,
                    self.epoch,
                    skipped,
                )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        order, is_pad, rank, _ = self._plan()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        offsets = np.concatenate([[0], np.cumsum(self.reader.counts)])
        policy = ErrorPolicy(self.on_error, f"{self.root} split {self.split!r} epoch {self.epoch} rank {rank}")
        try:
            for i in range(self._start + worker, len(order), workers):
                before = policy.skipped
                batch, origins = self._batch(order[i], is_pad[i], offsets, policy)
                item = Batch(collate_named(batch, origins) if self.batch_size is not None else batch[0])
                item.skipped = policy.skipped - before  # carried to the main process (see ShardLoader)
                yield item
        finally:
            self._start = 0
            if info is None:  # in a worker the loader counts and reports, from the batches it receives
                self.skipped += policy.skipped
                policy.report()
