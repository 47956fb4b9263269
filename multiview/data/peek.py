"""The fields of shards without a manifest, inferred from the first samples (member extensions, decoded shapes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from multiview.data.errors import ShardError
from multiview.data.fields import FieldError, decode_value, describe
from multiview.data.manifest import infer_modality
from multiview.data.tarstream import field_ext, raw_samples

if TYPE_CHECKING:
    from multiview.data.location import SplitSource

PEEK_SAMPLES = 8
_META = ("__key__", "__url__", "__local_path__")


def field_info(field: str, data: bytes) -> dict[str, Any]:
    """What one member says about its field: modality, and shape / dtype / rate when it decodes."""
    ext = field_ext(field)
    try:
        info = describe(ext, decode_value(ext, data))
    except FieldError as err:
        return {"modality": "meta", "decodes": False, "note": str(err)}
    name = field if "." in field else f"{field}.{ext}"
    modality, group = infer_modality(name, info, audio=False)
    entry = {"modality": modality, **info}
    if group:
        entry["camera_group"] = group
    return entry


def peek_fields(source: SplitSource, n: int = PEEK_SAMPLES) -> dict[str, dict[str, Any]]:
    """``{field: info}`` from the first ``n`` samples of the first readable shard of ``source``.

    A field missing from some of those samples gets ``"in": "k of n"``. Raises ShardError when no shard opens.
    """
    errors = []
    for url in source.urls[:3]:
        samples = []
        try:
            for raw in raw_samples(url, source.options):
                samples.append(raw)
                if len(samples) >= n:
                    break
        except ShardError as err:
            errors.append(str(err))
            if not samples:
                continue
        if samples:
            return _fields_of(samples)
    raise ShardError(source.spec, "no sample could be read to infer the fields: " + "; ".join(errors or ["empty"]))


def _fields_of(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    fields: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    for raw in samples:
        for field, data in raw.items():
            if field in _META:
                continue
            seen[field] = seen.get(field, 0) + 1
            if field not in fields:
                fields[field] = field_info(field, data)
    for field, count in seen.items():
        if count < len(samples):
            fields[field]["in"] = f"{count} of {len(samples)}"
    return dict(sorted(fields.items()))
