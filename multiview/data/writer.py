"""Write samples to WebDataset shards plus a manifest (docs/shards.md).

Shards are plain POSIX tars with deterministic headers (mtime 0, no owner), so the same samples give
byte-identical shards; any WebDataset reader can read them.
"""

from __future__ import annotations

import io
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from multiview.data.fields import Audio, FieldError, check_field_name, encode_value
from multiview.data.manifest import (
    FORMAT,
    MANIFEST_NAME,
    MODALITIES,
    VERSION,
    WRITING_MARKER,
    infer_modality,
    write_manifest,
)
from multiview.data.remote import IOOptions, RemoteError, is_local, list_tars, open_write, remove

_KEY_BAD_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_]+$")
_TAR_BLOCK = 512


# What ``extra.pairing`` says for each level; the evaluation reads the level from the text's start
# (multiview.eval.tasks.pairing_level): "instance..." pairs row i of one field with row i of another,
# "class..." only with the rows of the same label.
PAIRING_TEXT = {
    "instance": "instance: every field of a sample comes from the same instance (row i of one field goes with "
    "row i of another)",
    "class": "class: the fields of a sample share only their class label (paired at random within the class): "
    "class-level retrieval only",
}


class WriteError(ValueError):
    """A sample cannot be written; the message names the split, the key, the field (and file) and the cause."""


def sanitize_key(key: Any) -> str:
    """A key safe in a tar member name: every character outside ``[A-Za-z0-9_-]`` becomes ``_``.

    WebDataset splits a member name at the first dot of its basename, so a key ``"a.b"`` would silently
    read back as key ``"a"`` with a field ``"b.<ext>"``; slashes would create folders.

    >>> sanitize_key("img.001/left")
    'img_001_left'
    """
    if isinstance(key, bool) or not isinstance(key, str | int):
        raise WriteError(f"__key__ must be a str or an int; got {type(key).__name__} {key!r}")
    text = str(key)
    if not text:
        raise WriteError("__key__ is empty; expected a non-empty str")
    return _KEY_BAD_CHARS.sub("_", text)


