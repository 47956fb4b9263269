"""What evaluation needs from a trained checkpoint: encoders and their deterministic input transforms.

``multiview.eval.load.load_for_eval(path)`` returns an :class:`EvalBundle`; tests and users can build one
directly from their own modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from multiview.core.features import Features

PROBE_FEATURES = ("global", "maps", "trunk", "trunk_maps")
MAPS7_GRID = [7, 2, 1]  # trunk_maps preset "maps7": an AMDIM trunk's r7 whole, r5 2x2, r1 (the peer benchmark's probe)


@dataclass
class EvalBundle:
    """Trained encoders keyed by shard field name, with their eval transforms.

    Attributes:
        encoders: ``{field: nn.Module}``; ``encoder(x) -> Features``, of which evaluation uses ``.global_`` ``[B, D]``.
        transforms: ``{field: transform}``; ``transform(sample) -> Tensor`` turns a decoded sample (a dict, see
            docs/architecture.md section 1) into one encoder input (no batch axis), deterministically.
        recipe: the resolved recipe the checkpoint was trained with (recorded in reports).
        pair_heads: ``{(a, b): head}``: ``head(x [B, D]) -> [B, E]`` maps field a's encoder output into the space
            it shares with field b (CMC with ``pair_heads``); retrieval between a and b compares there.
        objectives: ``{name: objective}``, the checkpoint's objectives (``{}`` for a bundle built by hand), for
            evaluations that read an objective's own heads (``segment``: a mixture's ``responsibilities``).
    """

    encoders: dict[str, nn.Module]
    transforms: dict[str, Callable[[dict], torch.Tensor]]
    recipe: dict = field(default_factory=dict)
    pair_heads: dict[tuple[str, str], nn.Module] = field(default_factory=dict)
    objectives: dict[str, nn.Module] = field(default_factory=dict)

    def has_pair_heads(self, a: str, b: str) -> bool:
        """Whether fields a and b are compared through pair heads (both directions must be present)."""
        return (a, b) in self.pair_heads and (b, a) in self.pair_heads

    def project_pair(self, a: str, b: str, xa: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``xa [N, D]``, ``xb [M, D]`` (encoder outputs of fields a, b) -> the pair's space ``([N, E], [M, E])``;
        unchanged when the pair has no heads."""
        if not self.has_pair_heads(a, b):
            return xa, xb
        return _apply_head(self.pair_heads[(a, b)], xa), _apply_head(self.pair_heads[(b, a)], xb)

    def with_probe_features(self, kind: str = "global", grid: int | list[int] = 2) -> EvalBundle:
        """The same bundle with encoders whose vector is what probes read: ``"global"`` the encoder's global vector
        (unchanged); ``"maps"`` that vector followed by every local map average-pooled to ``grid x grid`` (1-D
        maps: ``grid``) and flattened -- conv-map probes as in the DIM and AMDIM papers; ``"trunk"`` the pooled
        trunk output before the encoder's projection head (encoders with ``trunk_forward``, e.g. timm ones: a
        projection head trained by a contrastive loss can drop what a probe needs, as SimCLR reports);
        ``"trunk_maps"`` the trunk's intermediate maps (timm's ``forward_intermediates``), each pooled to its
        own grid (``grid`` one int, or one per map in order: ``[7, 2, 1]`` for an AMDIM trunk is r7 whole, r5
        2x2, r1). Pair heads are dropped (they take the global vector only)."""
        if kind not in PROBE_FEATURES:
            raise ValueError(f"probe features {kind!r}: expected one of {list(PROBE_FEATURES)}")
        grids = grid if isinstance(grid, list | tuple) else [grid]
        if not grids or any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in grids):
            raise ValueError(f"probe feature grid must be an int >= 1 (or a list of them), got {grid!r}")
        if kind == "maps" and len(grids) != 1:
            raise ValueError(f"features 'maps' pools every map to one grid; got {grid!r} (per-map: trunk_maps)")
        if kind == "global":
            return self
        wrap = {"maps": PooledMaps, "trunk": TrunkOutput, "trunk_maps": TrunkMaps}[kind]
        encoders = {name: wrap(encoder, grid if kind == "trunk_maps" else grids[0], name)
                    for name, encoder in self.encoders.items()}  # fmt: skip
        return replace(self, encoders=encoders, pair_heads={})

    def check_field(self, name: str) -> None:
        """Raise ValueError when ``name`` has no encoder or no transform."""
        missing = [
            kind for kind, table in (("encoder", self.encoders), ("transform", self.transforms)) if name not in table
        ]
        if missing:
            raise ValueError(
                f"the checkpoint has no {' or '.join(missing)} for field {name!r}; "
                f"fields with encoders: {sorted(self.encoders)}, with transforms: {sorted(self.transforms)}"
            )


