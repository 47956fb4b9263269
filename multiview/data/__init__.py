"""WebDataset shards: write (with a manifest), read as a deterministic stream, verify and inspect.

Writing::

    from multiview.data import Audio, write_dataset
    write_dataset("shards/toy", {"train": samples}, builder="toy", maxcount=1000)

Reading for training (no ``accelerator.prepare`` on this loader: ranks and workers are split here)::

    from multiview.data import ShardStream, make_loader
    stream = ShardStream("shards/toy", "train", map_fn=views, batch_size=64, seed=0)
    loader = make_loader(stream, num_workers=2)
    for epoch in range(epochs):
        stream.set_epoch(epoch)
        for batch in loader: ...          # stream.state_dict() -> {"epoch", "batches"} for resuming

Streaming any WebDataset source (folders or globs of tars without a manifest, URL patterns, ``s3://``, ``pipe:``)::

    stream = WebStream("https://host/train-{000000..000127}.tar", "train", rename={"image": "jpg"},
                       map_fn=views, batch_size=64, epoch_size=100_000)

Reading for evaluation: ``for sample in iter_samples("shards/toy", "test"): ...`` (any source).
The format is documented in docs/shards.md.
"""

import importlib
from typing import TYPE_CHECKING

# Exports load on first use (PEP 562), so `multiview shards --help` and other light imports of
# multiview.data.cli do not pay for importing torch.
_EXPORTS = {
    "Audio": "fields",
    "FieldError": "fields",
    "MANIFEST_NAME": "manifest",
    "ManifestError": "manifest",
    "load_manifest": "manifest",
    "ShardError": "errors",
    "ShardReader": "reader",
    "iter_samples": "reader",
    "ShardStream": "stream",
    "WebStream": "webstream",
    "SplitSource": "location",
    "SourceError": "location",
    "resolve": "location",
    "collate": "batching",
    "epoch_plan": "stream",
    "make_loader": "batching",
    "WriteError": "writer",
    "sanitize_key": "writer",
    "write_dataset": "writer",
}
__all__ = [
    "MANIFEST_NAME",
    "Audio",
    "FieldError",
    "ManifestError",
    "ShardError",
    "ShardReader",
    "ShardStream",
    "SourceError",
    "SplitSource",
    "WebStream",
    "WriteError",
    "collate",
    "epoch_plan",
    "iter_samples",
    "load_manifest",
    "make_loader",
    "resolve",
    "sanitize_key",
    "write_dataset",
]

if TYPE_CHECKING:
    from multiview.data.batching import collate, make_loader
    from multiview.data.errors import ShardError
    from multiview.data.fields import Audio, FieldError
    from multiview.data.location import SourceError, SplitSource, resolve
    from multiview.data.manifest import MANIFEST_NAME, ManifestError, load_manifest
    from multiview.data.reader import ShardReader, iter_samples
    from multiview.data.stream import ShardStream, epoch_plan
    from multiview.data.webstream import WebStream
    from multiview.data.writer import WriteError, sanitize_key, write_dataset


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'multiview.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"multiview.data.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
