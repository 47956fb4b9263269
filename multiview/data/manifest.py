"""``manifest.json``: what a shard folder holds, written last and atomically by the writer.

Layout (version 1)::

    {
      "format": "multiview-shards", "version": 1, "created": "2026-11-22T06:30:00Z",
      "builder": "mfeat", "builder_args": {...},
      "fields": {"image.png": {"modality": "image", "shape": [1, 28, 28], "dtype": "uint8"},
                 "audio.wav": {"modality": "audio", "shape": [1, null], "dtype": "float32", "sample_rate": 16000},
                 "cam0.png": {"modality": "camera", "camera_group": "cam", ...}, "label.cls": {...}},
      "splits": {"train": {"count": 1000, "fields": ["image.png", "label.cls"],
                           "shards": [{"name": "train-000000.tar", "count": 1000, "bytes": 123456}]}},
      "keys_sanitised": 0,
      "extra": {...}
    }

``shape`` is the decoded shape with ``null`` where samples differ; ``sample_rate`` is an int, or a list of the
rates seen when they differ.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from multiview.data.fields import AUDIO_EXTS, IMAGE_EXTS, split_field
from multiview.data.remote import IOOptions, is_local, open_write

MANIFEST_NAME = "manifest.json"
WRITING_MARKER = ".multiview-writing"  # present while write_dataset writes a folder: a crash leaves it behind
FORMAT = "multiview-shards"
VERSION = 1
# "mask": a per-pixel label image (ground truth for segmentation), never inferred: a builder declares it
MODALITIES = ("image", "audio", "sensor", "vector", "label", "meta", "camera", "mask")
_CAMERA_RE = re.compile(r"^(?P<group>(?:[A-Za-z0-9_-]*_)?cam(?:era)?)(?P<index>\d+)$")


class ManifestError(ValueError):
    """A manifest is missing, unreadable, or does not describe the folder."""


def infer_modality(field: str, info: dict[str, Any], audio: bool = False) -> tuple[str, str | None]:
    """Modality of a field from its extension, name and decoded shape -> (modality, camera_group or None).

    ``cam0.png, cam1.png`` (or ``left_cam0``, ``camera3``) -> camera (group: the name without its index); other
    images -> image; ``.wav .flac .ogg .mp3`` or an Audio ``.npy`` -> audio; ``.npy`` of rank 1 -> vector, higher
    rank -> sensor; ``.cls`` -> label; ``.json .txt`` -> meta.
    """
    name, ext = split_field(field)
    if ext in IMAGE_EXTS:
        match = _CAMERA_RE.match(name)
        if match:
            return "camera", match["group"]
        return "image", None
    if ext in AUDIO_EXTS or audio:
        return "audio", None
    if ext == "npy":
        return ("vector" if len(info.get("shape", [])) <= 1 else "sensor"), None
    if ext == "cls":
        return "label", None
    return "meta", None


def load_manifest(root: str | Path) -> dict[str, Any]:
    """Read and check ``root/manifest.json``; raises ManifestError naming the file and the problem."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        hint = " (shards without a manifest: the write did not finish)" if any(Path(root).glob("*.tar")) else ""
        raise ManifestError(f"{path}: no manifest{hint}; expected a folder written by multiview.data.write_dataset")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ManifestError(f"{path}: not valid JSON: {err}") from err
    return check_manifest(manifest, path)


def check_manifest(manifest: Any, where: str | Path) -> dict[str, Any]:
    """Check a parsed manifest (from a file or a URL) -> it; raises ManifestError naming ``where``."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        seen = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ManifestError(f"{where}: format is {seen!r}; expected {FORMAT!r}")
    if manifest.get("version") != VERSION:
        raise ManifestError(f"{where}: version {manifest.get('version')!r}; this reader knows version {VERSION}")
    for key in ("fields", "splits"):
        if not isinstance(manifest.get(key), dict):
            raise ManifestError(f"{where}: key {key!r} missing or not an object")
    for split, entry in manifest["splits"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("shards"), list) or "count" not in entry:
            raise ManifestError(f"{where}: splits.{split} needs 'count' and a 'shards' list")
    return manifest


def split_entry(manifest: dict[str, Any], split: str, root: str | Path = "") -> dict[str, Any]:
    """The manifest entry of one split; raises ManifestError listing the splits there are."""
    if split not in manifest["splits"]:
        raise ManifestError(
            f"{Path(root) / MANIFEST_NAME}: no split {split!r}; splits are {sorted(manifest['splits'])}"
        )
    return manifest["splits"][split]


def write_manifest(root: str | Path, manifest: dict[str, Any], options: IOOptions | None = None) -> Path | str:
    """Write ``root/manifest.json`` so that it exists whole or not at all; returns its path or URL.

    A local folder: temp file + fsync + rename. An fsspec URL (``s3://bucket/prefix``): one upload through
    :func:`multiview.data.remote.open_write` with ``options`` (an S3 object appears only when complete).
    """
    text = json.dumps(manifest, indent=2, default=str) + "\n"  # Paths in builder_args become strings
    if not is_local(str(root)):
        url = f"{str(root).rstrip('/')}/{MANIFEST_NAME}"
        with open_write(url, options or IOOptions()) as f:
            f.write(text.encode())
        return url
    root = Path(root)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".json", dir=root)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, root / MANIFEST_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return root / MANIFEST_NAME
