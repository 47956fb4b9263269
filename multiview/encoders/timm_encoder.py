"""Any timm model as a multiview encoder: a global vector and local maps from ONE forward pass.

The trunk is ``timm.create_model(model_name, num_classes=0, in_chans=...)``, so its state dict has timm's own
key names (the export writes them to a file that ``timm.create_model(..., pretrained=True,
pretrained_cfg_overlay=dict(file=...))`` loads). Local maps come from ``forward_intermediates`` (CNN stages,
ViT blocks reshaped to NCHW); the global vector is the model's own pooled output of the same pass.

Local scale names:
    ``"sN"``: the deepest feature map of stride N (``feature_info`` reduction), e.g. ``"s8"``, ``"s16"``.
        For a ViT every block has stride = patch size, so ``"s16"`` is its last block.
    ``"iK"``: the K-th entry of ``feature_info`` (CNN stage or ViT block; negative K counts from the end).

Examples:
    >>> import torch
    >>> enc = TimmEncoder("test_resnet", local_scales=("s8",), out_dim=16)
    >>> f = enc(torch.randn(2, 3, 32, 32))
    >>> tuple(f.global_.shape), tuple(f.local["s8"].shape)
    ((2, 16), (2, 48, 4, 4))
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
from torch import nn

from .base import Encoder, check_input, check_names
from .features import Features
from .heads import ResidualMLP, make_head

_SCALE = re.compile(r"^(s|i)(-?\d+)$")


def check_trunk_args(model_name: Any, kwargs: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """The checks every timm-trunk encoder makes before ``timm.create_model(model_name, num_classes=0,
    in_chans=..., **kwargs)``: a registered model name, and extra kwargs (``what`` names the argument) that leave
    the arguments the encoder sets itself alone. Returns the kwargs as a dict; ValueError naming the value."""
    if not isinstance(model_name, str) or not timm.is_model(model_name):
        raise ValueError(f"model_name {model_name!r} is not a registered timm model (see timm.list_models())")
    kwargs = dict(kwargs or {})
    for reserved in ("num_classes", "in_chans", "pretrained", "features_only"):
        if reserved in kwargs:
            raise ValueError(f"{what} must not set {reserved!r} (got {kwargs[reserved]!r})")
    return kwargs


def resolve_scales(names: Sequence[str], feature_info: list[dict[str, Any]], model_name: str) -> list[int]:
    """Map scale names (``"s8"``, ``"i3"``) to indices into ``feature_info`` (see the module docstring)."""
    strides = [int(f["reduction"]) for f in feature_info]
    out = []
    for name in names:
        match = _SCALE.match(name)
        if match is None:
            raise ValueError(f"local scale {name!r}: expected 's<stride>' (e.g. 's8') or 'i<index>' (e.g. 'i2')")
        tag, num = match.group(1), int(match.group(2))
        if tag == "s":
            hits = [i for i, s in enumerate(strides) if s == num]
            if not hits:
                raise ValueError(f"local scale {name!r}: {model_name} has no map of stride {num} (has {strides})")
            out.append(hits[-1])
        else:
            if not -len(strides) <= num < len(strides):
                raise ValueError(f"local scale {name!r}: index {num} out of range for {len(strides)} maps")
            out.append(num % len(strides))
    return out


class TimmEncoder(Encoder):
    """A timm trunk with an optional global projection head and optional 1x1 residual heads on local maps.

    Args:
        model_name: any ``timm.list_models()`` name (or a registered ``amdim_*`` trunk).
        in_chans: input channels (1 for grey images and spectrograms).
        local_scales: names of the local maps to return (see the module docstring); ``()`` for none.
        out_dim: global output dim; None keeps the trunk's pooled width (``head`` must then be ``"none"``).
        head: global head ``"none" | "linear" | "mlp" | "residual"``; default ``"mlp"`` if ``out_dim`` else
            ``"none"``.
        head_hidden: hidden width of an ``"mlp"`` / ``"residual"`` head.
        local_dim: if set, every local map goes through its own :class:`ResidualMLP` (1x1, identity-initialised
            shortcut) to ``local_dim`` channels, e.g. to dot them with the global vector.
        pretrained: forwarded to timm; keep False here (hub downloads fail offline).
        model_kwargs: extra kwargs for ``timm.create_model`` (``img_size``, ``dynamic_img_size``, ...).
        modality: optional tag (``"image"``, ``"audio"``, ...).

    Shapes: ``x [B, in_chans, H, W]`` -> ``Features(global_ [B, out_dim], local {name: [B, D_l, H/s, W/s]})``.
    """

    def __init__(
        self,
        model_name: str,
        in_chans: int = 3,
        local_scales: Sequence[str] = (),
        out_dim: int | None = None,
        head: str | None = None,
        head_hidden: int | None = None,
        local_dim: int | None = None,
        pretrained: bool = False,
        model_kwargs: Mapping[str, Any] | None = None,
        modality: str | None = None,
    ):
        super().__init__()
        model_kwargs = check_trunk_args(model_name, model_kwargs, "model_kwargs")
        local_scales = check_names(local_scales, "local_scales")
        head = head or ("mlp" if out_dim is not None else "none")
        self._set_config(
            "timm", model_name=model_name, in_chans=in_chans, local_scales=local_scales, out_dim=out_dim,
            head=head, head_hidden=head_hidden, local_dim=local_dim, pretrained=pretrained,
            model_kwargs=model_kwargs, modality=modality,
        )  # fmt: skip
        self.in_chans = in_chans
        self.trunk = timm.create_model(
            model_name, pretrained=pretrained, num_classes=0, in_chans=in_chans, **model_kwargs
        )
        if not hasattr(self.trunk, "forward_intermediates"):
            raise ValueError(f"timm model {model_name!r} has no forward_intermediates; pick another model")
        info = list(self.trunk.feature_info)
        self.scale_names = local_scales
        self._indices = resolve_scales(local_scales, info, model_name)
        # The pooled width is head_hidden_size where a model has a pre-logits layer (mobilenetv3: 1024, not 288).
        pooled = int(getattr(self.trunk, "head_hidden_size", None) or self.trunk.num_features)
        self.global_head, self.out_dim = make_head(head, pooled, out_dim, hidden_dim=head_hidden)
        raw = {n: int(info[i]["num_chs"]) for n, i in zip(local_scales, self._indices)}
        if local_dim is None:
            self.local_heads = nn.ModuleDict()
            self.local_dims = raw
        else:
            self.local_heads = nn.ModuleDict({n: ResidualMLP(c, local_dim) for n, c in raw.items()})
            self.local_dims = dict.fromkeys(raw, local_dim)

    def timm_spec(self) -> tuple[str, dict[str, Any]]:
        return self.config["model_name"], {"in_chans": self.in_chans, **self.config["model_kwargs"]}

    def trunk_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One trunk pass: ``x [B, C, H, W]`` -> (pooled ``[B, F]``, raw local maps ``{name: [B, C_s, h, w]}``)."""
        if not self._indices:
            return self.trunk(x), {}
        wanted = sorted(set(self._indices))
        final, maps = self.trunk.forward_intermediates(x, indices=wanted, intermediates_only=False)
        by_index = dict(zip(wanted, maps))
        pooled = self.trunk.forward_head(final, pre_logits=True)
        return pooled, {n: by_index[i] for n, i in zip(self.scale_names, self._indices)}

    def forward(self, x: torch.Tensor) -> Features:
        check_input(x, 4, self.in_chans, f"timm encoder {self.config['model_name']!r}", "[B, C, H, W]")
        pooled, maps = self.trunk_forward(x)
        local = {n: (self.local_heads[n](m) if n in self.local_heads else m) for n, m in maps.items()}
        return Features(self.global_head(pooled), local)
