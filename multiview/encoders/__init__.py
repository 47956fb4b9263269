"""Per-modality encoders: ``x -> Features(global_ [B, D], local {name: [B, D_l, H, W]})``.

Kinds (``create(kind, **kwargs)``; ``kwargs`` are the class arguments):

- ``"timm"``: :class:`~multiview.encoders.timm_encoder.TimmEncoder`, any timm model, local maps by stride.
- ``"amdim"``: :class:`~multiview.encoders.amdim.AmdimEncoder`, the padding-free AMDIM trunk (r1, r5, r7);
  the trunks ``amdim_small`` / ``amdim_base`` / ``amdim_large`` are registered with timm on import.
- ``"dim"``: :class:`~multiview.encoders.dim.DIMEncoder`, the DIM 32 px conv encoder.
- ``"mlp"``: :class:`~multiview.encoders.mlp.MLPEncoder`, vector features ``[B, F]``.
- ``"conv1d"``: :class:`~multiview.encoders.conv1d.Conv1dEncoder`, sensor arrays ``[B, C, T]``.

Every encoder has ``out_dim``, ``local_dims`` and ``config`` (``create(**enc.config)`` rebuilds it);
:func:`~multiview.encoders.export.save_encoder` / :func:`~multiview.encoders.export.load_encoder` store and
rebuild one. Add a kind with ``@register("name")`` on a class or function that returns an encoder.

Examples:
    >>> import torch
    >>> enc = create("mlp", in_dim=76, out_dim=32)
    >>> enc(torch.randn(4, 76)).global_.shape
    torch.Size([4, 32])
"""

from __future__ import annotations

from typing import Any

from multiview.registry import Registry

from .features import Features

ENCODERS = Registry("encoder")
register = ENCODERS.register


def create(kind: str, **kwargs: Any):
    """Build a registered encoder: ``create("timm", model_name="resnet18", local_scales=("s8",))``."""
    if not isinstance(kind, str):
        raise ValueError(f"encoder kind must be a string such as 'timm', got {kind!r}")
    return ENCODERS.create(kind, **kwargs)


def names() -> list[str]:
    """Registered encoder kinds."""
    return ENCODERS.names()


# Importing the modules registers the kinds (and the amdim_* trunks with timm).
from .amdim import AmdimEncoder, AmdimTrunk  # noqa: E402
from .conv1d import Conv1dEncoder  # noqa: E402
from .dim import DIMEncoder  # noqa: E402
from .export import load_encoder, save_encoder  # noqa: E402
from .heads import MLPHead, ResidualMLP  # noqa: E402
from .mlp import MLPEncoder  # noqa: E402
from .timm_encoder import TimmEncoder  # noqa: E402

register("timm")(TimmEncoder)
register("amdim")(AmdimEncoder)
register("dim")(DIMEncoder)
register("mlp")(MLPEncoder)
register("conv1d")(Conv1dEncoder)

__all__ = [
    "ENCODERS",
    "AmdimEncoder",
    "AmdimTrunk",
    "Conv1dEncoder",
    "DIMEncoder",
    "Features",
    "MLPEncoder",
    "MLPHead",
    "ResidualMLP",
    "TimmEncoder",
    "create",
    "load_encoder",
    "names",
    "register",
    "save_encoder",
]
