"""The AMDIM trunk (Bachman et al. 2019): a padding-free residual conv net with a fixed receptive field.

No layer pads, so every output location sees one fixed window of the input and nothing else; AMDIM's NCE
tasks between locations rely on that (a location cannot peek at its neighbours through padding). The trunk is
registered with timm (``timm.create_model("amdim_small")`` once ``multiview.encoders`` is imported), so it is
exported and reloaded like any timm model.

Layouts (``img_size`` picks the stem and the stage strides, ``ndf`` the width); map sides at the nominal size:

- 32 (CIFAR-like): stem 3x3/1 32 -> 30; stages 4x4/2, 2x2/2: 30 -> 14 -> 7 (r7).
- 64 (STL-like): stem 3x3/1 64 -> 62; stages 4x4/2, 4x4/2, 2x2/2: 62 -> 30 -> 14 -> 7 (r7).
- 128 (ImageNet-like): stem 5x5/2 128 -> 62; then as 64.

After r7 come three 3x3/1 blocks: 7 -> 5 (r5) -> 3 -> 1 (r1, the final map, ``embed_dim`` channels).
Smaller inputs fail (the final map would be empty); larger ones work and every map grows with the input.
Exactly r7 = 7x7, r5 = 5x5, r1 = 1x1 come out for sides 32-35 (``img_size=32``), 64-71 (64) and 127-142
(128): those sides round down to the same maps; at twice the nominal side the maps are 15, 13 and 9.
``AmdimTrunk.map_sizes(side)`` computes the sides and ``receptive_field(index)`` the (window, jump) of each
output: (8, 4), (16, 4), (32, 4) for r7, r5, r1 at 32; (16, 8), (32, 8), (64, 8) at 64; (31, 16), (63, 16),
(127, 16) at 128.

Examples:
    >>> import torch
    >>> trunk = AmdimTrunk(img_size=64, ndf=8, embed_dim=32)
    >>> [tuple(m.shape) for m in trunk.forward_intermediates(torch.randn(1, 3, 64, 64), intermediates_only=True)]
    [(1, 64, 7, 7), (1, 64, 5, 5), (1, 32, 1, 1)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from .base import Encoder, check_input
from .features import Features
from .heads import ResidualMLP
from .timm_encoder import check_trunk_args

# (stem kernel, stem stride, [(width multiplier of ndf, kernel, stride), ...] up to and including r7)
_LAYOUTS: dict[int, tuple[int, int, list[tuple[int, int, int]]]] = {
    32: (3, 1, [(2, 4, 2), (4, 2, 2)]),
    64: (3, 1, [(2, 4, 2), (4, 4, 2), (8, 2, 2)]),
    128: (5, 2, [(2, 4, 2), (4, 4, 2), (8, 2, 2)]),
}
NAMES = ("r7", "r5", "r1")


class PaddingFreeBlock(nn.Module):
    """``y = act(branch(x) + shortcut(x))`` where both paths see exactly the same k x k / s window.

    branch: conv k x k / s (no padding) -> [BN] -> ReLU -> conv 1x1; shortcut: average pool k x k / s (no padding)
    -> 1x1 conv when the width changes. Then ``n_extra`` residual 1x1 blocks add depth without widening the
    receptive field. ``[B, C_in, H, W]`` -> ``[B, C_out, (H - k) // s + 1, (W - k) // s + 1]``.
    """

    def __init__(self, c_in: int, c_out: int, k: int, s: int, n_extra: int, use_bn: bool, final_act: bool = True):
        super().__init__()
        self.k, self.s, self.final_act = k, s, final_act
        norm = nn.BatchNorm2d(c_out) if use_bn else nn.Identity()
        self.branch = nn.Sequential(nn.Conv2d(c_in, c_out, k, s, 0), norm, nn.ReLU(), nn.Conv2d(c_out, c_out, 1))
        self.proj = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()
        self.extra = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_out, c_out, 1), nn.ReLU(), nn.Conv2d(c_out, c_out, 1)) for _ in range(n_extra)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.branch(x) + self.proj(F.avg_pool2d(x, self.k, self.s))
        for block in self.extra:
            y = F.relu(y)
            y = y + block(y)
        return F.relu(y) if self.final_act else y


class AmdimTrunk(nn.Module):
    """Padding-free AMDIM trunk: ``x [B, C, H, W]`` -> r7 ``[B, 8*ndf or 4*ndf, 7, 7]``, r5, r1 ``[B, E, 1, 1]``.

    Args:
        img_size: layout, 32, 64 or 128 (see the module docstring).
        in_chans: input channels.
        ndf: base width; stages use 2, 4 (and 8) times it.
        embed_dim: channels of the final map r1 (AMDIM's n_rkhs before its heads).
        n_depth: 1x1 residual blocks per stage (depth without receptive-field growth), >= 0.
        use_bn: BatchNorm inside the residual branches (AMDIM's default is off: BN only on the embeddings).
        num_classes: timm convention; > 0 adds a linear classifier on the pooled r1.
        global_pool: ``"avg"`` pools the final map to ``[B, E]`` (a no-op mean at the nominal 1x1).
    """

    def __init__(
        self,
        img_size: int = 32,
        in_chans: int = 3,
        ndf: int = 64,
        embed_dim: int = 512,
        n_depth: int = 1,
        use_bn: bool = False,
        num_classes: int = 0,
        global_pool: str = "avg",
        **kwargs: Any,
    ):
        super().__init__()
        if img_size not in _LAYOUTS:
            raise ValueError(f"AmdimTrunk img_size must be one of {sorted(_LAYOUTS)}, got {img_size!r}")
        if global_pool != "avg":
            raise ValueError(f"AmdimTrunk global_pool must be 'avg', got {global_pool!r}")
        for name, value in (("in_chans", in_chans), ("ndf", ndf), ("embed_dim", embed_dim)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"AmdimTrunk {name} must be a positive int, got {value!r}")
        if not isinstance(n_depth, int) or n_depth < 0:
            raise ValueError(f"AmdimTrunk n_depth must be an int >= 0, got {n_depth!r}")
        unknown = set(kwargs) - {"drop_rate", "drop_path_rate"}  # timm may pass these; the trunk has no dropout
        if unknown:
            raise ValueError(f"AmdimTrunk got unexpected arguments {sorted(unknown)}")
        k0, s0, stages = _LAYOUTS[img_size]
        self.img_size, self.num_classes, self.global_pool = img_size, num_classes, global_pool
        self.stem = nn.Sequential(nn.Conv2d(in_chans, ndf, k0, s0, 0), nn.ReLU())
        self._geometry = [(k0, s0)]
        blocks, width = [], ndf
        for mult, k, s in stages:
            blocks.append(PaddingFreeBlock(width, ndf * mult, k, s, n_depth, use_bn))
            width = ndf * mult
        r7_at = len(blocks) - 1
        blocks.append(PaddingFreeBlock(width, width, 3, 1, n_depth, use_bn))  # 7 -> 5: r5
        blocks.append(PaddingFreeBlock(width, width, 3, 1, n_depth, use_bn))  # 5 -> 3
        blocks.append(PaddingFreeBlock(width, embed_dim, 3, 1, n_depth, use_bn, final_act=False))  # 3 -> 1: r1
        self.stages = nn.Sequential(*blocks)
        self._geometry += [(b.k, b.s) for b in blocks]
        self._take = [r7_at, r7_at + 1, len(blocks) - 1]  # stage indices of r7, r5, r1
        stride = s0 * int(torch.tensor([b.s for b in blocks[: r7_at + 1]]).prod())
        chans = [width, width, embed_dim]
        self.feature_info = [
            dict(num_chs=c, reduction=stride, module=f"stages.{i}", name=n) for c, i, n in zip(chans, self._take, NAMES)
        ]
        self.num_features = self.head_hidden_size = embed_dim
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    # -- geometry -------------------------------------------------------------------------------------------
    def map_sizes(self, side: int) -> dict[str, int]:
        """Side lengths of r7, r5 and r1 for an input side ``side`` (0 or less: input too small)."""
        sides = [side]
        for k, s in self._geometry:
            sides.append((sides[-1] - k) // s + 1)
        return {n: sides[i + 2] for n, i in zip(NAMES, self._take)}

    def receptive_field(self, index: int) -> tuple[int, int]:
        """``(window, jump)`` of output ``index`` (0 = r7, 1 = r5, 2 = r1): location (i, j) sees input rows
        ``[i * jump, i * jump + window)`` and the same columns, and nothing else (no padding anywhere)."""
        window, jump = 1, 1
        for k, s in self._geometry[: self._take[index] + 2]:
            window += (k - 1) * jump
            jump *= s
        return window, jump

    # -- timm interface -------------------------------------------------------------------------------------
    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Maps r7, r5, r1 (``feature_info`` order) selected by ``indices`` (timm semantics: an int takes the
        last n, None all), plus the final map unless ``intermediates_only``."""
        if output_fmt != "NCHW":
            raise ValueError(f"AmdimTrunk output_fmt must be 'NCHW', got {output_fmt!r}")
        n = len(self._take)
        if indices is None:
            wanted = list(range(n))
        elif isinstance(indices, int):
            wanted = list(range(n - indices, n))
        else:
            wanted = [i % n for i in indices]
        take = {self._take[i] for i in wanted}
        out = []
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in take:
                out.append(x)
        return out if intermediates_only else (x, out)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> final map ``[B, E, h, w]`` (1x1 at the nominal size)."""
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Final map ``[B, E, h, w]`` -> ``[B, E]`` (or class logits)."""
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()


def _cfg(img_size: int) -> dict[str, Any]:
    # num_classes=0 as the default: loading an exported trunk file with num_classes=0 then stays strict.
    return dict(
        url="", num_classes=0, input_size=(3, img_size, img_size), pool_size=None, interpolation="bicubic",
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), first_conv="stem.0", classifier="head",
        license="apache-2.0",
    )  # fmt: skip


default_cfgs = generate_default_cfgs(
    {"amdim_small.untrained": _cfg(32), "amdim_base.untrained": _cfg(64), "amdim_large.untrained": _cfg(128)}
)


def _create(variant: str, pretrained: bool, defaults: dict[str, Any], **kwargs: Any) -> AmdimTrunk:
    return build_model_with_cfg(
        AmdimTrunk,
        variant,
        pretrained,
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2)),
        **{**defaults, **kwargs},
    )


