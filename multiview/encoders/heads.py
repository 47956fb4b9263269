"""Projection heads: the DIM / AMDIM 1x1 residual MLP and plain MLP heads.

The residual MLP (Hjelm et al. 2019, Bachman et al. 2019) is ``y = norm(W_s x + MLP(x))`` where the linear
shortcut ``W_s`` starts as the (rectangular) identity, so at initialisation the head passes its input through
and training only has to learn a correction. The same weights act on vectors ``[B, C]`` and, as 1x1
convolutions, on feature maps ``[B, C, H, W]``.

Examples:
    >>> import torch
    >>> head = ResidualMLP(8, 16, hidden_dim=32)
    >>> head(torch.randn(4, 8)).shape
    torch.Size([4, 16])
    >>> head(torch.randn(4, 8, 5, 5)).shape
    torch.Size([4, 16, 5, 5])
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

NORMS = ("none", "batch", "layer")
HEADS = ("none", "linear", "mlp", "residual")


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def make_norm(norm: str, dim: int) -> nn.Module:
    """A norm over the last (channel) axis of ``[N, dim]``: ``"batch"``, ``"layer"`` or ``"none"``."""
    _check_choice("norm", norm, NORMS)
    if norm == "batch":
        return nn.BatchNorm1d(dim)
    if norm == "layer":
        return nn.LayerNorm(dim)
    return nn.Identity()


class _ChannelHead(nn.Module):
    """Base: applies ``self._vector`` to ``[B, C]`` or, per location, to ``[B, C, H, W]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C_in]`` -> ``[B, C_out]``, or ``[B, C_in, H, W]`` -> ``[B, C_out, H, W]``."""
        if x.ndim == 2:
            return self._vector(x)
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects [B, C] or [B, C, H, W], got shape {tuple(x.shape)}")
        b, _, h, w = x.shape
        # Every location is one sample of a 1x1 conv; BatchNorm then normalises over (B, H, W) as BatchNorm2d.
        y = self._vector(rearrange(x, "b c h w -> (b h w) c"))
        return rearrange(y, "(b h w) c -> b c h w", b=b, h=h, w=w)

    def _vector(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class ResidualMLP(_ChannelHead):
    """DIM / AMDIM residual MLP head: ``norm(W_s x + W_2 relu(W_1 x + b_1) + b_2)``.

    Args:
        in_dim: input channels ``C_in``.
        out_dim: output channels ``C_out``.
        hidden_dim: hidden units of the residual branch (defaults to ``out_dim``).
        norm: ``"none"``, ``"batch"`` (AMDIM puts BN on its embeddings) or ``"layer"`` (DIM's critic).
        zero_init_residual: start the branch's last layer at zero, so that at initialisation the head is
            exactly its shortcut (``norm`` aside).

    The shortcut ``W_s`` is ``eye(C_out, C_in)`` at initialisation: the input when ``C_in == C_out``, the input
    zero-padded (``C_out > C_in``) or truncated (``C_out < C_in``) otherwise. It has no bias.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int | None = None,
        norm: str = "none",
        zero_init_residual: bool = False,
    ):
        super().__init__()
        _check_positive("in_dim", in_dim)
        _check_positive("out_dim", out_dim)
        hidden_dim = out_dim if hidden_dim is None else hidden_dim
        _check_positive("hidden_dim", hidden_dim)
        self.in_dim, self.out_dim = in_dim, out_dim
        self.branch = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))
        self.shortcut = nn.Linear(in_dim, out_dim, bias=False)
        self.norm = make_norm(norm, out_dim)
        with torch.no_grad():
            self.shortcut.weight.copy_(torch.eye(out_dim, in_dim))
            if zero_init_residual:
                self.branch[-1].weight.zero_()
                self.branch[-1].bias.zero_()

    def _vector(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.shortcut(x) + self.branch(x))


class MLPHead(_ChannelHead):
    """Plain MLP projection head: ``(Linear -> norm -> ReLU) x n_hidden -> Linear``.

    Args:
        in_dim: input channels.
        out_dim: output channels.
        hidden_dim: width of every hidden layer (defaults to ``in_dim``).
        n_layers: number of Linear layers (>= 1; 1 is a linear head).
        norm: norm after each hidden Linear: ``"batch"`` (SimCLR-style), ``"layer"`` or ``"none"``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int | None = None,
        n_layers: int = 2,
        norm: str = "batch",
    ):
        super().__init__()
        _check_positive("in_dim", in_dim)
        _check_positive("out_dim", out_dim)
        _check_positive("n_layers", n_layers)
        hidden_dim = in_dim if hidden_dim is None else hidden_dim
        _check_positive("hidden_dim", hidden_dim)
        self.in_dim, self.out_dim = in_dim, out_dim
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(n_layers - 1):
            layers += [nn.Linear(width, hidden_dim), make_norm(norm, hidden_dim), nn.ReLU()]
            width = hidden_dim
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def _vector(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_head(
    kind: str, in_dim: int, out_dim: int | None, hidden_dim: int | None = None, norm: str | None = None
) -> tuple[nn.Module, int]:
    """Build a projection head by name; returns ``(module, output_dim)``.

    Args:
        kind: ``"none"`` (identity, ``out_dim`` must be None or ``in_dim``), ``"linear"``, ``"mlp"`` (2 layers)
            or ``"residual"`` (:class:`ResidualMLP`).
        in_dim: input channels.
        out_dim: output channels; None keeps ``in_dim``.
        hidden_dim: hidden width for ``"mlp"`` / ``"residual"``.
        norm: override of the head's default norm (``"batch"`` inside ``"mlp"``, ``"none"`` for ``"residual"``).
    """
    _check_choice("head", kind, HEADS)
    out = in_dim if out_dim is None else out_dim
    if kind == "none":
        if out != in_dim:
            raise ValueError(f"head='none' keeps the trunk's {in_dim} channels, got out_dim={out_dim!r}")
        return nn.Identity(), in_dim
    if kind == "linear":
        # An MLPHead with one layer, so a "linear" head also acts on maps as a 1x1 conv.
        return MLPHead(in_dim, out, n_layers=1), out
    if kind == "mlp":
        return MLPHead(in_dim, out, hidden_dim=hidden_dim, n_layers=2, norm=norm or "batch"), out
    return ResidualMLP(in_dim, out, hidden_dim=hidden_dim, norm=norm or "none"), out
