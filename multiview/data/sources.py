"""Sample sources for ``multiview shards write``: a folder tree, or a CSV / JSONL table of file paths.

Folder tree: ``SRC/<sample>/<name>.<ext>`` (one sub-folder per sample, each file one field; the folder name is
the key), or with ``split_dirs`` ``SRC/<split>/<sample>/<name>.<ext>``.

Table: one row per sample; columns ``<name>.<ext>`` are fields, optional ``__key__`` (or ``key``) and
``split`` columns. Image, audio (``.wav .flac .ogg .mp3``) and ``.npy`` cells are file paths (relative to the table's folder); ``.cls``
cells are ints, ``.txt`` cells text, ``.json`` cells JSON text in a CSV or any JSON value in a JSONL line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from multiview.data.fields import AUDIO_EXTS, IMAGE_EXTS, FieldError, check_field_name

_FILE_EXTS = IMAGE_EXTS | AUDIO_EXTS | {"npy"}


class SourceError(ValueError):
    """A source (folder, table row, cell) is malformed; the message names the file and the reason."""


def folder_samples(src: Path) -> Iterator[dict[str, Any]]:
    """Samples of a folder tree ``src/<sample>/<field files>``, in sorted key order."""
    if not src.is_dir():
        raise SourceError(f"{src}: not a folder; expected one sub-folder per sample")
    for sample_dir in sorted(p for p in src.iterdir() if not p.name.startswith(".")):
        if not sample_dir.is_dir():
            raise SourceError(f"{sample_dir}: a file where a sample folder was expected (one sub-folder per sample)")
        sample: dict[str, Any] = {"__key__": sample_dir.name}
        for path in sorted(p for p in sample_dir.iterdir() if not p.name.startswith(".")):
            if not path.is_file():
                raise SourceError(f"{path}: not a file; a sample folder holds one file per field")
            try:
                check_field_name(path.name)
            except FieldError as err:
                raise SourceError(f"{path}: {err}") from None
            sample[path.name] = path
        if len(sample) == 1:
            raise SourceError(f"{sample_dir}: empty sample folder")
        yield sample


def folder_splits(src: str | Path, split: str = "train", split_dirs: bool = False) -> dict[str, Iterator]:
    """``{split: samples}`` of a folder tree (``split_dirs``: one sub-folder per split)."""
    src = Path(src)
    if not split_dirs:
        return {split: folder_samples(src)}
    if not src.is_dir():
        raise SourceError(f"{src}: not a folder; expected one sub-folder per split")
    dirs = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise SourceError(f"{src}: no split folders found")
    return {d.name: folder_samples(d) for d in dirs}


def _cell(value: Any, field: str, base: Path, where: str) -> Any:
    """One table cell -> a sample value (a Path for file fields, an int / str / JSON value otherwise)."""
    ext = field.rpartition(".")[2].lower()
    if ext in _FILE_EXTS:
        if not isinstance(value, str) or not value:
            raise SourceError(f"{where}: expected a file path; got {value!r}")
        path = Path(value) if Path(value).is_absolute() else base / value
        if not path.is_file():
            raise SourceError(f"{where}: file not found: {path}")
        return path
    if ext == "cls":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SourceError(f"{where}: expected an int label; got {value!r}") from None
    if ext == "json" and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as err:
            raise SourceError(f"{where}: invalid JSON text: {err}") from None
    return value if ext == "json" else str(value)


def _table_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row dict) of a CSV or JSONL file."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            for row in reader:
                yield reader.line_num, row
        return
    with path.open() as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise SourceError(f"{path} line {line_no}: invalid JSON: {err}") from None
            if not isinstance(row, dict):
                raise SourceError(f"{path} line {line_no}: expected a JSON object; got {type(row).__name__}")
            yield line_no, row


def table_splits(path: str | Path, split: str = "train") -> dict[str, list[dict[str, Any]]]:
    """``{split: samples}`` of a CSV (``.csv``) or JSONL (any other suffix) table of fields."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: file not found")
    splits: dict[str, list[dict[str, Any]]] = {}
    for line_no, row in _table_rows(path):
        where = f"{path} line {line_no}"
        sample: dict[str, Any] = {"__key__": row.get("__key__", row.get("key", f"{line_no:08d}"))}
        for column, value in row.items():
            if column in ("__key__", "key", "split"):
                continue
            try:
                check_field_name(column)
            except FieldError as err:
                raise SourceError(f"{where}, column {column!r}: {err}") from None
            sample[column] = _cell(value, column, path.parent, f"{where}, column {column!r}")
        splits.setdefault(str(row.get("split") or split), []).append(sample)
    if not splits:
        raise SourceError(f"{path}: no rows")
    return splits
