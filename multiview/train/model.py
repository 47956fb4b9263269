"""The trainable whole: per-view encoders plus weighted MI objectives, as one nn.Module for DDP."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from multiview.core.features import Features
from multiview.objectives.base import weighted_terms


@dataclass
class StepOutput:
    """What one forward pass of :class:`MultiViewModel` gives the loop."""

    loss: torch.Tensor  # weighted sum of the objectives' losses, scalar
    losses: dict[str, torch.Tensor]  # objective name -> its unweighted loss
    metrics: dict[str, torch.Tensor]  # "<objective>/<metric>" -> value (MI estimates, accuracies)
    features: dict[str, Features]  # view name -> features (for auxiliary steps and memory banks)


class MultiViewModel(nn.Module):
    """Encoders (shared across views as the recipe says) and objectives (with their critics).

    Args:
        encoders: encoder key -> encoder module (``forward(x [B, ...]) -> Features``).
        view_to_encoder: view name -> encoder key; several views may share one encoder.
        objectives: objective name -> objective module (``forward(features, batch) -> ObjectiveOutput``).
        weights: objective name -> weight of its loss in the total.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        view_to_encoder: Mapping[str, str],
        objectives: Mapping[str, nn.Module],
        weights: Mapping[str, float],
    ):
        super().__init__()
        missing = sorted(set(view_to_encoder.values()) - set(encoders))
        if missing:
            raise ValueError(f"views use encoders {missing} that are not defined (have: {sorted(encoders)})")
        self.encoders = nn.ModuleDict(dict(encoders))
        self.view_to_encoder = dict(view_to_encoder)
        self.objectives = nn.ModuleDict(dict(objectives))
        self.weights = dict(weights)

    def encode(self, views: Mapping[str, torch.Tensor]) -> dict[str, Features]:
        """views: name -> ``[B, ...]`` -> name -> Features. Views of one encoder go through it one by one,
        so batch-norm statistics stay per view as in the papers (concatenating would mix them)."""
        unknown = sorted(set(views) - set(self.view_to_encoder))
        if unknown:
            raise ValueError(f"batch has views {unknown} with no encoder (known views: {sorted(self.view_to_encoder)})")
        return {name: self.encoders[self.view_to_encoder[name]](x) for name, x in views.items()}

    def forward(self, views: Mapping[str, torch.Tensor], batch: Mapping) -> StepOutput:
        features = self.encode(views)
        total, outputs = weighted_terms(self.objectives, self.weights, features, batch)
        losses = {name: out.loss for name, out in outputs.items()}
        metrics = {f"{name}/{key}": value for name, out in outputs.items() for key, value in out.metrics.items()}
        return StepOutput(total, losses, metrics, features)

    def auxiliary_parameter_names(self) -> set[str]:
        """Names of parameters owned by auxiliary players (they get their own optimisers, not the main one)."""
        aux_ids = {id(p) for _, step in self.auxiliary_steps() for p in step.module.parameters()}
        return {name for name, p in self.named_parameters() if id(p) in aux_ids}

    def auxiliary_steps(self) -> list[tuple[str, object]]:
        """(qualified name, AuxStep) for every extra player the objectives declare (DIM prior, CMI critics)."""
        steps = []
        for name, objective in self.objectives.items():
            for step in getattr(objective, "auxiliary_steps", lambda: [])():
                steps.append((f"{name}/{step.name}", step))
        return steps

    def after_step(self, output: StepOutput, batch: Mapping) -> None:
        """Let objectives update non-learned state (memory banks) after the optimiser step."""
        hooks = [objective.after_step for objective in self.objectives.values() if _has_after_step(objective)]
        if hooks:
            detached = {name: f.detach() for name, f in output.features.items()}
            for hook in hooks:
                hook(detached, batch)


def _has_after_step(objective: nn.Module) -> bool:
    """Whether an objective overrides the no-op ``Objective.after_step`` (or defines one of its own)."""
    from multiview.objectives.base import Objective

    hook = getattr(type(objective), "after_step", None)
    return hook is not None and hook is not Objective.after_step
