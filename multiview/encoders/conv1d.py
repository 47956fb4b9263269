"""1-D conv encoder for sensor arrays ``[B, C, T]`` (accelerometers, tactile arrays, EEG, ...).

Local maps follow the 2-D contract of ``Features``: a 1-D map ``[B, D, T']`` is returned as ``[B, D, 1, T']``
(one row), named by its temporal stride, e.g. ``"s8"``.

Examples:
    >>> import torch
    >>> enc = Conv1dEncoder(in_chans=6, widths=(16, 32, 64), out_dim=32, local_scales=("s4",))
    >>> f = enc(torch.randn(2, 6, 128))
    >>> tuple(f.global_.shape), tuple(f.local["s4"].shape)
    ((2, 32), (2, 32, 1, 32))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from .base import Encoder, check_input, check_names
from .features import Features
from .heads import make_head


class Conv1dEncoder(Encoder):
    """Stacked ``Conv1d(k, stride 2, 'same'-like padding) -> BN -> ReLU`` blocks, then global average pooling.

    Args:
        in_chans: sensor channels C.
        widths: channels of each block; block i has temporal stride ``2 ** (i + 1)``.
        kernel_size: odd temporal kernel size.
        out_dim: global dim; None keeps ``widths[-1]`` (no head).
        head: global head ``"none" | "linear" | "mlp" | "residual"``; default ``"linear"`` if ``out_dim``.
        local_scales: block outputs to return as local maps, by stride (``"s4"`` = 2nd block).
        modality: optional tag.

    Shapes: ``x [B, C, T]`` -> ``Features(global_ [B, out_dim], local {"sN": [B, D_N, 1, ceil(T / N)]})``.
    """

    def __init__(
        self,
        in_chans: int,
        widths: Sequence[int] = (32, 64, 128, 128),
        kernel_size: int = 5,
        out_dim: int | None = 128,
        head: str | None = None,
        local_scales: Sequence[str] = (),
        modality: str | None = None,
    ):
        super().__init__()
        widths = tuple(widths)
        if not widths or any(not isinstance(w, int) or w <= 0 for w in widths):
            raise ValueError(f"Conv1dEncoder widths must be positive ints, got {widths!r}")
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"Conv1dEncoder kernel_size must be an odd int >= 1, got {kernel_size!r}")
        local_scales = check_names(local_scales, "local_scales")
        strides = {f"s{2 ** (i + 1)}": i for i in range(len(widths))}
        for name in local_scales:
            if name not in strides:
                raise ValueError(f"Conv1dEncoder local scale {name!r} not available (have {sorted(strides)})")
        head = head or ("linear" if out_dim is not None else "none")
        self._set_config(
            "conv1d", in_chans=in_chans, widths=widths, kernel_size=kernel_size, out_dim=out_dim, head=head,
            local_scales=local_scales, modality=modality,
        )  # fmt: skip
        chans = (in_chans, *widths)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv1d(a, b, kernel_size, 2, kernel_size // 2, bias=False), nn.BatchNorm1d(b), nn.ReLU())
            for a, b in zip(chans[:-1], chans[1:])
        )
        self.in_chans = in_chans
        self._take = {strides[n]: n for n in local_scales}
        self.head, self.out_dim = make_head(head, widths[-1], out_dim)
        self.local_dims = {n: widths[strides[n]] for n in local_scales}

    def forward(self, x: torch.Tensor) -> Features:
        check_input(x, 3, self.in_chans, "conv1d encoder", "[B, C, T]")
        local = {}
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self._take:
                local[self._take[i]] = rearrange(x, "b d t -> b d 1 t")
        return Features(self.head(x.mean(dim=-1)), local)
