"""Groups of evaluation samples by a field of theirs: which conditions does a model fail on?

``--group-by meta.speed`` reads the ``speed`` key of each sample's decoded ``meta.json``; ``--group-by accent``
reads a field ``accent``. Numbers can be cut into ranges with edges (``--group-edges 120 200`` -> ``<120``,
``120-200``, ``>=200``); anything else is grouped by its value as text. Evaluations report their metrics per
group next to the overall ones (retrieval: class mAP of each group's queries).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

MAX_GROUPS = 50  # more distinct values than this is a continuous field: ask for edges instead


def group_value(sample: dict, spec: str) -> Any:
    """The value ``spec`` names in ``sample``: a field (``accent``) or a key of a dict field (``meta.speed``)."""
    if spec in sample:
        return sample[spec]
    field, _, key = spec.partition(".")
    holder = sample.get(field) if key else None
    if isinstance(holder, dict) and key in holder:
        return holder[key]
    where = f"sample {sample.get('__key__', '?')!r}"
    if isinstance(holder, dict):
        raise ValueError(f"--group-by {spec!r}: {where} field {field!r} has no key {key!r} (keys: {sorted(holder)})")
    fields = sorted(k for k in sample if not k.startswith("__"))
    raise ValueError(f"--group-by {spec!r}: {where} has no field {spec!r}" + (f" or {field!r}" if key else "")
                     + f" (fields: {fields}); expected a field or FIELD.KEY of a JSON field")  # fmt: skip


def bin_name(value: Any, edges: Sequence[float], spec: str) -> str:
    """``value``'s range among sorted ``edges``: ``<e0``, ``e0-e1``, ..., ``>=eN``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"--group-by {spec!r} with --group-edges: expected a finite number, got {value!r}")
    if value < edges[0]:
        return f"<{edges[0]:g}"
    for lo, hi in zip(edges, edges[1:]):
        if value < hi:
            return f"{lo:g}-{hi:g}"
    return f">={edges[-1]:g}"


def group_names(samples: Iterable[dict], spec: str, edges: Sequence[float] | None = None) -> list[str]:
    """One group name per sample, in order (see the module docstring)."""
    if edges is not None and (not edges or any(b <= a for a, b in zip(edges, edges[1:]))):
        raise ValueError(f"--group-edges: expected increasing numbers, got {list(edges)}")
    names = []
    for sample in samples:
        value = group_value(sample, spec)
        names.append(bin_name(value, edges, spec) if edges else str(value))
    distinct = len(set(names))
    if distinct > MAX_GROUPS:
        raise ValueError(
            f"--group-by {spec!r}: {distinct} distinct values (more than {MAX_GROUPS}); "
            f"cut a numeric field into ranges with --group-edges"
        )
    return names
