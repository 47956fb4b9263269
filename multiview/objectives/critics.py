"""Critic heads used inside objectives: the 1x1 residual MLP of DIM/AMDIM and plain MLP discriminators.

(Kept here so objectives do not depend on the encoder package's heads; the maths is the same.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn


class ResidualMLP(nn.Module):
    """``y = norm(shortcut(x) + W2 relu(W1 x))`` applied per position (a 1x1 conv on maps).

    The linear shortcut starts as the identity (zero-padded or truncated when ``in_dim != out_dim``), so at
    initialisation the critic scores start as plain dot products of the features (DIM's encode-and-dot critic).

    Args:
        in_dim: input channels C.
        out_dim: output channels U.
        hidden_dim: hidden units (default ``out_dim``).
        norm: ``"layer"`` (DIM), ``"batch"`` (AMDIM's embeddings) or ``"none"``.

    Shapes: ``[B, C] -> [B, U]`` and ``[B, C, H, W] -> [B, U, H, W]``.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None, norm: str = "layer"):
        super().__init__()
        if in_dim <= 0 or out_dim <= 0:
            raise ValueError(f"in_dim, out_dim: expected positive sizes, got {in_dim}, {out_dim}")
        if norm not in ("layer", "batch", "none"):
            raise ValueError(f"norm: expected 'layer', 'batch' or 'none', got {norm!r}")
        hidden_dim = hidden_dim or out_dim
        self.block = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))
        self.shortcut = nn.Linear(in_dim, out_dim, bias=False)
        with torch.no_grad():
            self.shortcut.weight.copy_(torch.eye(out_dim, in_dim))
        self.norm = {"layer": nn.LayerNorm(out_dim), "batch": nn.BatchNorm1d(out_dim), "none": nn.Identity()}[norm]

    def _vectors(self, x: torch.Tensor) -> torch.Tensor:
        """``[K, C] -> [K, U]``."""
        return self.norm(self.shortcut(x) + self.block(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return self._vectors(x)
        if x.dim() != 4:
            raise ValueError(f"x: expected [B, C] or [B, C, H, W], got shape {tuple(x.shape)}")
        b, _, h, w = x.shape
        out = self._vectors(rearrange(x, "b c h w -> (b h w) c"))
        return rearrange(out, "(b h w) u -> b u h w", b=b, h=h, w=w)


def mlp(dims: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """``Linear(d0, d1) -> act -> ... -> Linear(d_{n-1}, d_n)`` (no activation after the last layer)."""
    if len(dims) < 2:
        raise ValueError(f"dims: expected at least [in, out], got {list(dims)}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)
