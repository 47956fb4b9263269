"""Read one shard front to back as a stream of samples (no seek, no index), and decode them safely.

Bytes come from our opener (:func:`multiview.data.remote.open_stream`: timeouts, bounded retries, resumed HTTP
reads); members from :func:`multiview.data.tarformat.stream_members` (which, unlike ``tarfile``, notices a tar
cut between two members, and is about 4x cheaper per member); samples from webdataset's ``group_by_keys`` stage
(WebDataset's key rule). Decoding is ours
(:func:`multiview.data.fields.decode_value`): nothing is unpickled, ``.pth .pyd .pickle`` are refused.

Every failure is a :class:`ShardError` naming the URL (and the key and field where there is one).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from webdataset.filters import reraise_exception
from webdataset.tariterators import group_by_keys

from multiview.data.errors import ShardError
from multiview.data.expect import SplitSpec, field_problem
from multiview.data.fields import KNOWN_EXTS, FieldError, decode_value
from multiview.data.remote import IOOptions, RemoteError, open_stream
from multiview.data.tarformat import stream_members

log = logging.getLogger("multiview.data")
_META_KEYS = ("__key__", "__url__", "__local_path__")
_META_MEMBER = re.compile(r"__[^/]*__($|/)")


def raw_samples(url: str, options: IOOptions | None = None) -> Iterator[dict[str, Any]]:
    """The samples of one shard in stored order: ``{"__key__", "__url__", "<field>": bytes, ...}``.

    A shard that cannot be opened, is cut short (inside a member, or between two: the end-of-archive marker is
    missing) or is not a tar raises ShardError naming the URL and how many samples came before; the samples
    before it are yielded first (streaming cannot know the end in advance).
    """
    options = options or IOOptions()
    try:
        stream = open_stream(url, options)
    except RemoteError as err:
        raise ShardError(url, getattr(err, "cause", None) or str(err)) from None
    done = 0
    try:
        files = _files(url, stream_members(stream))
        for sample in group_by_keys(files, handler=reraise_exception):
            yield sample
            done += 1
    except RemoteError as err:
        raise ShardError(url, f"{getattr(err, 'cause', err)} (after {done} complete sample(s))") from None
    except (OSError, EOFError, ValueError) as err:  # tarformat's cuts and corrupt headers, a broken decompressor
        raise ShardError(url, f"{err} (after {done} complete sample(s))") from None
    finally:
        stream.close()


def _files(url: str, members: Iterator[tuple[str, bytes]]) -> Iterator[dict[str, Any]]:
    """Members as webdataset's ``group_by_keys`` takes them; ``__meta__`` members are skipped, as webdataset does."""
    for name, data in members:
        if not _META_MEMBER.match(name):
            yield {"fname": name, "data": data, "__url__": url}


def field_ext(field: str) -> str:
    """``"image.png"`` -> ``"png"``; a bare extension (``"jpg"``, foreign shards' usual field) is its own ext."""
    return field.rpartition(".")[2].lower()


def field_name(field: str) -> str:
    """``"image.png"`` -> ``"image"``; ``"jpg"`` -> ``"jpg"`` (what a recipe names it by)."""
    return field.rpartition(".")[0] or field


def decode_raw(
    raw: Mapping[str, Any],
    fields: Sequence[str] | None = None,
    rename: Mapping[str, str] | None = None,
    ignored: set[str] | None = None,
    spec: SplitSpec | None = None,
) -> dict[str, Any]:
    """Decode a raw sample -> ``{"__key__", "__shard__", <name>: value, <name>.sample_rate: int, ...}``.

    Args:
        raw: ``{"__key__", "__url__", "<field>": bytes}`` from :func:`raw_samples`.
        fields: names (without extension, shard names or rename targets) to decode; None decodes every field
            whose extension we know and leaves out the others (their names are added to ``ignored``).
        rename: ``{name in the batch: name in the shard}``, e.g. ``{"image": "jpg", "label": "cls"}``.
        ignored: collects the fields left out (so the caller can say so once).
        spec: what the split's manifest promises (:class:`~multiview.data.expect.SplitSpec`): with ``fields``
            None, every field it lists must be there; a decoded field must have its fixed dims and dtype.

    Raises:
        ShardError naming the URL, key and field: a missing field, bytes that do not decode, a shape or dtype
        the manifest does not allow, NaN / inf in a float ``.npy``.
    """
    url, key = str(raw.get("__url__", "?")), str(raw["__key__"])
    by_name = {field_name(f): f for f in raw if f not in _META_KEYS}
    source_of = dict(rename or {})
    target_of = {source: target for target, source in source_of.items()}
    if fields is None:
        wanted = [n for n, f in by_name.items() if field_ext(f) in KNOWN_EXTS]
        if ignored is not None:
            ignored.update(f for n, f in by_name.items() if n not in wanted)
    else:
        wanted = [source_of.get(name, name) for name in fields]
    if fields is None and spec is not None:
        missing = spec.missing(by_name.values())
        if missing:
            cause = f"missing field; the manifest lists it for the split and the sample has {sorted(by_name.values())}"
            raise ShardError(url, cause, key, missing[0])
    sample: dict[str, Any] = {"__key__": key, "__shard__": url}
    for name in wanted:
        member = by_name.get(name)
        if member is None:
            raise ShardError(url, f"missing field; the sample has {sorted(by_name.values())}", key, name)
        try:
            value = decode_value(field_ext(member), raw[member])
        except FieldError as err:
            raise ShardError(url, str(err), key, member) from None
        problem = field_problem(member, value, spec.specs.get(member) if spec is not None else None)
        if problem is not None:
            raise ShardError(url, problem, key, member)
        out = target_of.get(name, name)
        if isinstance(value, tuple):  # audio: (waveform, sample rate)
            sample[out], sample[f"{out}.sample_rate"] = value
        else:
            sample[out] = value
    return sample
