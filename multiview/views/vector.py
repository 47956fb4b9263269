"""Views of feature vectors (e.g. the mfeat descriptors) and of small arrays used as vectors.

Tabular-style augmentation: a multiplicative per-feature gain ``1 + noise * N(0, 1)`` (scale-free, so it needs no
statistics of the data) and feature dropout (each feature zeroed with probability ``dropout``, as in SCARF-like
corruption). Integer / uint8 inputs (a small grey image such as mfeat's ``pix``) become float32 in [0, 1].
"""

from __future__ import annotations

from typing import Any

import torch

from multiview.views.base import META, ViewGenerator, check_probability, get_field, register


@register("vector")
class VectorViews(ViewGenerator):
    """``n_views`` noisy copies of a vector field.

    Args:
        field: the sample field holding the vector (any shape; ``flatten`` makes it ``[D]``).
        n_views: views per sample (``view0`` ..; a single view is named ``view``).
        noise: sigma of the per-feature multiplicative gain ``1 + noise * N(0, 1)`` (0: none).
        dropout: probability of zeroing each feature (0: none).
        flatten: flatten the field to ``[D]`` (True) or keep its shape.

    In eval mode (``train=False``) the views are the clean vector.

    Examples:
        >>> gen = VectorViews(field="fac", n_views=2, noise=0.1, dropout=0.2)
        >>> views = gen({"__key__": "a", "fac": torch.ones(216)})
        >>> views["view0"].shape, gen.modality_of("view1")
        (torch.Size([216]), 'vector')
    """

    modality = "vector"

    def __init__(
        self,
        field: str = "vector",
        n_views: int = 1,
        noise: float = 0.0,
        dropout: float = 0.0,
        flatten: bool = True,
        *,
        seed: int = 0,
        train: bool = True,
    ):
        super().__init__(seed=seed, train=train)
        if not isinstance(n_views, int) or n_views < 1:
            raise ValueError(f"n_views must be a positive int, got {n_views!r}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        check_probability("dropout", dropout)
        self.field, self.n_views, self.noise, self.dropout, self.flatten = field, n_views, noise, dropout, flatten

    @property
    def view_names(self) -> tuple[str, ...]:
        return ("view",) if self.n_views == 1 else tuple(f"view{i}" for i in range(self.n_views))

    def _clean(self, sample: Any) -> torch.Tensor:
        value = get_field(sample, self.field) if isinstance(sample, dict) else sample
        x = torch.as_tensor(value)
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        elif not x.is_floating_point():
            x = x.float()
        x = x.float()
        return x.flatten() if self.flatten else x

    def generate(self, sample: Any, generator: torch.Generator) -> dict[str, Any]:
        x = self._clean(sample)
        out: dict[str, Any] = {}
        for name in self.view_names:
            view = x
            if self.train and self.noise > 0:
                view = view * (1.0 + self.noise * torch.randn(x.shape, generator=generator))
            if self.train and self.dropout > 0:
                keep = torch.rand(x.shape, generator=generator) >= self.dropout
                view = view * keep
            out[name] = view.contiguous()
        out[META] = {name: {} for name in self.view_names}
        return out
