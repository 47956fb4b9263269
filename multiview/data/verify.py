"""Decode every sample of a shard folder and list every problem (shard, key, field, cause)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from multiview.data.fields import FieldError, decode_value
from multiview.data.manifest import MANIFEST_NAME, ManifestError, load_manifest, split_entry
from multiview.data.reader import ShardError, index_shard


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


def _verify_shard(root: Path, split: str, info: dict, expected_fields: list[str], report: VerifyReport) -> None:
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
                    decode_value(member.rpartition(".")[2].lower(), os.pread(fd, size, offset))
                except FieldError as err:
                    report.problems.append(Problem(split, name, entry.key, member, str(err)))


def verify(root: str | Path, splits: Sequence[str] | None = None) -> VerifyReport:
    """Check the manifest, every shard (present, a whole tar, the recorded size and count) and decode every field
    of every sample. Returns a VerifyReport; never raises for bad data.
    """
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
        for info in entry["shards"]:
            listed.add(info["name"])
            _verify_shard(root, split, info, list(entry.get("fields", [])), report)
    all_listed = {s["name"] for e in manifest["splits"].values() for s in e["shards"]}
    for stray in sorted(p.name for p in root.glob("*.tar") if p.name not in all_listed):
        report.warnings.append(f"{stray}: a tar file the manifest does not list (ignored by readers)")
    return report
