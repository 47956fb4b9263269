"""MLP encoder for vector features (e.g. the mfeat views: Fourier, Zernike, pixel averages, ...).

Examples:
    >>> import torch
    >>> enc = MLPEncoder(in_dim=76, hidden=(64,), out_dim=16)
    >>> enc(torch.randn(8, 76)).global_.shape
    torch.Size([8, 16])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import Encoder, check_input
from .features import Features
from .heads import make_norm


class MLPEncoder(Encoder):
    """``(Linear -> norm -> ReLU -> dropout) x len(hidden) -> Linear``; no local maps.

    With ``skip``, a linear shortcut from the (normalised) input is added to the output,
    ``y = W_s x + MLP(x)`` as in DIM's residual head: the features then keep what a linear map of the input
    carries, which the ReLU path alone learns slowly (mfeat's Karhunen-Loeve coefficients are nearly a linear
    function of its pixels).

    Args:
        in_dim: input features F.
        hidden: hidden widths (``()`` gives a linear encoder).
        out_dim: output dim D.
        norm: ``"batch"``, ``"layer"`` or ``"none"`` after each hidden Linear.
        dropout: dropout probability after each hidden layer.
        input_norm: standardise inputs with a BatchNorm first (vector features often differ in scale by 1e3).
        skip: add a linear shortcut ``W_s x`` (after the input norm) to the output.
        modality: optional tag.

    Shapes: ``x [B, F]`` -> ``Features(global_ [B, D], local {})``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int] = (512, 512),
        out_dim: int = 128,
        norm: str = "batch",
        dropout: float = 0.0,
        input_norm: bool = True,
        skip: bool = False,
        modality: str | None = None,
    ):
        super().__init__()
        hidden = tuple(hidden)
        for name, value in [("in_dim", in_dim), ("out_dim", out_dim), *(("hidden", h) for h in hidden)]:
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"MLPEncoder {name} must be a positive int, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLPEncoder dropout must be in [0, 1), got {dropout!r}")
        self._set_config(
            "mlp", in_dim=in_dim, hidden=hidden, out_dim=out_dim, norm=norm, dropout=dropout,
            input_norm=input_norm, skip=skip, modality=modality,
        )  # fmt: skip
        layers: list[nn.Module] = [nn.BatchNorm1d(in_dim)] if input_norm else []
        width = in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), make_norm(norm, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        # A separate module, so that checkpoints without the shortcut keep their parameter names.
        self.skip = nn.Linear(in_dim, out_dim) if skip else None
        self.n_input_layers = 1 if input_norm else 0
        self.in_dim, self.out_dim, self.local_dims = in_dim, out_dim, {}

    def forward(self, x: torch.Tensor) -> Features:
        check_input(x, 2, self.in_dim, "MLP encoder", "[B, F]")
        if self.skip is None:
            return Features(self.net(x))
        x = self.net[: self.n_input_layers](x)
        return Features(self.net[self.n_input_layers :](x) + self.skip(x))
