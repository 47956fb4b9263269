"""The DIM encoder (Hjelm et al., ICLR 2019) for 32 px images.

conv 4x4/2 (pad 1) 64 -> 128 -> 256, each with BatchNorm and ReLU; flatten; FC 1024 (BN, ReLU); linear to
the 64-d global Y. The local map is the 2nd conv output: ``[B, 128, 8, 8]`` at 32 px (N = 64 locations).

Examples:
    >>> import torch
    >>> f = DIMEncoder()(torch.randn(2, 3, 32, 32))
    >>> tuple(f.global_.shape), tuple(f.local["s4"].shape)
    ((2, 64), (2, 128, 8, 8))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from .base import Encoder, check_input
from .features import Features


class DIMEncoder(Encoder):
    """DIM conv encoder.

    Args:
        in_chans: input channels.
        img_size: input side; must be divisible by ``2 ** len(widths)`` (the FC layer fixes it).
        widths: channels of the 4x4/2 convs.
        hidden: width of the FC layer.
        out_dim: global dim (DIM's Y in R^64).
        local_index: which conv's output is the local map (DIM: the 2nd, index 1); named ``"s<stride>"``.
        modality: optional tag.

    Shapes: ``x [B, in_chans, S, S]`` -> ``Features(global_ [B, out_dim], local {"s4": [B, widths[1], S/4, S/4]})``.
    """

    def __init__(
        self,
        in_chans: int = 3,
        img_size: int = 32,
        widths: Sequence[int] = (64, 128, 256),
        hidden: int = 1024,
        out_dim: int = 64,
        local_index: int = 1,
        modality: str | None = None,
    ):
        super().__init__()
        widths = tuple(widths)
        if not widths or any(not isinstance(w, int) or w <= 0 for w in widths):
            raise ValueError(f"DIMEncoder widths must be positive ints, got {widths!r}")
        if not isinstance(img_size, int) or img_size <= 0 or img_size % 2 ** len(widths):
            raise ValueError(f"DIMEncoder img_size must be a multiple of {2 ** len(widths)}, got {img_size!r}")
        if not 0 <= local_index < len(widths):
            raise ValueError(f"DIMEncoder local_index must be in [0, {len(widths)}), got {local_index!r}")
        self._set_config(
            "dim", in_chans=in_chans, img_size=img_size, widths=widths, hidden=hidden, out_dim=out_dim,
            local_index=local_index, modality=modality,
        )  # fmt: skip
        self.in_chans, self.img_size, self.local_index = in_chans, img_size, local_index
        chans = (in_chans, *widths)
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU())
            for a, b in zip(chans[:-1], chans[1:])
        )
        side = img_size // 2 ** len(widths)
        self.fc = nn.Sequential(
            nn.Linear(widths[-1] * side * side, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out_dim)
        )
        self.local_name = f"s{2 ** (local_index + 1)}"
        self.out_dim = out_dim
        self.local_dims = {self.local_name: widths[local_index]}

    def forward(self, x: torch.Tensor) -> Features:
        check_input(x, 4, self.in_chans, "DIM encoder", "[B, C, H, W]")
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"DIM encoder expects {self.img_size}x{self.img_size} inputs, got {tuple(x.shape)}")
        local = None
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i == self.local_index:
                local = x
        y = self.fc(rearrange(x, "b c h w -> b (c h w)"))
        return Features(y, {self.local_name: local})
