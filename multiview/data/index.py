"""``multiview shards index``: count the samples of shards we did not write and record them in a manifest, so
foreign shards get exact epochs (and, when local, the indexed reader).

One pass over every shard (streamed; nothing decoded but the first sample of each field, to describe it). The
manifest lists the shards by name when it sits beside them, by URL otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from multiview.data.location import SplitSource, resolve
from multiview.data.manifest import FORMAT, VERSION, write_manifest
from multiview.data.peek import field_info
from multiview.data.remote import IOOptions, is_local
from multiview.data.tarstream import raw_samples

log = logging.getLogger("multiview.data")
_META = ("__key__", "__url__", "__local_path__")


def count_shards(source: SplitSource, progress=None) -> tuple[list[int], dict[str, dict[str, Any]]]:
    """Samples per shard and ``{field: info}`` (info from the field's first member) of one split.

    Raises ShardError naming the URL for a shard that cannot be read whole: a count must be exact.
    """
    counts: list[int] = []
    fields: dict[str, dict[str, Any]] = {}
    for url in source.urls:
        n = 0
        for raw in raw_samples(url, source.options):
            n += 1
            for name, data in raw.items():
                if name not in _META and name not in fields:
                    fields[name] = field_info(name, data)
        counts.append(n)
        if progress is not None:
            progress(url, n)
    return counts, fields


def _names(urls: Sequence[str], base: str) -> list[str]:
    """Shard names relative to ``base`` when they lie in it; otherwise URLs as they are and local files as
    absolute paths (a relative path would be read against the manifest's folder)."""
    names = []
    for url in urls:
        if is_local(url) and is_local(base):
            path, folder = Path(url).resolve(), Path(base).resolve()
            names.append(str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path))
        else:
            prefix = base.rstrip("/") + "/"
            names.append(url[len(prefix) :] if url.startswith(prefix) else url)
    return names


def index_source(
    spec: str | Sequence[str],
    splits: Sequence[str] = ("train",),
    out: str | None = None,
    options: IOOptions | None = None,
    progress=None,
) -> tuple[str, dict[str, Any]]:
    """Count every shard of ``splits`` in ``spec`` and write ``manifest.json`` -> (where, manifest).

    Args:
        spec: a source (see :mod:`multiview.data.location`).
        splits: split names to index (``{split}`` patterns and ``<split>-*.tar`` names select their shards).
        out: folder or prefix for the manifest; default ``spec`` itself when it is a folder or prefix.
        options: how to open URLs.
    """
    options = options or IOOptions()
    if out is None:
        if not isinstance(spec, str) or any(c in spec for c in "{*?[") or spec.endswith((".tar", ".txt", ".urls")):
            raise ValueError(f"{spec}: not a folder or prefix to write manifest.json into; pass --out DIR")
        out = spec
    entries, fields = {}, {}
    for split in splits:
        source = resolve(spec, split, options)
        if source.manifest is not None and source.manifest.get("builder") != "index":
            raise ValueError(f"{source.spec}: already has a manifest (written by {source.manifest.get('builder')})")
        counts, found = count_shards(source, progress)
        for name, info in found.items():
            fields.setdefault(name, info)
        names = _names(source.urls, out)
        shards = [{"name": n, "count": c} for n, c in zip(names, counts)]
        for shard, url in zip(shards, source.urls):
            if is_local(url) and Path(url).is_file():
                shard["bytes"] = Path(url).stat().st_size
        entries[split] = {"count": sum(counts), "fields": sorted(found), "shards": shards}
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "builder": "index",
        "builder_args": {"source": spec if isinstance(spec, str) else list(spec)},
        "fields": dict(sorted(fields.items())),
        "splits": entries,
        "keys_sanitised": 0,
        "extra": {},
    }
    if is_local(out):
        Path(out).mkdir(parents=True, exist_ok=True)
    return str(write_manifest(out, manifest, options)), manifest

