"""Where the shards of a split are: a source spec -> shard URLs, their sample counts when known, the fields.

A source spec (recipe ``data.path``, ``--data``, the Python API) is one of:

- a local folder with ``manifest.json`` (written by ``multiview shards write`` or ``multiview shards index``):
  counts and fields come from the manifest; the indexed reader can serve it;
- a local folder or glob of ``.tar`` shards without a manifest (``shards/img2dataset``, ``data/*.tar``);
- brace-expanded URL patterns, ``::``-joined as webdataset does (``https://h/train-{000000..000127}.tar``);
- a list of URLs, or a text file of URLs (a spec ending ``.txt`` / ``.urls``, one URL per line, ``#`` comments);
- an object-store prefix or glob (``s3://bucket/prefix/``, anything fsspec opens) -- with ``manifest.json``
  there, its counts are used -- and ``pipe:CMD`` as webdataset knows it.

``{split}`` in a spec is replaced by the split's name. A folder or prefix holding ``<split>-*.tar`` (or
``<split>_*.tar``, or ``<split>/*.tar``) serves the split from those; one whose tars carry no split name (e.g.
img2dataset's ``00000.tar``) serves them as whatever split is asked, with a log line saying so.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multiview.data.manifest import MANIFEST_NAME, WRITING_MARKER, ManifestError, check_manifest, split_entry
from multiview.data.remote import IOOptions, RemoteError, exists, expand_pattern, is_local, list_tars, read_bytes

log = logging.getLogger("multiview.data")
MODES = ("auto", "indexed", "stream")
_SPLIT_WORDS = ("train", "training", "test", "val", "valid", "validation", "dev", "eval")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_URL_LIST_SUFFIXES = (".txt", ".urls")


class SourceError(ValueError):
    """A source spec names nothing readable, or a mode that cannot serve it; the message says what and why."""


@dataclass
class SplitSource:
    """The shards of one split.

    Attributes:
        spec: the source as the user gave it (for messages).
        split: the split's name.
        urls: shard locations in stored order (local paths or URLs).
        counts: samples per shard when a manifest gives them, else None.
        manifest: the manifest (ours, or one ``multiview shards index`` wrote) when there is one, else None.
        root: the local folder whose manifest lists local shards -- what the indexed reader needs -- else None.
        options: how to open the URLs (timeouts, retries, storage options).
    """

    spec: str
    split: str
    urls: list[str]
    counts: list[int] | None = None
    manifest: dict[str, Any] | None = None
    root: Path | None = None
    options: IOOptions = field(default_factory=IOOptions)

    @property
    def total(self) -> int | None:
        """Samples in the split when the counts are known."""
        return None if self.counts is None else sum(self.counts)

    def fields(self) -> dict[str, dict[str, Any]]:
        """``{"<name>.<ext>": info}`` of the split: the manifest's, else peeked from its first samples."""
        if self.manifest is not None:
            wanted = split_entry(self.manifest, self.split).get("fields") or list(self.manifest["fields"])
            return {f: self.manifest["fields"][f] for f in wanted if f in self.manifest["fields"]}
        from multiview.data.peek import peek_fields

        return peek_fields(self)


def describe(spec: Any) -> str:
    """A spec as text for messages (a list is shown by its first URLs)."""
    if isinstance(spec, str | Path):
        return str(spec)
    items = [str(s) for s in spec]
    return ", ".join(items[:3]) + (f", ... ({len(items)} URLs)" if len(items) > 3 else "")


def resolve(
    spec: str | Path | Sequence[str], split: str | None = "train", options: IOOptions | None = None
) -> SplitSource:
    """The shards of ``split`` in ``spec`` (see the module docstring; ``split=None``: every shard of a source
    without a manifest, e.g. for ``verify``). Raises SourceError naming the spec."""
    options = options or IOOptions()
    if not isinstance(spec, str | Path):
        urls = [u for s in spec for u in expand_pattern(str(s).replace("{split}", split or "*"))]
        if not urls:
            raise SourceError(f"{describe(spec)}: an empty list of shard URLs")
        return SplitSource(describe(spec), split or "*", urls, options=options)
    text = str(spec).replace("{split}", split or "*")
    try:
        if text.startswith("pipe:") or "::" in text or re.search(r"\{[^}]*(\.\.|,)[^}]*\}", text):
            return SplitSource(str(spec), split or "*", expand_pattern(text), options=options)
        if text.lower().endswith(_URL_LIST_SUFFIXES):
            return SplitSource(str(spec), split or "*", _url_list(text, options), options=options)
        if text.lower().endswith(_TAR_SUFFIXES) and not any(c in text for c in "*?["):
            return SplitSource(str(spec), split or "*", [text], options=options)
        return _folder(str(spec), text, split, options)
    except RemoteError as err:
        raise SourceError(f"{spec}: {err}") from None


