"""What a split promises about each sample, and the checks that hold a decoded field to it.

A manifest written by :func:`multiview.data.write_dataset` promises, per split, the fields every sample has and,
per field, the decoded shape (``null`` where samples differ), the dtype and the sample rate(s). Both readers and
``verify`` hold every decoded field to that, so a sample that would break a batch (a missing field, a ``[17]``
where the others are ``[16]``) is a :class:`~multiview.data.errors.ShardError` naming shard, key and field at
decode time -- skipped and counted with ``on_error="skip"`` -- instead of a collate error naming no sample.
A manifest written by ``multiview shards index`` describes each field from its first member only, so it
promises the counts and nothing about fields or shapes (:meth:`SplitSpec.of` returns an empty spec).

Independently of any manifest, a float ``.npy`` field holding NaN or inf is refused (:func:`field_problem`):
one such value turns the loss into NaN steps later with no sample named. The check is ``np.isfinite(a).all()``
on the decoded array, about 3 us per float field ([3, 32, 32] or [2000] float32; the indexed reader goes from
26 to 40 us per sample of two such fields and a label); ``torch.isfinite(t).all()`` costs 4x that.

:func:`map_checked` and :func:`collate_named` are the streams' map and collate steps: a sample lacking a field
the others have is blamed by name (and skipped in skip mode) instead of failing its whole batch, and a collate
error names the keys and shards of each shape it met.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from multiview.data.batching import collate, map_samples
from multiview.data.errors import ErrorPolicy, ShardError
from multiview.data.manifest import split_entry

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128)


@dataclass(frozen=True)
class FieldSpec:
    """What the manifest fixes about one field: ``shape`` (None for a dim that varies; None: not recorded),
    ``dtype`` (a torch dtype name) and ``rates`` (the sample rates seen, audio only)."""

    shape: tuple[int | None, ...] | None = None
    dtype: str | None = None
    rates: tuple[int, ...] | None = None

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> FieldSpec:
        shape = info.get("shape")
        rate = info.get("sample_rate")
        rates = None if rate is None else tuple(rate) if isinstance(rate, list) else (rate,)
        return cls(None if shape is None else tuple(shape), info.get("dtype"), rates)


@dataclass(frozen=True)
class SplitSpec:
    """A split's promise: ``fields``, the members (``"acc.npy"``) every sample has, and ``specs`` by member."""

    fields: tuple[str, ...] = ()
    specs: Mapping[str, FieldSpec] = field(default_factory=dict)

    @classmethod
    def of(cls, manifest: Mapping[str, Any] | None, split: str | None) -> SplitSpec:
        """The spec of ``split`` in ``manifest``; empty without a manifest or for one ``shards index`` wrote."""
        if manifest is None or split is None or manifest.get("builder") == "index":
            return cls()
        if split not in manifest.get("splits", {}):
            return cls()
        listed = split_entry(manifest, split).get("fields") or []
        infos = manifest.get("fields", {})
        return cls(tuple(listed), {f: FieldSpec.of(infos[f]) for f in listed if isinstance(infos.get(f), dict)})

    def missing(self, members) -> list[str]:
        """The promised members that ``members`` (a sample's member names) lacks."""
        have = set(members)
        return [f for f in self.fields if f not in have]


def _dims(shape) -> str:
    return "[" + ", ".join("null" if d is None else str(d) for d in shape) + "]"


def field_problem(member: str, value: Any, spec: FieldSpec | None) -> str | None:
    """Why decoded ``value`` of ``member`` breaks ``spec`` or holds non-finite floats; None when it is fine.

    ``value`` is what :func:`multiview.data.fields.decode_value` returned (a tensor, ``(waveform, rate)``, an
    int, ...). Shape and dtype are checked for tensors where ``spec`` records them; NaN / inf for float ``.npy``.
    """
    rate = None
    if isinstance(value, tuple):
        value, rate = value
    if not isinstance(value, torch.Tensor):
        return None
    if spec is not None:
        if spec.shape is not None:
            seen = tuple(value.shape)
            if len(seen) != len(spec.shape) or any(e is not None and e != s for s, e in zip(seen, spec.shape)):
                return f"shape {list(seen)}; the manifest says {_dims(spec.shape)}"
        if spec.dtype is not None:
            dtype = str(value.dtype).removeprefix("torch.")
            if dtype != spec.dtype:
                return f"dtype {dtype}; the manifest says {spec.dtype}"
        if rate is not None and spec.rates is not None and rate not in spec.rates:
            expected = spec.rates[0] if len(spec.rates) == 1 else list(spec.rates)
            return f"sample rate {rate}; the manifest says {expected}"
    if member.rpartition(".")[2].lower() == "npy" and value.dtype in _FLOAT_DTYPES and value.dtype != torch.bfloat16:
        array = value.numpy()
        if not np.isfinite(array).all():
            nan = int(np.isnan(array).sum())
            inf = int(np.isinf(array).sum())
            return f"non-finite values ({inf} inf, {nan} NaN of {array.size})"
    return None


# ----------------------------------------------------------------------------------------- batches of samples
def _fields(sample: Mapping[str, Any]) -> set[str]:
    return {k for k in sample if not k.startswith("__")}


def _check_keep(sample: dict[str, Any], keep: Sequence[str]) -> dict[str, Any]:
    missing = [k for k in keep if k not in sample]
    if missing:
        cause = f"missing field; keep names it and the sample has {sorted(_fields(sample))}"
        raise ShardError(str(sample.get("__shard__", "?")), cause, str(sample.get("__key__")), missing[0])
    return sample