class _ShardSink:
    """Rolls samples over ``<split>-%06d.tar`` files by maxcount / maxsize and records what each holds.

    ``publish(path, name)``, when given, is called with each finished shard (e.g. to upload it, then delete it).
    """

    def __init__(
        self, root: Path, split: str, maxcount: int, maxsize: int, publish: Callable[[Path, str], None] | None = None
    ):
        self.root, self.split, self.maxcount, self.maxsize = root, split, maxcount, maxsize
        self.publish = publish
        self.shards: list[dict[str, Any]] = []
        self._tar: tarfile.TarFile | None = None
        self._bytes = 0

    def _open_next(self) -> None:
        self.close()
        name = f"{self.split}-{len(self.shards):06d}.tar"
        self._tar = tarfile.open(self.root / name, "w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 (closed in close())
        self.shards.append({"name": name, "count": 0, "bytes": 0})
        self._bytes = 0

    def add(self, key: str, members: list[tuple[str, bytes]]) -> None:
        size = sum(_TAR_BLOCK + -(-len(data) // _TAR_BLOCK) * _TAR_BLOCK for _, data in members)
        current = self.shards[-1] if self.shards else None
        full = current is not None and (current["count"] >= self.maxcount or self._bytes + size > self.maxsize)
        # an oversized sample still goes into the (empty) current shard rather than an endless chain of new ones
        if current is None or (full and current["count"] > 0):
            self._open_next()
        for field, data in members:
            info = tarfile.TarInfo(f"{key}.{field}")
            info.size, info.mtime, info.mode = len(data), 0, 0o444
            self._tar.addfile(info, io.BytesIO(data))
        self._bytes += size
        self.shards[-1]["count"] += 1

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            name = self.shards[-1]["name"]
            self.shards[-1]["bytes"] = (self.root / name).stat().st_size
            self._tar = None
            if self.publish is not None:
                self.publish(self.root / name, name)


def _merge_info(seen: dict[str, Any], info: dict[str, Any], where: str) -> None:
    """Fold one sample's field description into the running one (shape dims that differ become None)."""
    if not seen:
        seen.update(info, sample_rates={info["sample_rate"]} if "sample_rate" in info else set())
        seen.pop("sample_rate", None)
        return
    if info.get("dtype") != seen.get("dtype"):
        raise WriteError(f"{where}: dtype {info.get('dtype')} differs from the first sample's {seen.get('dtype')}")
    if "shape" in info:
        if len(info["shape"]) != len(seen["shape"]):
            raise WriteError(f"{where}: shape {info['shape']} has a different rank than the first sample's")
        seen["shape"] = [a if a == b else None for a, b in zip(seen["shape"], info["shape"])]
    if "sample_rate" in info:
        seen["sample_rates"].add(info["sample_rate"])


def _sample_members(sample: Mapping[str, Any], where: str) -> tuple[Any, dict[str, Any]]:
    if not isinstance(sample, Mapping):
        raise WriteError(f"{where}: a sample must be a dict; got {type(sample).__name__}")
    if "__key__" not in sample:
        raise WriteError(f"{where}: sample has no '__key__' (fields: {sorted(sample)})")
    fields = {k: v for k, v in sample.items() if k != "__key__"}
    for field in fields:
        try:
            check_field_name(field)
        except FieldError as err:
            raise WriteError(f"{where}, key {sample['__key__']!r}: {err}") from None
    return sample["__key__"], fields


def _write_split(
    root: Path,
    split: str,
    samples: Iterable,
    maxcount: int,
    maxsize: int,
    infos: dict,
    publish: Callable[[Path, str], None] | None = None,
) -> dict:
    """Write one split; returns its manifest entry and fills ``infos`` {field: merged description}."""
    sink, keys, field_set, renamed = _ShardSink(root, split, maxcount, maxsize, publish), {}, None, 0
    audio_npy: set[str] = set()
    try:
        for index, sample in enumerate(samples):
            where = f"split {split!r}, sample #{index}"
            raw_key, fields = _sample_members(sample, where)
            key = sanitize_key(raw_key)
            renamed += key != str(raw_key)
            if key in keys:
                raise WriteError(f"{where}: key {raw_key!r} (stored as {key!r}) repeats sample #{keys[key]}'s key")
            keys[key] = index
            if field_set is None:
                field_set = sorted(fields)
            elif sorted(fields) != field_set:
                missing, extra = sorted(set(field_set) - set(fields)), sorted(set(fields) - set(field_set))
                raise WriteError(
                    f"{where}, key {raw_key!r}: fields differ from the first sample's {field_set}: "
                    f"missing {missing}, extra {extra}"
                )
            members = []
            for field in field_set:
                value = fields[field]
                where_field = f"{where}, key {raw_key!r}, field {field!r}" + (
                    f" (file {value})" if isinstance(value, Path) else ""
                )
                try:
                    data, info = encode_value(field, value)
                except FieldError as err:
                    raise WriteError(f"{where_field}: {err}") from None
                if isinstance(value, Audio) and field.endswith(".npy"):
                    audio_npy.add(field)
                    info["sample_rate"] = int(value.sample_rate)
                _merge_info(infos.setdefault(field, {}), info, where_field)
                members.append((field, data))
            sink.add(key, members)
    finally:
        sink.close()
    for field in audio_npy:
        infos[field]["audio"] = True
    count = sum(s["count"] for s in sink.shards)
    return {"count": count, "fields": field_set or [], "shards": sink.shards, "keys_sanitised": renamed}


def _clear_previous(root: Path, splits: Iterable[str]) -> None:
    """Remove an old manifest first (so a crash from here on is detectable), then the old shards of each split."""
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    for split in splits:
        for old in root.glob(f"{split}-[0-9][0-9][0-9][0-9][0-9][0-9].tar"):
            old.unlink()


def _url_join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


def _clear_previous_url(root: str, splits: Iterable[str], options: IOOptions) -> None:
    """``_clear_previous`` for an fsspec URL (a prefix holding shards, or nothing yet)."""
    remove(_url_join(root, MANIFEST_NAME), options)
    try:
        tars = list_tars(root, options)
    except RemoteError:  # a new prefix, or one without tars: nothing to clear (a real I/O error shows on write)
        return
    old_names = re.compile(rf"^({'|'.join(map(re.escape, splits))})-[0-9]{{6}}\.tar$")
    for url in tars:
        if old_names.match(url.rpartition("/")[2]):
            remove(url, options)


def _uploader(root: str, options: IOOptions) -> Callable[[Path, str], None]:
    """Streams a finished local shard to ``root/<name>`` through ``open_write``, then deletes the local copy."""

    def publish(path: Path, name: str) -> None:
        with path.open("rb") as src, open_write(_url_join(root, name), options) as dst:
            shutil.copyfileobj(src, dst, 8 << 20)
        path.unlink()

    return publish


def _field_entry(field: str, info: dict[str, Any], modalities: Mapping[str, str]) -> dict[str, Any]:
    rates = sorted(info.pop("sample_rates", set()))
    audio = info.pop("audio", False)
    modality, group = infer_modality(field, info, audio=audio)
    modality = modalities.get(field, modality)
    entry: dict[str, Any] = {"modality": modality, **info}
    if rates:
        entry["sample_rate"] = rates[0] if len(rates) == 1 else rates
    if modality == "camera":
        entry["camera_group"] = group or field.rpartition(".")[0].rstrip("0123456789")
    return entry


def write_dataset(
    out_dir: str | Path,
    splits: Mapping[str, Iterable[Mapping[str, Any]]],
    *,
    builder: str | None = None,
    builder_args: Mapping[str, Any] | None = None,
    maxcount: int = 1000,
    maxsize: int = 256 << 20,
    extra: Mapping[str, Any] | None = None,
    modalities: Mapping[str, str] | None = None,
    io_options: IOOptions | None = None,
    pairing: str | None = None,
) -> dict[str, Any]:
    """Write samples to ``out_dir/<split>-000000.tar, ...`` and then, last and atomically, ``manifest.json``.

    Args:
        out_dir: a local folder, created if needed, or an fsspec URL (``s3://bucket/prefix``, ...). An old
            manifest and old shards of the splits written are removed first, so a crash leaves shards without a
            manifest (detected by every reader; a local folder also keeps a ``.multiview-writing`` marker).
        splits: ``{split_name: iterable of samples}``; a sample is ``{"__key__": str | int, "<name>.<ext>":
            value}`` (values: see docs/architecture.md section 1). Every sample of a split has the same fields.
        builder, builder_args: recorded in the manifest (how to rebuild the data set).
        maxcount: at most this many samples per shard.
        maxsize: a new shard starts before a sample would take a shard over this many bytes.
        extra: free-form JSON recorded under ``"extra"``.
        modalities: ``{"<name>.<ext>": modality}`` overriding the inferred modality of a field.
        io_options: timeouts, retries and fsspec storage options for a URL ``out_dir`` (s3: endpoint, keys).
        pairing: ``"instance"`` or ``"class"``: how the fields of a sample are paired, recorded as
            ``extra.pairing`` (:data:`PAIRING_TEXT`), which cross-view retrieval reads to choose instance- or
            class-level metrics. None records nothing (retrieval then assumes instance pairing).

    Returns:
        The manifest (also in ``out_dir/manifest.json``).

    Raises:
        WriteError (a ValueError) naming the split, sample, key, field (and file) and the cause;
        RemoteError (an OSError) when a URL cannot be written.

    Examples:
        >>> import numpy as np, tempfile
        >>> m = write_dataset(tempfile.mkdtemp(), {"train": [{"__key__": "a.1", "x.npy": np.zeros(3)}]})
        >>> m["splits"]["train"]["count"], m["keys_sanitised"]
        (1, 1)
    """
    modalities = _check_arguments(splits, maxcount, maxsize, modalities)
    extra = dict(extra or {})
    if pairing is not None:
        if pairing not in PAIRING_TEXT:
            raise ValueError(f"pairing is {pairing!r}; expected one of {sorted(PAIRING_TEXT)} or None")
        if "pairing" in extra:
            raise ValueError(f"pairing={pairing!r} and extra['pairing']={extra['pairing']!r}; give one of them")
        extra["pairing"] = PAIRING_TEXT[pairing]
    infos: dict[str, dict[str, Any]] = {}
    if is_local(str(out_dir)):
        root = Path(out_dir)
        root.mkdir(parents=True, exist_ok=True)
        _clear_previous(root, splits)
        (root / WRITING_MARKER).touch()
        split_entries = {
            split: _write_split(root, split, samples, maxcount, maxsize, infos) for split, samples in splits.items()
        }
    else:
        root, options = str(out_dir), io_options or IOOptions()
        _clear_previous_url(root, splits, options)
        # each shard is built in a local staging folder (the same bytes as a local write), then streamed up
        with tempfile.TemporaryDirectory(prefix="multiview-shards-") as staging:
            publish = _uploader(root, options)
            split_entries = {
                split: _write_split(Path(staging), split, samples, maxcount, maxsize, infos, publish)
                for split, samples in splits.items()
            }
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "builder": builder,
        "builder_args": dict(builder_args or {}),
        "fields": {field: _field_entry(field, info, modalities) for field, info in sorted(infos.items())},
        "splits": split_entries,
        "keys_sanitised": sum(e.pop("keys_sanitised") for e in split_entries.values()),
        "extra": extra,
    }
    write_manifest(root, manifest, io_options)
    if isinstance(root, Path):
        (root / WRITING_MARKER).unlink(missing_ok=True)
    return manifest


def _check_arguments(splits: Any, maxcount: int, maxsize: int, modalities: Mapping[str, str] | None) -> dict:
    """Validate write_dataset's arguments; returns the modalities as a dict."""
    if not isinstance(splits, Mapping) or not splits:
        raise ValueError(f"splits must be a non-empty dict {{split_name: samples}}; got {type(splits).__name__}")
    if maxcount < 1 or maxsize < 1:
        raise ValueError(f"maxcount and maxsize must be >= 1; got maxcount={maxcount}, maxsize={maxsize}")
    modalities = dict(modalities or {})
    for field, modality in modalities.items():
        if modality not in MODALITIES:
            raise ValueError(f"modalities[{field!r}] is {modality!r}; expected one of {MODALITIES}")
    for split in splits:
        if not isinstance(split, str) or not _SPLIT_RE.match(split):
            raise ValueError(f"split name {split!r} must match [A-Za-z0-9_]+ (it prefixes the shard file names)")
    return modalities
