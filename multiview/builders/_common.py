"""Helpers shared by the builders: progress bars and the call to the shard writer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def progress(items: Iterable, total: int | None, desc: str, enabled: bool) -> Iterable:
    """``items`` wrapped in a tqdm bar when ``enabled`` (on stderr, so scripts' stdout stays clean)."""
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit="sample", leave=False)


def write(
    out_dir: str | Path,
    splits: Mapping[str, Iterable[dict]],
    totals: Mapping[str, int],
    *,
    builder: str,
    builder_args: Mapping[str, Any],
    extra: Mapping[str, Any],
    maxcount: int = 1000,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Write the splits through ``multiview.data.write_dataset`` and return its manifest."""
    from multiview.data import write_dataset

    wrapped = {name: progress(samples, totals.get(name), name, show_progress) for name, samples in splits.items()}
    return write_dataset(
        out_dir, wrapped, builder=builder, builder_args=dict(builder_args), maxcount=maxcount, extra=dict(extra)
    )
