"""Augmented Multiscale Deep InfoMax (Bachman, Hjelm, Buchwalter, NeurIPS 2019).

Two views of each image; NCE tasks between the global vector r1 ``[B, D]`` and the local maps r5 ``[B, D, 5, 5]``
and r7 ``[B, D, 7, 7]`` of the OTHER view: 1->5, 1->7 and 5->5 (the source of 5->5 is one random location of r5
per image), each in both directions and averaged over directions. One task: raw scores ``s = a_i . b_{j,q} /
sqrt(D)``; regulariser ``0.05 * mean(s^2)`` over all raw scores; clipped scores ``20 tanh(s / 20)``; for each
``(i, q)`` the positive competes with every location of every OTHER image (same-image locations are excluded,
not shifted). Total: ``L1t5 + L1t7 + L5t5 + 0.5 * (sum of the six regularisers)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from einops import einsum, rearrange

from multiview.core.features import Features
from multiview.objectives import register
from multiview.objectives.base import FeatureDict, Objective, ObjectiveOutput
from multiview.objectives.distributed import gather_with_grad, local_offset, rank_and_world
from multiview.objectives.estimators import infonce

_TASKS = ("1t5", "1t7", "5t5")


def amdim_task(
    source: torch.Tensor, target: torch.Tensor, clip: float = 20.0, reg_weight: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One NCE task: source ``[B, D]`` against target maps ``[B, D, H, W]`` (gathered across processes).

    Returns (nce loss, regulariser ``reg_weight * mean(s^2)``, MI estimate).
    """
    b, d = source.shape
    target_all = gather_with_grad(rearrange(target, "b d h w -> b d (h w)"))
    raw = einsum(source, target_all, "b d, m d n -> b m n") / math.sqrt(d)  # [B, M, N]
    reg = reg_weight * raw.to(torch.promote_types(raw.dtype, torch.float32)).pow(2).mean()
    est = infonce(clip * torch.tanh(raw / clip), local_offset(b))
    return est.loss, reg, est.mi


@register("amdim")
class AMDIM(Objective):
    """The AMDIM objective over two views.

    Args:
        views: the two view names.
        small, large: names of the 5x5 and 7x7 local maps (``Features.local``); the global vector is r1.
        tasks: any of ``"1t5"``, ``"1t7"``, ``"5t5"``.
        clip: tanh clipping scale (20).
        reg_weight: weight of the raw-score regulariser per task (0.05).
        seed: seed of the 5->5 source locations. Locations are drawn for the GLOBAL batch from
            ``(seed, step)`` and each process takes its rows, so a multi-process run draws what one process would.

    Examples:
        >>> from multiview.encoders.features import Features
        >>> f = lambda: Features(torch.randn(4, 16), {"r5": torch.randn(4, 16, 5, 5), "r7": torch.randn(4, 16, 7, 7)})
        >>> out = AMDIM()({"view0": f(), "view1": f()}, {})
        >>> sorted(k for k in out.metrics if k.startswith("mi_"))
        ['mi_1t5', 'mi_1t7', 'mi_5t5']
    """

    name = "amdim"

    def __init__(
        self,
        views: tuple[str, str] = ("view0", "view1"),
        small: str = "r5",
        large: str = "r7",
        tasks: tuple[str, ...] = _TASKS,
        clip: float = 20.0,
        reg_weight: float = 0.05,
        seed: int = 0,
    ):
        super().__init__()
        if len(views) != 2:
            raise ValueError(f"{self.name} views: expected two view names, got {list(views)}")
        unknown = [t for t in tasks if t not in _TASKS]
        if unknown or not tasks:
            raise ValueError(f"{self.name} tasks: expected a non-empty subset of {list(_TASKS)}, got {list(tasks)}")
        if clip <= 0:
            raise ValueError(f"{self.name} clip: expected > 0, got {clip}")
        self.views, self.small, self.large = tuple(views), small, large
        self.tasks, self.clip, self.reg_weight, self.seed = tuple(tasks), float(clip), float(reg_weight), seed
        # Counts forward calls so that 5->5 locations differ per step and a resumed run draws the same ones.
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def requires(self) -> dict[str, tuple[str, ...]]:
        maps = tuple(dict.fromkeys(self.small if t in ("1t5", "5t5") else self.large for t in self.tasks))
        return {view: maps for view in self.views}

    def source_locations(self, batch_size: int, n: int) -> torch.Tensor:
        """Locations of the 5->5 sources ``[2, B]`` (one row per direction) for this process's rows."""
        rank, world = rank_and_world()
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.step))
        drawn = torch.randint(n, (2, batch_size * world), generator=generator)
        return drawn[:, rank * batch_size : (rank + 1) * batch_size]

    def _check_dims(self, features: FeatureDict) -> None:
        for view in self.views:
            f = features[view]
            dims = {"global": f.global_.shape[1]} | {k: f.local[k].shape[1] for k in self.requires()[view]}
            if len(set(dims.values())) != 1:
                raise ValueError(f"objective {self.name}: expected one feature size D for view {view!r}, got {dims}")

    def task_target(self, task: str, target_view: Features) -> torch.Tensor:
        """The map a task scores against: r5 for 1->5 and 5->5, r7 for 1->7 (``[B, D, H, W]``)."""
        return target_view.local[self.small if task in ("1t5", "5t5") else self.large]

    def task_source(
        self, task: str, source_view: Features, locations: torch.Tensor | None, direction: int
    ) -> torch.Tensor:
        """The source vectors ``[B, D]``: r1, or for 5->5 the drawn r5 location of each image."""
        if task != "5t5":
            return source_view.global_
        flat = rearrange(source_view.local[self.small], "b d h w -> b (h w) d")
        rows = torch.arange(flat.shape[0], device=flat.device)
        return flat[rows, locations[direction].to(flat.device)]

    def compute(self, features: FeatureDict, batch: Mapping) -> ObjectiveOutput:
        self._check_dims(features)
        b = features[self.views[0]].batch_size
        locations = None
        total, reg_total = None, None
        metrics: dict[str, torch.Tensor] = {}
        pairs = (self.views, self.views[::-1])
        if "5t5" in self.tasks:
            locations = self.source_locations(b, math.prod(features[self.views[0]].local[self.small].shape[-2:]))
        for task in self.tasks:
            losses, mis = [], []
            for direction, (a, c) in enumerate(pairs):
                source = self.task_source(task, features[a], locations, direction)
                target = self.task_target(task, features[c])
                loss, reg, mi = amdim_task(source, target, self.clip, self.reg_weight)
                losses.append(loss)
                mis.append(mi)
                reg_total = reg if reg_total is None else reg_total + reg
            task_loss = sum(losses) / len(losses)
            total = task_loss if total is None else total + task_loss
            metrics[f"mi_{task}"] = (sum(mis) / len(mis)).detach()
            metrics[f"loss_{task}"] = task_loss.detach()
        metrics["reg"] = (0.5 * reg_total).detach()
        if self.training:
            self.step += 1
        return ObjectiveOutput(total + 0.5 * reg_total, metrics)
