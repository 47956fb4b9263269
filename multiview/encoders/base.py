"""What every encoder shares: the ``config`` it was built from and input checks at the edge."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn


def jsonable(value: Any) -> Any:
    """Tuples -> lists (recursively) so a config survives ``json.dumps`` and rebuilds the same encoder."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


class Encoder(nn.Module):
    """Base class: ``forward(x) -> Features`` plus ``out_dim``, ``local_dims``, ``config`` and ``modality``.

    ``config`` holds ``kind`` and the ``create`` kwargs; ``multiview.encoders.create(**config)`` rebuilds an
    encoder of the same shape (export / load rely on it).
    """

    out_dim: int
    local_dims: dict[str, int]
    config: dict[str, Any]
    modality: str | None

    def timm_spec(self) -> tuple[str, dict[str, Any]] | None:
        """``(model_name, create_model kwargs)`` of a timm trunk at ``self.trunk``, or None (not timm-based)."""
        return None

    def _set_config(self, kind: str, **kwargs: Any) -> None:
        self.config = {"kind": kind, **jsonable(kwargs)}
        self.modality = kwargs.get("modality")


def check_input(x: torch.Tensor, ndim: int, channels: int, what: str, layout: str) -> None:
    """Raise ValueError unless ``x`` is ``ndim``-D with ``channels`` channels on axis 1."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{what} expects a torch.Tensor {layout}, got {type(x).__name__}")
    if x.ndim != ndim or x.shape[1] != channels:
        raise ValueError(f"{what} expects input {layout} with C={channels}, got shape {tuple(x.shape)}")


def check_names(names: Sequence[str], what: str) -> tuple[str, ...]:
    """A tuple of distinct strings (a bare string is refused: ``"s8"`` would read as ``("s", "8")``)."""
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{what} must be a sequence of strings such as ('s8', 's16'), got {names!r}")
    names = tuple(names)
    if len(set(names)) != len(names):
        raise ValueError(f"{what} has duplicates: {names!r}")
    return names