class PooledMaps(nn.Module):
    """An encoder wrapper for probes: ``x -> Features(cat[global_, pool(map) for each local map, by name])``.

    Shapes: the wrapped encoder's ``global_ [B, D]`` and local maps ``[B, C, H, W]`` (pooled to ``[B, C * grid^2]``)
    or ``[B, C, T]`` (pooled to ``[B, C * grid]``) -> ``global_ [B, D + sum of the pooled sizes]``.
    """

    def __init__(self, encoder: nn.Module, grid: int, field: str):
        super().__init__()
        self.encoder, self.grid, self.field = encoder, grid, field

    def forward(self, x: torch.Tensor) -> Features:
        out = self.encoder(x)
        if not out.local:
            raise ValueError(
                f"field {self.field!r}: its encoder returns no local maps to pool (an MLP, or a timm encoder without "
                f"local_scales); probe it with features 'global'"
            )
        parts = [out.global_.flatten(1)]
        for name in sorted(out.local):
            parts.append(_pool(out.local[name], self.grid, self.field, name).flatten(1))
        return Features(torch.cat(parts, dim=1))


class TrunkOutput(nn.Module):
    """An encoder wrapper for probes: ``x -> Features(pooled trunk output [B, F])``, before the projection head."""

    def __init__(self, encoder: nn.Module, grid: int, field: str):
        super().__init__()
        if not callable(getattr(encoder, "trunk_forward", None)):
            raise ValueError(
                f"field {field!r}: its encoder ({type(encoder).__name__}) has no trunk_forward to read the trunk "
                f"before its head (timm encoders have one); probe it with features 'global' or 'maps'"
            )
        self.encoder, self.field = encoder, field

    def forward(self, x: torch.Tensor) -> Features:
        pooled, _ = self.encoder.trunk_forward(x)
        return Features(pooled.flatten(1))


class TrunkMaps(nn.Module):
    """An encoder wrapper for probes: ``x -> Features(cat[pool(map_i, grid_i) for the trunk's intermediate maps])``.

    The trunk is ``encoder.trunk`` with timm's ``forward_intermediates`` (the AMDIM trunk: r7, r5, r1; timm
    models: their stages). ``grid``: one size for every map, or one per map in order. Shapes: maps
    ``[B, C_i, H_i, W_i]`` -> ``global_ [B, sum_i C_i * grid_i^2]``.
    """

    def __init__(self, encoder: nn.Module, grid: int | list[int], field: str):
        super().__init__()
        trunk = getattr(encoder, "trunk", None)
        if not callable(getattr(trunk, "forward_intermediates", None)):
            raise ValueError(
                f"field {field!r}: its encoder ({type(encoder).__name__}) has no trunk with forward_intermediates "
                f"(AMDIM and timm trunks have one); probe it with features 'global' or 'maps'"
            )
        self.encoder, self.grid, self.field = encoder, grid, field

    def forward(self, x: torch.Tensor) -> Features:
        maps = self.encoder.trunk.forward_intermediates(x, intermediates_only=True)
        return Features(pool_maps(maps, self.grid, self.field))


def pool_maps(maps: list[torch.Tensor], grid: int | list[int], field: str = "") -> torch.Tensor:
    """Maps ``[B, C_i, H_i, W_i]`` (or ``[B, C_i, T_i]``) average-pooled to ``grid_i`` each, flattened and
    concatenated -> ``[B, sum_i C_i * grid_i^2]`` (channel-major per map). ``grid``: one size or one per map."""
    grids = list(grid) if isinstance(grid, list | tuple) else [grid] * len(maps)
    if len(grids) != len(maps):
        raise ValueError(f"field {field!r}: grid {grid} gives {len(grids)} sizes for the trunk's {len(maps)} maps")
    return torch.cat([_pool(m, g, field, f"map {i}").flatten(1) for i, (m, g) in enumerate(zip(maps, grids))], 1)


def parse_grid(text: str) -> int | list[int]:
    """``"2"`` -> 2; ``"7,2,1"`` -> [7, 2, 1] (a probe's pooling grid on the command line)."""
    try:
        sizes = [int(part) for part in str(text).split(",")]
    except ValueError:
        raise ValueError(f"grid {text!r}: expected an int or ints separated by commas, e.g. 7,2,1") from None
    return sizes[0] if len(sizes) == 1 else sizes


def _pool(feature_map: torch.Tensor, grid: int, field: str, name: str) -> torch.Tensor:
    if feature_map.dim() == 4:
        return F.adaptive_avg_pool2d(feature_map, grid)
    if feature_map.dim() == 3:
        return F.adaptive_avg_pool1d(feature_map, grid)
    raise ValueError(
        f"field {field!r}: local map {name!r} has shape {tuple(feature_map.shape)}; expected [B, C, H, W] or [B, C, T]"
    )


def _apply_head(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``head(x)`` on the head's device, returned as float32 on CPU like the embeddings."""
    device = next(iter(head.parameters()), torch.empty(0)).device
    with torch.inference_mode():
        return head.eval()(x.to(device)).float().cpu()


def load_bundle(checkpoint: str) -> EvalBundle:
    """The bundle of a checkpoint (or of a run folder's newest checkpoint): see :func:`multiview.eval.load.load_for_eval`."""
    from multiview.eval.load import load_for_eval

    return load_for_eval(checkpoint)