def map_checked(
    map_fn: Callable | None,
    keep: Sequence[str],
    seed: int,
    epoch: int,
    samples: list[dict[str, Any]],
    policy: ErrorPolicy,
    seen: set[str],
) -> tuple[list[dict[str, Any]], list[int]]:
    """:func:`~multiview.data.batching.map_samples` over a batch, where a sample lacking a field the others have
    is a ShardError (naming shard, key and the field) handled by ``policy`` instead of a crash of the whole batch.

    Blamed: with ``map_fn``, a sample lacking a field ``keep`` names; when ``map_fn`` fails, the samples lacking a field that
    other samples of the batch, or the samples this worker mapped before (``seen``, updated here), have -- then
    the rest is mapped again (the same views: each sample keeps its generator); without ``map_fn`` (whole
    samples are collated), the samples lacking a field most of the batch has, or holding one most lack. A
    failure that no missing field explains is re-raised. Returns ``(mapped items, their positions in samples)``.
    """
    if map_fn is None:  # whole samples are kept (``keep`` does not apply)
        alive = _majority_fields(samples, list(range(len(samples))), policy)
    else:
        alive = [i for i, s in enumerate(samples) if policy.attempt(_check_keep, s, keep) is not None]
    while alive:
        try:
            mapped = map_samples(map_fn, keep, seed, epoch, [samples[i] for i in alive])
        except Exception as err:
            if map_fn is None:
                raise
            names = seen.union(*(_fields(samples[i]) for i in alive))
            blamed = {i: sorted(names - _fields(samples[i])) for i in alive if names - _fields(samples[i])}
            if not blamed:
                raise
            for i, missing in blamed.items():
                cause = (
                    f"missing field; other samples have it and map_fn failed without it "
                    f"({type(err).__name__}: {err}); the sample has {sorted(_fields(samples[i]))}"
                )
                policy.handle(ShardError(str(samples[i].get("__shard__", "?")), cause, str(samples[i]["__key__"]),
                                         missing[0]))  # fmt: skip
            alive = [i for i in alive if i not in blamed]
            continue
        for i in alive:
            seen.update(_fields(samples[i]))
        return mapped, alive
    return [], []


def _majority_fields(samples: list[dict[str, Any]], alive: list[int], policy: ErrorPolicy) -> list[int]:
    """Samples collated whole must hold the same fields: the minority on each field is blamed."""
    if len(alive) < 2:
        return alive
    counts: dict[str, int] = {}
    for i in alive:
        for name in _fields(samples[i]):
            counts[name] = counts.get(name, 0) + 1
    keep = []
    for i in alive:
        have = _fields(samples[i])
        lacks = sorted(n for n, c in counts.items() if n not in have and 2 * c >= len(alive))
        extra = sorted(n for n in have if 2 * counts[n] < len(alive))
        if not lacks and not extra:
            keep.append(i)
            continue
        shard, key = str(samples[i].get("__shard__", "?")), str(samples[i]["__key__"])
        if lacks:
            err = ShardError(shard, f"missing field; the other samples of its batch have it; the sample has "
                                    f"{sorted(have)}", key, lacks[0])  # fmt: skip
        else:
            err = ShardError(shard, "a field the other samples of its batch lack", key, extra[0])
        policy.handle(err)
    return keep


def _origin(names: list[tuple[str, str]]) -> str:
    """``[(key, shard), ...]`` -> "keys 'a', 'b' of s1.tar; key 'c' of s2.tar" (at most 4 keys per shard)."""
    by_shard: dict[str, list[str]] = {}
    for key, shard in names:
        by_shard.setdefault(shard, []).append(key)
    parts = []
    for shard, keys in by_shard.items():
        shown = ", ".join(repr(k) for k in keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
        parts.append(f"key{'s' if len(keys) > 1 else ''} {shown} of {shard}")
    return "; ".join(parts)


def collate_named(items: list[dict[str, Any]], origins: list[tuple[str, str]]) -> dict[str, Any]:
    """:func:`~multiview.data.batching.collate`, whose errors name the samples involved: for each batch key
    that breaks it, the keys and shards (``origins[i] = (key, shard)`` of ``items[i]``) of each shape seen, or
    of the samples lacking it."""
    try:
        return collate(items)
    except (ValueError, KeyError, RuntimeError, TypeError) as err:
        problems = []
        for name in dict.fromkeys(k for item in items for k in item):
            lacking = [origins[i] for i, item in enumerate(items) if name not in item]
            if lacking:
                problems.append(f"batch key {name!r} is missing from {_origin(lacking)}")
                continue
            if not isinstance(items[0][name], torch.Tensor):
                continue
            shapes: dict[tuple[int, ...], list[tuple[str, str]]] = {}
            for item, origin in zip(items, origins):
                value = item[name]
                shapes.setdefault(tuple(value.shape) if isinstance(value, torch.Tensor) else (), []).append(origin)
            if len(shapes) > 1:
                seen = "; ".join(f"{list(shape)}: {_origin(names)}" for shape, names in shapes.items())
                problems.append(f"batch key {name!r}: tensors of different shapes: {seen}")
        if not problems:
            raise
        raise ValueError("; ".join(problems) + " (resize in map_fn, or check the shards with "
                         "`multiview shards verify`)") from err  # fmt: skip