def _url_list(text: str, options: IOOptions) -> list[str]:
    """The URLs of a text file, one per line; relative lines are taken from the file's folder."""
    lines = read_bytes(text, options).decode("utf-8", "replace").splitlines()
    base = text.rsplit("/", 1)[0] if "/" in text else "."
    urls = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        relative = "://" not in line and not line.startswith(("/", "pipe:"))
        urls += expand_pattern(f"{base}/{line}" if relative else line)
    if not urls:
        raise SourceError(f"{text}: a URL list with no URLs")
    return urls


def _join(base: str, name: str) -> str:
    """A manifest's shard name resolved against the folder or prefix holding the manifest."""
    if "://" in name or name.startswith(("/", "pipe:")):
        return name
    return f"{base.rstrip('/')}/{name}"


def _folder(spec: str, text: str, split: str, options: IOOptions) -> SplitSource:
    """A folder, prefix or glob: its manifest when it has one, else its tars (by split name when they have one)."""
    globbed = any(c in text for c in "*?[")
    if not globbed:
        manifest_url = _join(text, MANIFEST_NAME)
        if Path(manifest_url).is_file() if is_local(text) else exists(manifest_url, options):
            return _from_manifest(spec, text, split, manifest_url, options)
        if is_local(text) and (Path(text) / WRITING_MARKER).exists():
            raise ManifestError(
                f"{Path(text) / MANIFEST_NAME}: no manifest (shards without a manifest: the write did not finish, "
                f"{WRITING_MARKER} is still there); write the data set again"
            )
        if is_local(text) and not Path(text).exists():
            raise SourceError(f"{spec}: no such file or folder; expected a shard folder, a glob, URLs or a URL list")
    tars = list_tars(text, options)
    return SplitSource(spec, split or "*", _tars_of_split(spec, tars, split), options=options)


def _tars_of_split(spec: str, tars: list[str], split: str | None) -> list[str]:
    """The tars named for ``split``; all of them when none carries a split name."""

    def split_of(url: str) -> str | None:
        parent, _, base = url.rstrip("/").rpartition("/")
        if parent.rpartition("/")[2] in _SPLIT_WORDS or parent.rpartition("/")[2] == split:
            return parent.rpartition("/")[2]
        match = re.match(r"^([A-Za-z0-9]+)[-_]", base)
        return match[1] if match else None

    if split is None:  # every shard, whatever its split (verify, inspect)
        return tars
    named = [t for t in tars if split_of(t) == split]
    if named:
        return named
    others = sorted({s for t in tars if (s := split_of(t)) in _SPLIT_WORDS})
    if others:
        raise SourceError(f"{spec}: no shards of split {split!r} ({split}-*.tar or {split}/*.tar); it holds {others}")
    log.info("%s: %d shard(s) carry no split name; reading them as split %r", spec, len(tars), split)
    return tars


def _from_manifest(spec: str, base: str, split: str, manifest_url: str, options: IOOptions) -> SplitSource:
    """A folder or prefix with a manifest: its shard URLs and counts; ``root`` when the shards are local files."""
    try:
        text = read_bytes(manifest_url, options).decode("utf-8")
        manifest = check_manifest(json.loads(text), manifest_url)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SourceError(f"{manifest_url}: not valid JSON: {err}") from err
    except ManifestError as err:
        raise SourceError(str(err)) from None
    entry = split_entry(manifest, split, base)
    urls = [_join(base, s["name"]) for s in entry["shards"]]
    counts = [int(s["count"]) for s in entry["shards"]]
    local = is_local(base) and all(is_local(u) for u in urls)
    return SplitSource(spec, split, urls, counts, manifest, Path(base) if local else None, options)


def choose_mode(source: SplitSource, mode: str = "auto") -> str:
    """``"indexed"`` or ``"stream"`` for ``source``: auto picks indexed for a local folder with a manifest."""
    if mode not in MODES:
        raise SourceError(f"data.mode is {mode!r}; expected one of {MODES}")
    if mode == "stream":
        return "stream"
    if source.root is not None:
        return "indexed"
    if mode == "indexed":
        why = "its shards are not local files" if source.manifest is not None else "it has no manifest.json"
        raise SourceError(
            f"{source.spec}: data.mode 'indexed' needs a local folder with manifest.json, and {why}; use "
            "data.mode 'stream' (or 'auto'), or write counts with `multiview shards index`"
        )
    return "stream"


def matches_any(name: str, patterns: Sequence[str]) -> bool:
    """fnmatch of a file name against several patterns (used when listing stores)."""
    return any(fnmatch.fnmatch(name, p) for p in patterns)
