"""Random access to the samples of a shard folder, and the ordered pass ``iter_samples`` (evaluation).

A shard is indexed once per process by reading its tar headers only (no data): member name -> (offset, size).
A sample is then read with ``os.pread`` and decoded field by field with :mod:`multiview.data.fields`, so a
global shuffle costs one read per field and nothing is decoded that was not asked for.

Every read error is a :class:`ShardError` naming the shard, the key, the field and the cause.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from multiview.data.errors import ErrorPolicy, ShardError
from multiview.data.expect import SplitSpec, field_problem
from multiview.data.fields import FieldError, decode_value
from multiview.data.location import choose_mode, resolve
from multiview.data.manifest import load_manifest, split_entry
from multiview.data.remote import IOOptions
from multiview.data.tarformat import scan_tar
from multiview.data.webstream import iter_stream_samples


@dataclass(frozen=True)
class SampleEntry:
    """Where one sample's fields lie in its tar: ``{"image.png": (offset, size), ...}``."""

    key: str
    members: dict[str, tuple[int, int]]


class ShardIndex:
    """The samples of one tar, compactly: keys, the field names seen, and ``offsets`` / ``sizes``
    (int64 ``[N, F]``, -1 where a sample lacks a field). ``index[j]`` is sample ``j`` as a SampleEntry.

    About 100 bytes per sample instead of a dict per sample, and DataLoader workers inherit it without
    touching (and so copying) millions of small objects.
    """

    def __init__(self, keys: list[str], fields: list[str], offsets: np.ndarray, sizes: np.ndarray):
        self.keys, self.fields, self.offsets, self.sizes = keys, fields, offsets, sizes

    @classmethod
    def build(cls, rows: list[tuple[str, dict[str, tuple[int, int]]]]) -> ShardIndex:
        fields = list(dict.fromkeys(f for _, members in rows for f in members))
        column = {f: i for i, f in enumerate(fields)}
        offsets = np.full((len(rows), len(fields)), -1, dtype=np.int64)
        sizes = np.full((len(rows), len(fields)), -1, dtype=np.int64)
        for j, (_, members) in enumerate(rows):
            for field, (offset, size) in members.items():
                offsets[j, column[field]], sizes[j, column[field]] = offset, size
        return cls([key for key, _ in rows], fields, offsets, sizes)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, j: int) -> SampleEntry:
        offsets, sizes = self.offsets[j].tolist(), self.sizes[j].tolist()
        members = {f: (o, n) for f, o, n in zip(self.fields, offsets, sizes) if o >= 0}
        return SampleEntry(self.keys[j], members)

    def __iter__(self) -> Iterator[SampleEntry]:
        return (self[j] for j in range(len(self)))


def _split_member(name: str) -> tuple[str, str]:
    """WebDataset's rule: the key ends at the first dot of the basename -> (key, "<field>.<ext>")."""
    folder, _, base = name.rpartition("/")
    stem, dot, field = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), field


def index_shard(path: Path, expected: int | None = None, expected_bytes: int | None = None) -> ShardIndex:
    """Read the headers of one tar -> its samples in stored order.

    Raises ShardError for a missing file, a file that is not a tar, and a truncated tar (data running past the
    end of the file, or a size / sample count that differs from the manifest's).
    """
    name = path.name
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ShardError(name, f"file not found: {path}") from None
    samples: list[tuple[str, dict[str, tuple[int, int]]]] = []
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise ShardError(name, "not a tar file (empty file)")
        for member, data_at, length in scan_tar(fd, size):
            key, field = _split_member(member)
            if not samples or samples[-1][0] != key:
                samples.append((key, {}))
            samples[-1][1][field] = (data_at, length)
    except ValueError as err:
        if isinstance(err, ShardError):
            raise
        done = f" (after {len(samples)} complete sample(s))" if samples else ""
        raise ShardError(name, f"{err}{done}") from None
    finally:
        os.close(fd)
    if expected_bytes is not None and size != expected_bytes:
        raise ShardError(name, f"truncated or rewritten: {size} bytes, the manifest says {expected_bytes}")
    if expected is not None and len(samples) != expected:
        hint = " (truncated?)" if len(samples) < expected else " (a key repeated apart, or rewritten?)"
        raise ShardError(name, f"holds {len(samples)} samples, the manifest says {expected}{hint}")
    return ShardIndex.build(samples)


