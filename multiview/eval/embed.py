"""Embed fields of a stream of decoded samples with frozen encoders, in batches.

Works on any iterable of decoded sample dicts (``multiview.data.iter_samples(dir, split)`` in the CLI; a list in
tests), in one pass over the samples for all requested fields, so each sample is decoded once.

Examples:
    >>> import torch
    >>> from multiview.encoders.features import Features
    >>> class Mean(torch.nn.Module):
    ...     def forward(self, x): return Features(x.mean(-1, keepdim=True))
    >>> samples = [{"__key__": str(i), "v": torch.full((3,), float(i)), "label": i % 2} for i in range(5)]
    >>> out = embed_samples(samples, {"v": (Mean(), lambda s: s["v"])}, batch_size=2)
    >>> out["v"].embeddings.shape, out["v"].labels.tolist(), out["v"].keys[:2]
    (torch.Size([5, 1]), [0, 1, 0, 1, 0], ['0', '1'])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class Embedded:
    """One field's embeddings of a split, in sample order.

    Attributes:
        embeddings: ``[N, D]`` float32 on CPU.
        labels: ``[N]`` int64 numpy array, or None when the samples carry no label field.
        keys: the N sample keys.
    """

    embeddings: torch.Tensor
    labels: np.ndarray | None
    keys: list[str]


def sample_label(sample: dict, label_field: str | None) -> int | None:
    """The sample's integer label, None when ``label_field`` is None or absent from the sample."""
    if label_field is None or label_field not in sample:
        return None
    value = sample[label_field]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(
            f"label field {label_field!r} of sample {sample.get('__key__')!r} is {value!r}; expected an int (.cls)"
        )
    return int(value)


def collect_labels(labels: list[int | None], label_field: str | None, keys: list[str]) -> np.ndarray | None:
    """``[N]`` labels, None if no sample has one; every sample or none must be labelled."""
    missing = [k for k, y in zip(keys, labels) if y is None]
    if len(missing) == len(labels):
        return None
    if missing:
        raise ValueError(
            f"label field {label_field!r} is missing from {len(missing)} of {len(labels)} samples "
            f"(first: {missing[0]!r}); expected every sample to carry it"
        )
    return np.asarray(labels, dtype=np.int64)


def _stack(inputs: list[torch.Tensor], field: str, keys: list[str]) -> torch.Tensor:
    """``[B, ...]`` from the transform outputs of one batch; unequal shapes name the field and the samples."""
    shapes = {tuple(x.shape) for x in inputs}
    if len(shapes) > 1:
        first = keys[len(keys) - len(inputs)]
        raise ValueError(
            f"the eval transform of field {field!r} gave inputs of different shapes {sorted(shapes)} in the batch "
            f"starting at sample {first!r}; expected one fixed shape (crop or pad in the transform)"
        )
    return torch.stack(inputs)


def _global_embedding(encoder: nn.Module, batch: torch.Tensor, field: str) -> torch.Tensor:
    out = encoder(batch)
    if not hasattr(out, "global_"):
        raise TypeError(f"the encoder of field {field!r} returned {type(out).__name__}; expected Features")
    return out.global_.detach().float().cpu()


def embed_samples(
    samples: Iterable[dict],
    encoders: dict[str, tuple[nn.Module, Callable[[dict], torch.Tensor]]],
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    label_field: str | None = "label",
) -> dict[str, Embedded]:
    """Embed several fields of the same samples in one pass.

    Args:
        samples: decoded sample dicts (each with ``"__key__"``).
        encoders: ``{field: (encoder, transform)}``; ``transform(sample) -> [C, ...]`` input without batch axis.
        batch_size: samples per encoder call.
        device: where the encoders run (they are moved there and put in eval mode).
        label_field: the field holding the class label, or None.

    Returns:
        ``{field: Embedded}`` with ``embeddings [N, D]`` in sample order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not encoders:
        raise ValueError("no fields to embed; expected at least one {field: (encoder, transform)}")
    for enc, _ in encoders.values():
        enc.to(device).eval()
    keys: list[str] = []
    labels: list[int | None] = []
    pending: dict[str, list[torch.Tensor]] = {f: [] for f in encoders}
    done: dict[str, list[torch.Tensor]] = {f: [] for f in encoders}

    def flush() -> None:
        for f, (enc, _) in encoders.items():
            if pending[f]:
                done[f].append(_global_embedding(enc, _stack(pending[f], f, keys).to(device), f))
                pending[f] = []

    with torch.inference_mode():
        for sample in samples:
            keys.append(str(sample.get("__key__", len(keys))))
            labels.append(sample_label(sample, label_field))
            for f, (_, transform) in encoders.items():
                pending[f].append(transform(sample))
            if len(keys) % batch_size == 0:
                flush()
        flush()
    if not keys:
        raise ValueError("no samples to embed (the split is empty)")
    y = collect_labels(labels, label_field, keys)
    return {f: Embedded(torch.cat(done[f]), y, keys) for f in encoders}


def embed_field(
    samples: Iterable[dict],
    encoder: nn.Module,
    transform: Callable[[dict], torch.Tensor],
    field: str,
    **kwargs,
) -> Embedded:
    """Embed one field: :func:`embed_samples` with a single entry."""
    return embed_samples(samples, {field: (encoder, transform)}, **kwargs)[field]