@register_model
def amdim_small(pretrained: bool = False, **kwargs: Any) -> AmdimTrunk:
    """32 px (CIFAR-like) trunk, ndf 64, embed 512, 1 extra 1x1 block per stage (smaller than the paper's)."""
    return _create("amdim_small", pretrained, dict(img_size=32, ndf=64, embed_dim=512, n_depth=1), **kwargs)


@register_model
def amdim_base(pretrained: bool = False, **kwargs: Any) -> AmdimTrunk:
    """64 px (STL-like) trunk, ndf 128, embed 1024, 3 extra 1x1 blocks per stage."""
    return _create("amdim_base", pretrained, dict(img_size=64, ndf=128, embed_dim=1024, n_depth=3), **kwargs)


@register_model
def amdim_large(pretrained: bool = False, **kwargs: Any) -> AmdimTrunk:
    """128 px (ImageNet-like) trunk with a 5x5/2 stem, ndf 192, embed 1536, 3 extra 1x1 blocks per stage."""
    return _create("amdim_large", pretrained, dict(img_size=128, ndf=192, embed_dim=1536, n_depth=3), **kwargs)


class AmdimEncoder(Encoder):
    """AMDIM encoder: the trunk plus, for r1, r5 and r7, a 1x1 residual MLP to ``n_rkhs`` dims then BatchNorm.

    Args:
        model_name: a registered ``amdim_*`` trunk (or another timm name with ``forward_intermediates`` and
            three feature maps).
        in_chans: input channels.
        n_rkhs: embedding dim D of every output (AMDIM's n_rkhs).
        hidden_dim: hidden width of the residual heads (defaults to ``n_rkhs``).
        trunk_kwargs: extra kwargs for the trunk (``ndf``, ``embed_dim``, ``n_depth``, ``img_size``, ``use_bn``).
        modality: optional tag.

    Shapes: ``x [B, C, H, W]`` -> ``Features(global_ = r1 [B, n_rkhs], local {"r5": [B, n_rkhs, 5, 5],
    "r7": [B, n_rkhs, 7, 7]})`` at the layout's nominal size.
    """

    def __init__(
        self,
        model_name: str = "amdim_small",
        in_chans: int = 3,
        n_rkhs: int = 512,
        hidden_dim: int | None = None,
        trunk_kwargs: dict[str, Any] | None = None,
        modality: str | None = None,
    ):
        super().__init__()
        import timm

        trunk_kwargs = check_trunk_args(model_name, trunk_kwargs, "trunk_kwargs")
        self._set_config(
            "amdim", model_name=model_name, in_chans=in_chans, n_rkhs=n_rkhs, hidden_dim=hidden_dim,
            trunk_kwargs=trunk_kwargs, modality=modality,
        )  # fmt: skip
        self.in_chans = in_chans
        self.trunk = timm.create_model(model_name, pretrained=False, num_classes=0, in_chans=in_chans, **trunk_kwargs)
        chans = [int(f["num_chs"]) for f in self.trunk.feature_info]
        if len(chans) != 3:
            raise ValueError(f"amdim encoder needs a trunk with 3 maps (r7, r5, r1), {model_name!r} has {len(chans)}")
        self.heads = nn.ModuleDict(
            {n: ResidualMLP(c, n_rkhs, hidden_dim=hidden_dim, norm="batch") for n, c in zip(NAMES, chans)}
        )
        self.out_dim = n_rkhs
        self.local_dims = {"r5": n_rkhs, "r7": n_rkhs}

    def timm_spec(self) -> tuple[str, dict[str, Any]]:
        return self.config["model_name"], {"in_chans": self.in_chans, **self.config["trunk_kwargs"]}

    def forward(self, x: torch.Tensor) -> Features:
        check_input(x, 4, self.in_chans, f"amdim encoder {self.config['model_name']!r}", "[B, C, H, W]")
        r7, r5, r1 = self.trunk.forward_intermediates(x, intermediates_only=True)
        # r1 is 1x1 at the nominal size; for larger inputs its map is averaged into one vector.
        r1 = rearrange(self.heads["r1"](r1), "b d h w -> b d (h w)").mean(-1)
        return Features(r1, {"r5": self.heads["r5"](r5), "r7": self.heads["r7"](r7)})