def decode_sample(
    shard: str, entry: SampleEntry, blobs: dict[str, bytes], fields: Sequence[str] | None, spec: SplitSpec | None = None
) -> dict:
    """Decode the wanted fields (names without extension; None = all) of one sample -> a sample dict.

    With ``spec`` (what the split's manifest promises), ``fields=None`` requires every field it lists, and each
    decoded field must have its fixed dims and dtype; a float ``.npy`` must be finite (ShardError otherwise).
    """
    by_name = {f.rpartition(".")[0] or f: f for f in entry.members}
    wanted = list(by_name) if fields is None else fields
    if fields is None and spec is not None:
        missing = spec.missing(entry.members)
        if missing:
            cause = f"missing field; the manifest lists it for the split and the sample has {sorted(entry.members)}"
            raise ShardError(shard, cause, entry.key, missing[0])
    sample: dict[str, Any] = {"__key__": entry.key, "__shard__": shard}
    for name in wanted:
        field = by_name.get(name)
        if field is None:
            raise ShardError(shard, f"missing field; the sample has {sorted(entry.members)}", entry.key, name)
        try:
            value = decode_value(field.rpartition(".")[2].lower(), blobs[field])
        except FieldError as err:
            raise ShardError(shard, str(err), entry.key, field) from None
        problem = field_problem(field, value, spec.specs.get(field) if spec is not None else None)
        if problem is not None:
            raise ShardError(shard, problem, entry.key, field)
        if isinstance(value, tuple):  # WAV: (waveform, sample rate)
            sample[name], sample[f"{name}.sample_rate"] = value
        else:
            sample[name] = value
    return sample


def rename_fields(sample: dict[str, Any], rename: Mapping[str, str]) -> dict[str, Any]:
    """``sample`` with shard field names replaced by the names ``rename`` ({new: old}) gives them."""
    for new, old in rename.items():
        for suffix in ("", ".sample_rate"):
            if old + suffix in sample:
                sample[new + suffix] = sample.pop(old + suffix)
    return sample


