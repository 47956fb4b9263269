"""Decode every sample of a shard folder or any other source and list every problem (shard, key, field, cause).

Problems are what the readers would raise (or skip) while training: a shard missing, cut or miscounted; a split
total that is not the sum of its shards' counts; a sample whose fields differ from the manifest's; bytes that do
not decode; a shape or dtype the manifest does not allow (its fixed dims); NaN / inf in a float ``.npy``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from multiview.data.errors import ShardError
from multiview.data.expect import SplitSpec, field_problem
from multiview.data.fields import KNOWN_EXTS, REFUSED_EXTS, FieldError, decode_value
from multiview.data.location import SourceError, SplitSource, resolve
from multiview.data.manifest import MANIFEST_NAME, ManifestError, load_manifest, split_entry
from multiview.data.reader import index_shard
from multiview.data.remote import IOOptions, RemoteError, is_local
from multiview.data.tarstream import field_ext, raw_samples


@dataclass(frozen=True)
class Problem:
    """One bad thing found: where it is and why."""

    split: str
    shard: str
    key: str | None
    field: str | None
    cause: str

    def __str__(self) -> str:
        where = self.shard + (f", key {self.key!r}" if self.key is not None else "")
        return f"[{self.split}] {where}" + (f", field {self.field!r}" if self.field else "") + f": {self.cause}"


@dataclass
class VerifyReport:
    """What ``verify`` saw: ``samples`` checked, ``problems`` found, ``warnings`` (stray files)."""

    samples: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _verify_shard(root: Path, split: str, info: dict, expected_fields: list[str], spec: SplitSpec,
                  report: VerifyReport) -> None:  # fmt: skip
    name = info["name"]
    try:
        entries = index_shard(root / name, info.get("count"), info.get("bytes"))
    except ShardError as err:
        report.problems.append(Problem(split, name, None, None, err.cause))
        return
    with open(root / name, "rb") as f:
        fd = f.fileno()
        for entry in entries:
            report.samples += 1
            missing = sorted(set(expected_fields) - set(entry.members))
            extra = sorted(set(entry.members) - set(expected_fields))
            if missing or extra:
                cause = f"fields differ from the manifest's {expected_fields}: missing {missing}, extra {extra}"
                report.problems.append(Problem(split, name, entry.key, None, cause))
            for member, (offset, size) in entry.members.items():
                try:
                    value = decode_value(member.rpartition(".")[2].lower(), os.pread(fd, size, offset))
                except FieldError as err:
                    report.problems.append(Problem(split, name, entry.key, member, str(err)))
                    continue
                cause = field_problem(member, value, spec.specs.get(member))
                if cause is not None:
                    report.problems.append(Problem(split, name, entry.key, member, cause))


def verify(
    root: str | Path | Sequence[str], splits: Sequence[str] | None = None, options: IOOptions | None = None
) -> VerifyReport:
    """Check the manifest (a split's count against its shards'), every shard (present, a whole tar, the recorded
    size and count) and decode every field of every sample, held to the manifest's fields, fixed dims and dtypes
    and refused when a float ``.npy`` is not finite. Returns a VerifyReport; never raises for bad data.

    ``root`` may be any source (:mod:`multiview.data.location`): a local folder with a manifest is checked by
    index as above; anything else is streamed shard by shard (with a manifest, the counts are checked too).
    """
    if not _local_with_manifest(root):
        return verify_stream(root, splits, options)
    root = Path(root)
    report = VerifyReport()
    try:
        manifest = load_manifest(root)
    except ManifestError as err:
        report.problems.append(Problem("-", MANIFEST_NAME, None, None, str(err)))
        return report
    chosen = list(manifest["splits"]) if splits is None else list(splits)
    listed = set()
    for split in chosen:
        try:
            entry = split_entry(manifest, split, root)
        except ManifestError as err:
            report.problems.append(Problem(split, MANIFEST_NAME, None, None, str(err)))
            continue
        _check_total(split, entry, report)
        spec = SplitSpec.of(manifest, split)
        for info in entry["shards"]:
            listed.add(info["name"])
            _verify_shard(root, split, info, list(entry.get("fields", [])), spec, report)
    all_listed = {s["name"] for e in manifest["splits"].values() for s in e["shards"]}
    for stray in sorted(p.name for p in root.glob("*.tar") if p.name not in all_listed):
        report.warnings.append(f"{stray}: a tar file the manifest does not list (ignored by readers)")
    return report


def _check_total(split: str, entry: dict, report: VerifyReport) -> None:
    """A split's ``count`` must be the sum of its shards' counts (readers plan epochs from the shards')."""
    counts = [s.get("count") for s in entry["shards"]]
    if all(isinstance(c, int) for c in counts) and entry["count"] != sum(counts):
        cause = f"split {split!r} count is {entry['count']}; its shards' counts sum to {sum(counts)} ({counts})"
        report.problems.append(Problem(split, MANIFEST_NAME, None, None, cause))


def _local_with_manifest(root) -> bool:
    return isinstance(root, str | Path) and is_local(str(root)) and (Path(root) / MANIFEST_NAME).is_file()


def verify_stream(
    spec: str | Sequence[str], splits: Sequence[str] | None = None, options: IOOptions | None = None
) -> VerifyReport:
    """Stream every shard of ``spec`` (or of ``splits``) once and decode every member whose extension we know."""
    report = VerifyReport()
    try:
        sources = [resolve(spec, split, options) for split in splits] if splits else [resolve(spec, None, options)]
    except (SourceError, ManifestError, RemoteError) as err:
        report.problems.append(Problem("-", str(spec), None, None, str(err)))
        return report
    undecoded: set[str] = set()
    for source in sources:
        spec = SplitSpec.of(source.manifest, source.split)
        if source.manifest is not None and source.split in source.manifest["splits"]:
            _check_total(source.split, source.manifest["splits"][source.split], report)
        for i, url in enumerate(source.urls):
            seen = _verify_stream_shard(source, url, spec, report, undecoded)
            if source.counts is not None and seen is not None and seen != source.counts[i]:
                cause = f"holds {seen} samples, the manifest says {source.counts[i]}"
                report.problems.append(Problem(source.split, url, None, None, cause))
    for member in sorted(undecoded):
        report.warnings.append(f"field {member!r}: an extension multiview does not decode (not checked)")
    return report


def _verify_stream_shard(
    source: SplitSource, url: str, spec: SplitSpec, report: VerifyReport, undecoded: set[str]
) -> int | None:
    """Decode one streamed shard's members into ``report``; its sample count (None when it broke off)."""
    seen = 0
    try:
        for raw in raw_samples(url, source.options):
            seen += 1
            report.samples += 1
            missing = spec.missing(raw)
            if missing:
                cause = f"missing field(s) {missing}; the manifest lists {list(spec.fields)} for the split"
                report.problems.append(Problem(source.split, url, str(raw["__key__"]), None, cause))
            for member, data in raw.items():
                if member.startswith("__"):
                    continue
                if field_ext(member) not in KNOWN_EXTS | REFUSED_EXTS:
                    undecoded.add(member)
                    continue
                try:
                    value = decode_value(field_ext(member), data)
                except FieldError as err:
                    report.problems.append(Problem(source.split, url, str(raw["__key__"]), member, str(err)))
                    continue
                cause = field_problem(member, value, spec.specs.get(member))
                if cause is not None:
                    report.problems.append(Problem(source.split, url, str(raw["__key__"]), member, cause))
    except ShardError as err:
        report.problems.append(Problem(source.split, url, None, None, err.cause))
        return None
    return seen
