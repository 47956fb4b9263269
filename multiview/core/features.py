"""The contract between encoders and objectives."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Features:
    """What every encoder returns.

    Attributes:
        global_: pooled embedding ``[B, D]``.
        local: local feature maps by name, each ``[B, D_s, H_s, W_s]``. Names are strings: ``"r5"``/``"r7"`` for
            the AMDIM trunk (maps of 5x5 and 7x7 positions), ``"s8"``/``"s16"`` (stride) for timm trunks.
            Empty for encoders without spatial maps (MLPs).
    """

    global_: torch.Tensor
    local: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return self.global_.shape[0]

    def detach(self) -> Features:
        return Features(self.global_.detach(), {k: v.detach() for k, v in self.local.items()})

    def to(self, *args, **kwargs) -> Features:
        return Features(self.global_.to(*args, **kwargs), {k: v.to(*args, **kwargs) for k, v in self.local.items()})
