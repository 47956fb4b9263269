"""WebStream: shards read front to back as streams (local files, HTTP, object stores, ``pipe:``), split by rank
and worker, shuffled, batched and mapped through the views -- a deterministic function of
``(seed, epoch, rank, worker)`` that resumes mid-epoch exactly.

How an epoch is laid out (every process computes the same layout, :func:`plan_slots`):

1. **Slots.** Each rank has ``W`` slots, one per DataLoader worker (``W = max(1, num_workers)``).
   *Each-shard-once* (default): the shards, permuted by ``(seed, epoch)``, are dealt to the ``world x W`` slots
   -- largest first to the slot holding the fewest samples when the counts are known (a manifest), so slots
   differ by less than one shard; in turn otherwise -- and each slot reads its shards in the permuted order.
   *Resampled*: every slot draws shards with replacement (weighted by their counts when known) from a generator
   seeded by ``(seed, epoch, rank, worker)``, without end.
2. **Quotas.** Every rank yields the same number of batches ``K``, so no process waits for another. With known
   counts, ``tail="drop"`` cuts every rank to the smallest rank's full batches (the samples a cut drops are the
   ends of the longest slots' streams; they are counted in the log) and ``tail="pad"`` pads every rank to the
   largest (a slot that runs out reads its shards again, the repeats flagged ``__pad__``). With unknown counts,
   ``epoch_size`` samples per epoch fix ``K`` and slots cycle their shards as needed (repeats flagged
   ``__pad__`` in each-shard-once mode); one process may also stream every shard once without ``epoch_size``.
3. **Shuffle groups.** A slot reads its shards in order into groups of at least ``shuffle_buffer`` samples
   (whole shards), permutes each group with a generator seeded by ``(seed, epoch, rank, worker, group start)``
   and emits it. A slot's position is ``(shard position of its group, samples emitted from the group, batches
   done)``; every batch carries it, the loader records it, and a resumed run re-reads one group per worker to
   continue exactly where it stopped. (webdataset's rolling shuffle buffer cannot do this: its state after
   ``n`` samples depends on all ``n``.)
4. **Order.** The DataLoader takes a batch from each worker in turn, skipping exhausted ones; on resume the
   workers are rotated so the turn continues where it stopped.

Memory per worker: one group (``shuffle_buffer`` samples plus at most one shard, as raw bytes) and the shard
list; no index, so start-up reads nothing but the first group.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from multiview.data.batching import Batch, check_stream_args, resolve_rank
from multiview.data.errors import ErrorPolicy, ShardError
from multiview.data.expect import SplitSpec, collate_named, map_checked
from multiview.data.location import SplitSource, resolve
from multiview.data.remote import IOOptions
from multiview.data.tarstream import decode_raw, field_name, raw_samples

log = logging.getLogger("multiview.data")
_GIVE_UP = 1000  # samples in a row that fail to decode before a skip-mode stream gives up (see WebStream._take)


@dataclass(frozen=True)
class SlotPlan:
    """What one worker of one rank reads in an epoch.

    Attributes:
        shards: shard indices in reading order (each-shard-once); None: resampled draws.
        quota: batches it yields; None: until its shards end (one process, counts unknown).
        samples: samples in its shards when the counts are known, else None.
    """

    shards: tuple[int, ...] | None
    quota: int | None
    samples: int | None = None


def _deal(n_shards: int, counts: Sequence[int] | None, order: np.ndarray, slots: int) -> list[list[int]]:
    """Shards to ``slots``, each slot's list in ``order``. With counts, the largest shard goes first to the
    emptiest slot (LPT: slot totals within one shard of each other); without, shards are dealt in turn."""
    dealt: list[list[int]] = [[] for _ in range(slots)]
    if counts is None:
        for i, s in enumerate(order.tolist()):
            dealt[i % slots].append(s)
        return dealt
    rank_in_order = np.empty(n_shards, dtype=np.int64)
    rank_in_order[order] = np.arange(n_shards)
    load = np.zeros(slots, dtype=np.int64)
    for s in sorted(range(n_shards), key=lambda s: (-counts[s], rank_in_order[s])):
        t = int(np.argmin(load))
        dealt[t].append(s)
        load[t] += counts[s]
    return [sorted(slot, key=lambda s: rank_in_order[s]) for slot in dealt]


def _even(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal ints, the larger first."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def _balance(samples: list[int], batch: int, target: int | None, tail: str) -> tuple[list[int], int]:
    """Batch quotas of one rank's workers summing to ``target`` (None: this rank's own total) -> (quotas, total)."""
    quotas = [n // batch if tail == "drop" else -(-n // batch) for n in samples]
    if target is None:
        return quotas, sum(quotas)
    while sum(quotas) > target:  # cut: the worker with the most batches gives one up
        quotas[int(np.argmax(quotas))] -= 1
    while sum(quotas) < target:  # pad: the worker with the fewest (that has samples to repeat) takes one more
        live = [i for i, n in enumerate(samples) if n > 0]
        quotas[min(live, key=lambda i: quotas[i])] += 1
    return quotas, target


def plan_slots(
    n_shards: int,
    counts: Sequence[int] | None,
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    resampled: bool,
    epoch_size: int | None,
    batch: int,
    world_size: int,
    workers: int,
    tail: str,
) -> list[list[SlotPlan]]:
    """The epoch's layout: ``plan[rank][worker]`` (see the module docstring). Every rank's quotas sum to the
    same number of batches. Raises ValueError when the shards cannot feed every rank or no full step exists."""
    per_step = world_size * batch
    if resampled or (counts is None and epoch_size is not None):
        size = epoch_size if epoch_size is not None else sum(counts or [])
        steps = size // per_step if tail == "drop" else -(-size // per_step)
        if steps < 1:
            raise ValueError(f"epoch_size {size} makes no full step of world_size x batch_size = {per_step}")
    if resampled:
        return [[SlotPlan(None, q) for q in _even(steps, workers)] for _ in range(world_size)]
    order = np.random.default_rng([seed, epoch]).permutation(n_shards) if shuffle else np.arange(n_shards)
    dealt = _deal(n_shards, counts, order, world_size * workers)
    by_rank = [dealt[r * workers : (r + 1) * workers] for r in range(world_size)]
    empty = [r for r, slots in enumerate(by_rank) if not any(slots)]
    if empty:
        raise ValueError(
            f"{n_shards} shard(s) cannot feed {world_size} processes each-shard-once (rank {empty[0]} gets none): "
            "use resampled shards (data.resampled) or split the data into more shards"
        )
    if counts is None:
        if epoch_size is None:
            if world_size > 1:
                raise ValueError(
                    "streaming each shard once across several processes needs the shards' sample counts, to give "
                    "every process the same number of batches: write them with `multiview shards index SOURCE`, "
                    "or set data.epoch_size (or use data.resampled)"
                )
            return [[SlotPlan(tuple(s), None) for s in by_rank[0]]]
        plans = []
        for slots in by_rank:
            live = [i for i, s in enumerate(slots) if s]
            quotas = dict(zip(live, _even(steps, len(live))))
            plans.append([SlotPlan(tuple(s), quotas.get(i, 0)) for i, s in enumerate(slots)])
        return plans
    samples = [[sum(counts[s] for s in slot) for slot in slots] for slots in by_rank]
    totals = [_balance(n, batch, None, tail)[1] for n in samples]
    target = min(totals) if tail == "drop" else max(totals)
    if target < 1:
        raise ValueError(f"{sum(counts)} samples make no full step of world_size x batch_size = {per_step}")
    plans = []
    for slots, n in zip(by_rank, samples):
        quotas, _ = _balance(n, batch, target, tail)
        plans.append([SlotPlan(tuple(s), q, k) for s, q, k in zip(slots, quotas, n)])
    return plans


class WebStream(IterableDataset):
    """A deterministic, resumable stream over the shards of one split, wherever they are (see the module doc).

    Args:
        source: a source spec (folder, glob, URL pattern, URL list, ``s3://`` prefix, ``pipe:``; see
            :mod:`multiview.data.location`) or a resolved :class:`SplitSource`.
        split: split name (selects ``<split>-*.tar``, fills ``{split}`` in patterns).
        fields: field names (without extension, shard names or rename targets) to decode; None: every field
            with an extension we decode.
        rename: ``{name in the batch: name in the shard}``, e.g. ``{"image": "jpg", "label": "cls"}``.
        map_fn, keep, batch_size, shuffle, seed, rank, world_size, on_error: as for
            :class:`~multiview.data.stream.ShardStream`.
        resampled: draw shards with replacement, ``epoch_size`` samples per epoch.
        epoch_size: samples per epoch over all ranks (needed without counts, for several processes).
        tail: "drop" (cut every rank to the smallest) or "pad" (pad to the largest); default "pad".
        shuffle_buffer: samples per shuffle group (rounded up to whole shards).
        options: timeouts, retries and storage options for opening URLs.

    Every item carries ``__pad__`` and ``__index__`` (the sample's position in the split when the counts are
    known, else -1). ``len(stream)`` is the batches per rank per epoch (TypeError when it is not fixed).
    """

    def __init__(
        self,
        source: str | Path | Sequence[str] | SplitSource,
        split: str = "train",
        *,
        fields: Sequence[str] | None = None,
        rename: Mapping[str, str] | None = None,
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
        shuffle_buffer: int = 1000,
        options: IOOptions | None = None,
    ):
        super().__init__()
        check_stream_args(tail, on_error, batch_size, seed, epoch_size)
        if shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be >= 1; got {shuffle_buffer}")
        self.source = source if isinstance(source, SplitSource) else resolve(source, split, options)
        self.root, self.split = self.source.spec, self.source.split
        self.counts = self.source.counts
        if resampled and epoch_size is None and self.counts is None:
            raise ValueError(f"{self.root}: resampled streaming of shards without counts needs an epoch_size")
        self.fields, self.rename = (None if fields is None else list(fields)), dict(rename or {})
        self.map_fn, self.batch_size, self.shuffle, self.resampled = map_fn, batch_size, shuffle, resampled
        self.epoch_size, self.tail, self.seed, self.on_error = epoch_size, tail, seed, on_error
        self.rank, self.world_size = rank, world_size
        self.shuffle_buffer = shuffle_buffer if shuffle else 1  # without shuffling a group is one shard
        self.keep = list(keep) if keep is not None else ["__key__", *self._label_names()]
        self.loader_workers = 0
        self.epoch = 0
        self.skipped = 0
        self.batches_consumed = 0
        self._positions: dict[int, tuple[int, int, int]] = {}  # logical worker -> (group start, emitted, batches)
        self._last: int | None = None  # logical worker of the last batch handed out
        self._state_workers: int | None = None
        offsets = np.concatenate([[0], np.cumsum(self.counts)]) if self.counts is not None else None
        self._offsets = offsets
        self.spec = SplitSpec.of(self.source.manifest, self.split)  # what a manifest promises for every sample
        self._fields_seen: set[str] = set()  # fields of the samples mapped so far (map_checked's reference)

    def _label_names(self) -> list[str]:
        """Batch names of the label fields (kept next to the views by default)."""
        targets = {source: target for target, source in self.rename.items()}
        labels = [field_name(f) for f, info in self.source.fields().items() if info.get("modality") == "label"]
        wanted = None if self.fields is None else {self.rename.get(n, n) for n in self.fields}
        return [targets.get(n, n) for n in labels if wanted is None or n in wanted]

    # ------------------------------------------------------------------------------------------ position
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate next. Re-selecting the epoch a state was loaded for keeps its position."""
        if epoch != self.epoch:
            self._reset_position()
        self.epoch = int(epoch)

    def _reset_position(self) -> None:
        self._positions, self._last, self.batches_consumed, self._state_workers = {}, None, 0, None

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "batches", "workers", "positions", "last"}``: where every worker's stream stands."""
        positions = {str(w): list(p) for w, p in self._positions.items()}
        workers = max(1, self.loader_workers)
        return {"epoch": self.epoch, "batches": self.batches_consumed, "workers": workers, "positions": positions,
                "last": self._last}  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a state (``{"epoch", "batches"}`` alone: the epoch's start when ``batches`` is 0)."""
        missing = {"epoch", "batches"} - set(state)
        if missing:
            raise ValueError(f"stream state needs keys epoch and batches; missing {sorted(missing)} in {dict(state)}")
        self._reset_position()
        self.epoch, self.batches_consumed = int(state["epoch"]), int(state["batches"])
        if self.batches_consumed and "positions" not in state:
            raise ValueError(
                f"{self.root}: a streamed epoch resumes from worker positions; the state has only "
                f"{{epoch, batches}} (saved by an indexed stream?)"
            )
        self._positions = {int(w): tuple(p) for w, p in state.get("positions", {}).items()}
        self._last = state.get("last")
        self._state_workers = state.get("workers") if self.batches_consumed else None

    # ---------------------------------------------------------------------------------------------- plan
    def _workers(self) -> int:
        return max(1, self.loader_workers)

    def plan(self) -> list[list[SlotPlan]]:
        """This epoch's :func:`plan_slots` for every rank and worker."""
        _, world = resolve_rank(self.rank, self.world_size)
        return plan_slots(
            len(self.source.urls),
            self.counts,
            seed=self.seed,
            epoch=self.epoch,
            shuffle=self.shuffle,
            resampled=self.resampled,
            epoch_size=self.epoch_size,
            batch=self.batch_size or 1,
            world_size=world,
            workers=self._workers(),
            tail=self.tail,
        )

    def __len__(self) -> int:
        rank, _ = resolve_rank(self.rank, self.world_size)
        quotas = [slot.quota for slot in self.plan()[rank]]
        if any(q is None for q in quotas):
            raise TypeError(
                f"{self.root}: the batches of a streamed epoch are not known without the shards' counts: write "
                "them with `multiview shards index`, or set epoch_size"
            )
        return sum(quotas)

    # ------------------------------------------------------------------------------------ loader hooks
    def prepare_workers(self, num_workers: int) -> None:
        """Check that a resumed position was saved with as many workers, and log what the plan cuts or pads."""
        self.loader_workers = num_workers
        if self._state_workers is not None and self._state_workers != self._workers():
            raise ValueError(
                f"{self.root}: this streamed epoch was saved with {self._state_workers} loader worker(s) and resumes "
                f"with {self._workers()}: the stream depends on the worker count (set data.num_workers back)"
            )
        if self.batches_consumed == 0 and self.counts is not None and not self.resampled:
            self._log_cut_and_pad()

    def _log_cut_and_pad(self) -> None:
        rank, _ = resolve_rank(self.rank, self.world_size)
        batch = self.batch_size or 1
        slots = self.plan()[rank]
        cut = sum(max(0, s.samples - s.quota * batch) for s in slots)
        pad = sum(max(0, s.quota * batch - s.samples) for s in slots)
        if cut or pad:
            log.info(
                "%s split %r epoch %d rank %d: %d batches per rank; cut %d sample(s) (the ends of the longest "
                "workers' streams), padded %d (repeats flagged __pad__)",
                self.root, self.split, self.epoch, rank, sum(s.quota for s in slots), cut, pad,
            )  # fmt: skip

    def consumed(self, batch: Batch) -> None:
        """The loader handed ``batch`` out: record its worker's position."""
        self.batches_consumed += 1
        if batch.position is not None:
            worker, start, emitted, done = batch.position
            self._positions[worker] = (start, emitted, done)
            self._last = worker

    def epoch_done(self, skipped: int | None) -> None:
        """The loader's pass ended: the next iteration starts the epoch again; log what workers skipped."""
        self._reset_position()
        if skipped is not None:
            self.skipped += skipped
            if skipped:
                log.warning("%s split %r epoch %d: skipped %d bad sample(s) this epoch", self.root, self.split,
                            self.epoch, skipped)  # fmt: skip

    # ----------------------------------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, _ = resolve_rank(self.rank, self.world_size)
        info = get_worker_info()
        workers = self._workers()
        if (info.num_workers if info is not None else 1) != workers:
            raise RuntimeError(
                f"the stream was planned for {workers} worker(s) but runs in {info.num_workers if info else 0}; "
                "build the loader with multiview.data.make_loader"
            )
        rotation = 0 if self._last is None else self._last + 1
        worker = ((info.id if info is not None else 0) + rotation) % workers
        slot = self.plan()[rank][worker]
        policy = ErrorPolicy(self.on_error, f"{self.root} split {self.split!r} epoch {self.epoch} rank {rank}")
        try:
            yield from self._batches(rank, worker, slot, policy)
        finally:
            if info is None:  # in a worker the loader counts and reports, from the batches it receives
                self.skipped += policy.skipped
                policy.report()

    def _batches(self, rank: int, worker: int, slot: SlotPlan, policy: ErrorPolicy) -> Iterator[Batch]:
        """The worker's batches from its recorded position on, up to its quota."""
        start, emitted, done = self._positions.get(worker, (0, 0, 0))
        size = self.batch_size or 1
        items = self._items(rank, worker, slot, start, emitted, policy)
        position, failed = (start, emitted), [0]
        while slot.quota is None or done < slot.quota:
            before = policy.skipped
            picked: list = []
            while len(picked) < size:  # samples map_checked leaves out are replaced by the following ones
                more, position, ended = self._take(items, size - len(picked), policy, failed, position)
                mapped = self._mapped(more, policy)
                self._count_failures(failed, len(more) - len(mapped), bool(mapped))
                picked += mapped
                if ended:
                    break
            if len(picked) < size:
                picked = self._finish(picked, size)
                if not picked:
                    return
            done += 1
            batch = self._collate(picked)
            batch.skipped, batch.position = policy.skipped - before, (worker, *position, done)
            yield batch

    def _take(
        self, items: Iterator, size: int, policy: ErrorPolicy, failed: list[int], position: tuple[int, int]
    ) -> tuple[list, tuple[int, int], bool]:
        """Up to ``size`` decoded samples from ``items`` (bad ones skipped by the policy), the position after,
        and whether ``items`` ended. ``failed[0]`` counts the samples in a row that failed: a skip mode that
        finds nothing good in ``_GIVE_UP`` samples (every one broken, or a field kept that none has) raises
        instead of cycling the shards for ever (:meth:`_count_failures`)."""
        picked = []
        for item in items:
            raw, pad, index, position = item
            sample = policy.attempt(decode_raw, raw, self.fields, self.rename, None, self.spec)
            if sample is None:
                self._count_failures(failed, 1, False)
                continue
            picked.append((sample, pad, index))
            if len(picked) == size:
                return picked, position, False
        return picked, position, True

    def _count_failures(self, failed: list[int], n: int, good: bool) -> None:
        """``n`` more samples failed (to decode or to map); any good one ends the run."""
        failed[0] = 0 if good else failed[0] + n
        if failed[0] >= max(_GIVE_UP, 2 * self.shuffle_buffer):
            raise ShardError(self.root, f"{failed[0]} samples in a row failed (see the log); giving up")

    def _mapped(self, picked: list, policy: ErrorPolicy) -> list:
        """``picked`` through map_fn (:func:`~multiview.data.expect.map_checked`): ``(item, pad, index, origin)``."""
        if not picked:
            return []
        samples = [sample for sample, _, _ in picked]
        mapped, alive = map_checked(self.map_fn, self.keep, self.seed, self.epoch, samples, policy, self._fields_seen)
        out = []
        for item, a in zip(mapped, alive):
            sample, pad, index = picked[a]
            out.append((item, pad, index, (str(sample["__key__"]), str(sample["__shard__"]))))
        return out

    def _finish(self, picked: list, size: int) -> list:
        """The shards ended (one process, no quota): drop an incomplete last batch, or pad it with repeats."""
        if not picked or self.tail == "drop":
            if picked:
                log.info("%s split %r: dropped the last %d sample(s) (an incomplete batch)", self.root, self.split,
                         len(picked))  # fmt: skip
            return []
        return picked + [({**s}, True, i, o) for s, _, i, o in (picked * size)[: size - len(picked)]]

    def _collate(self, picked: list) -> Batch:
        """Mapped ``(item, pad, index, origin)`` -> a batch (one item without a batch size)."""
        items = []
        for item, pad, index, _ in picked:
            item["__pad__"], item["__index__"] = pad, index
            items.append(item)
        origins = [origin for _, _, _, origin in picked]
        return Batch(collate_named(items, origins) if self.batch_size is not None else items[0])

    def _items(self, rank: int, worker: int, slot: SlotPlan, start: int, emitted: int, policy: ErrorPolicy):
        """``(raw sample, pad, index, (group start, emitted after it))`` from position ``(start, emitted)`` on."""
        draws = self._draws(rank, worker) if slot.shards is None else None
        while True:
            group, after = self._group(slot, draws, start, policy)
            if not group:
                return
            rng = np.random.default_rng([self.seed, self.epoch, rank, worker, start])
            order = rng.permutation(len(group)) if self.shuffle else np.arange(len(group))
            for i in range(emitted, len(group)):
                raw, pad, index = group[order[i]]
                yield raw, pad, index, ((start, i + 1) if i + 1 < len(group) else (after, 0))
            start, emitted = after, 0

    def _draws(self, rank: int, worker: int) -> _Draws:
        """A growing list of resampled shard draws (position -> shard), seeded by (seed, epoch, rank, worker)."""
        return _Draws(self.seed, self.epoch, rank, worker, len(self.source.urls), self.counts)

    def _group(self, slot: SlotPlan, draws, start: int, policy: ErrorPolicy) -> tuple[list, int]:
        """Whole shards from position ``start`` until ``shuffle_buffer`` samples -> (samples, next position)."""
        group: list = []
        position, empty = start, 0
        while len(group) < self.shuffle_buffer:
            if slot.shards and position > start and position % len(slot.shards) == 0:
                break  # a group never mixes a pass over the slot's shards with its repeats
            found = self._shard_at(slot, draws, position)
            if found is None:
                break
            shard, pad = found
            read = self._read_shard(shard, policy)
            group += [(raw, pad, index) for raw, index in read]
            position += 1
            empty = 0 if read else empty + 1
            if empty >= (len(slot.shards) if slot.shards else 64):
                raise ShardError(self.root, f"no readable sample in {empty} shard(s) in a row (see the log)")
        return group, position

    def _shard_at(self, slot: SlotPlan, draws, position: int) -> tuple[int, bool] | None:
        """The shard at ``position`` of a slot's sequence and whether it is a repeat; None past the end."""
        if slot.shards is None:
            return draws[position], False
        if not slot.shards or (slot.quota is None and position >= len(slot.shards)):
            return None
        return slot.shards[position % len(slot.shards)], position >= len(slot.shards) and not self.resampled

    def _read_shard(self, shard: int, policy: ErrorPolicy) -> list[tuple[dict, int]]:
        """The raw samples of one shard with their index in the split; a failure keeps what came before it."""
        url = self.source.urls[shard]
        out: list[tuple[dict, int]] = []
        base = int(self._offsets[shard]) if self._offsets is not None else None
        try:
            for raw in raw_samples(url, self.source.options):
                out.append((raw, -1 if base is None else base + len(out)))
        except ShardError as err:
            lost = max(1, self.counts[shard] - len(out)) if self.counts is not None else 1
            policy.handle(err, what=f"the rest of shard {url} ({lost} sample(s) or more)", count=lost,
                          ident=("rest of shard", url))  # fmt: skip
        return out


class _Draws:
    """Shard draws with replacement, extended on demand, so position ``p`` always maps to the same shard."""

    def __init__(self, seed: int, epoch: int, rank: int, worker: int, n: int, counts: Sequence[int] | None):
        self._rng = np.random.default_rng([seed, epoch, rank, worker, 1])
        self._n = n
        total = None if counts is None else float(sum(counts))
        self._p = None if not total else np.asarray(counts, dtype=np.float64) / total
        self._drawn: list[int] = []

    def __getitem__(self, position: int) -> int:
        while len(self._drawn) <= position:
            self._drawn += self._rng.choice(self._n, size=max(64, len(self._drawn)), p=self._p).tolist()
        return self._drawn[position]


def iter_stream_samples(
    source: SplitSource, fields: Sequence[str] | None = None, on_error: str = "raise", rename=None
) -> Iterator[dict[str, Any]]:
    """Every sample of a streamed split once, in stored order, in this process (evaluation, inspect)."""
    policy = ErrorPolicy(on_error, f"{source.spec} split {source.split!r}")
    spec = SplitSpec.of(source.manifest, source.split)
    try:
        for url in source.urls:
            try:
                for raw in raw_samples(url, source.options):
                    sample = policy.attempt(decode_raw, raw, fields, rename, None, spec)
                    if sample is not None:
                        yield sample
            except ShardError as err:
                policy.handle(err, what=f"the rest of shard {url}")
    finally:
        policy.report()