class ShardReader:
    """Reads sample ``j`` of shard ``i`` of one split; shard indexes and file handles are cached per process.

    Picklable: the shard indexes travel with it (a loader builds them once, before starting workers); open
    file handles do not.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        fields: Sequence[str] | None = None,
        max_open: int = 64,
        rename: Mapping[str, str] | None = None,
    ):
        self.root = Path(root)
        self.split = split
        self.manifest = load_manifest(self.root)
        entry = split_entry(self.manifest, split, self.root)
        self.shards: list[dict[str, Any]] = entry["shards"]
        self.counts = [int(s["count"]) for s in self.shards]
        self.rename = dict(rename or {})  # {name in the sample: name in the shard}
        self.fields = None if fields is None else [self.rename.get(f, f) for f in fields]
        known = [f.rpartition(".")[0] or f for f in entry.get("fields", [])]  # "jpg": a foreign bare field
        unknown = [f for f in self.fields or [] if f not in known]
        if unknown:
            raise ValueError(
                f"{self.root / 'manifest.json'}: split {split!r} has no field {', '.join(map(repr, unknown))}; "
                f"its fields are {known} (names without extension)"
            )
        self.spec = SplitSpec.of(self.manifest, split)  # what every sample must hold (fields, dims, dtypes)
        self.max_open = max_open
        self._indexes: dict[int, ShardIndex | ShardError] = {}
        self._fds: OrderedDict[int, int] = OrderedDict()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fds": OrderedDict()}

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            os.close(fd)
        self._fds = OrderedDict()

    def index(self, shard: int) -> ShardIndex:
        """The sample entries of shard ``shard`` (raises its ShardError every time it is asked)."""
        if shard not in self._indexes:
            info = self.shards[shard]
            try:
                self._indexes[shard] = index_shard(self.root / info["name"], info["count"], info.get("bytes"))
            except ShardError as err:
                self._indexes[shard] = err
        found = self._indexes[shard]
        if isinstance(found, ShardError):
            raise found
        return found

    def index_all(self) -> None:
        """Index every shard now (errors are kept and raised when a sample of that shard is read)."""
        for shard in range(len(self.shards)):
            try:
                self.index(shard)
            except ShardError:
                pass

    def _fd(self, shard: int) -> int:
        if shard in self._fds:
            self._fds.move_to_end(shard)
            return self._fds[shard]
        if len(self._fds) >= self.max_open:
            os.close(self._fds.popitem(last=False)[1])
        fd = os.open(self.root / self.shards[shard]["name"], os.O_RDONLY)
        self._fds[shard] = fd
        return fd

    def read(self, shard: int, j: int) -> dict[str, Any]:
        """Decode sample ``j`` of shard ``shard`` -> ``{"__key__", "__shard__", <field>: value, ...}``."""
        name = self.shards[shard]["name"]
        entries = self.index(shard)
        entry = entries[j]
        by_name = {f.rpartition(".")[0] or f: f for f in entry.members}
        wanted = by_name.values() if self.fields is None else [by_name[n] for n in self.fields if n in by_name]
        fd = self._fd(shard)
        blobs = {}
        for field in wanted:
            offset, size = entry.members[field]
            blobs[field] = os.pread(fd, size, offset)
            if len(blobs[field]) != size:
                raise ShardError(name, f"short read: {len(blobs[field])} of {size} bytes", entry.key, field)
        return rename_fields(decode_sample(name, entry, blobs, self.fields, self.spec), self.rename)

    def key_of(self, shard: int, j: int) -> str:
        """The key of a sample, or ``#<j>`` when the shard cannot be indexed."""
        try:
            return self.index(shard)[j].key
        except ShardError:
            return f"#{j}"


def iter_samples(
    root: str | Path | Sequence[str],
    split: str,
    fields: Sequence[str] | None = None,
    on_error: str = "raise",
    *,
    rename: Mapping[str, str] | None = None,
    mode: str = "auto",
    options: IOOptions | None = None,
) -> Iterator[dict[str, Any]]:
    """Every sample of a split once, in stored order, in this process (evaluation, export).

    Args:
        root: a shard source: a folder with manifest.json (read by index), or any source
            :mod:`multiview.data.location` resolves (folders and globs of tars, URL patterns and lists, ``s3://``
            prefixes, ``pipe:``), streamed.
        split: split name, e.g. "test".
        fields: field names without extension to decode (None: all).
        on_error: "raise" (default) or "skip" (skipped samples are logged and counted in the log).
        rename: ``{name in the sample: name in the shard}`` (streamed sources; e.g. ``{"image": "jpg"}``).
        mode: "auto", "indexed" or "stream" (see :func:`multiview.data.location.choose_mode`).
        options: timeouts and retries for URLs.

    Yields:
        Decoded sample dicts (see docs/architecture.md section 1).
    """
    source = resolve(root, split, options)
    if choose_mode(source, mode) == "stream":
        yield from iter_stream_samples(source, fields, on_error, rename)
        return
    policy = ErrorPolicy(on_error, f"iter_samples({root}, {split!r})")
    reader = ShardReader(source.root, split, fields, rename=rename)
    try:
        for shard, count in enumerate(reader.counts):
            for j in range(count):
                sample = policy.attempt(reader.read, shard, j)
                if sample is not None:
                    yield sample
    finally:
        reader.close()
        policy.report()
