"""The objective contract: ``ObjectiveOutput``, ``AuxStep``, the ``Objective`` base class and ``WeightedSum``.

An objective is a small ``nn.Module`` (its critics and heads) whose ``forward(features, batch)`` is a pure
function of the encoders' features: ``features`` maps a view name to :class:`Features`, ``batch`` is the collated
batch (labels, attributes, sample indices). Extra players (DIM's prior discriminator, CMI's conditional
discriminators) are declared by :meth:`Objective.auxiliary_steps`; the training loop gives each its own
optimiser. Non-learned state (CMC's memory bank) is updated in :meth:`Objective.after_step`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from multiview.core.features import Features

FeatureDict = Mapping[str, Features]


@dataclass
class ObjectiveOutput:
    """What an objective returns.

    Attributes:
        loss: scalar tensor to minimise in the main (encoder + critic) step.
        metrics: name -> scalar tensor (detached): MI estimates, accuracies, loss terms.
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class AuxStep:
    """An extra player with its own optimiser.

    The loop builds ``Adam(module.parameters(), lr, betas)`` once, and after the main step calls
    ``loss = loss_fn(detached_features, batch)``, then backward and a step of that optimiser only.
    """

    name: str
    module: nn.Module
    lr: float
    betas: tuple[float, float]
    loss_fn: Callable[[FeatureDict, Mapping], torch.Tensor]


class Objective(nn.Module):
    """Base class: subclasses set ``name`` and implement :meth:`requires` and :meth:`compute`.

    ``forward`` checks the features against :meth:`requires` on the first call (so a recipe error names the
    objective, the view and the missing map) and then calls :meth:`compute`.
    """

    name: str = "objective"

    def __init__(self) -> None:
        super().__init__()
        self._checked = False

    def requires(self) -> dict[str, tuple[str, ...]]:
        """View name -> names of the local maps needed (the global vector is always needed)."""
        raise NotImplementedError

    def compute(self, features: FeatureDict, batch: Mapping) -> ObjectiveOutput:
        raise NotImplementedError

    def forward(self, features: FeatureDict, batch: Mapping | None = None) -> ObjectiveOutput:
        if not self._checked:
            check_features(self.name, self.requires(), features)
            self._checked = True
        return self.compute(features, {} if batch is None else batch)

    def auxiliary_steps(self) -> list[AuxStep]:
        """Extra players; none by default."""
        return []

    def after_step(self, features: FeatureDict, batch: Mapping) -> None:
        """Hook after the optimiser step (``features`` detached); nothing by default."""

    def main_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters for the main optimiser: all of them except the auxiliary players'."""
        aux = {id(p) for step in self.auxiliary_steps() for p in step.module.parameters()}
        return (p for p in self.parameters() if id(p) not in aux)


def check_features(name: str, required: Mapping[str, Sequence[str]], features: FeatureDict) -> None:
    """Raise ValueError naming the objective, the view and the map when ``features`` lacks what is required."""
    for view, maps in required.items():
        if view not in features:
            raise ValueError(f"objective {name} needs view {view!r}, features have views {sorted(features)}")
        have = sorted(features[view].local)
        for local in maps:
            if local not in features[view].local:
                raise ValueError(
                    f"objective {name} needs local map {local!r} of view {view!r}, encoder gives only {have}"
                )


def frozen_call(module: nn.Module, *args: Any) -> Any:
    """Call ``module`` with its parameters detached: gradients reach the inputs, never the module.

    Used where the main loss goes through an auxiliary player (DIM's prior term, CMI's flipped-label term):
    that player is trained by its own step, so the main backward must not leave gradients on it.
    """
    params = {key: value.detach() for key, value in module.named_parameters()}
    return torch.func.functional_call(module, params, args)


class WeightedSum(Objective):
    """A weighted sum of objectives (e.g. CMC across modalities + AMDIM within images).

    Args:
        terms: name -> (objective, weight). Metrics come out as ``"<name>/<metric>"`` plus ``"<name>/loss"``.

    Examples:
        >>> from multiview.objectives import create
        >>> both = WeightedSum({"cmc": (create("cmc", views=("a", "b")), 1.0),
        ...                     "amdim": (create("amdim", views=("a", "c")), 0.5)})
    """

    name = "sum"

    def __init__(self, terms: Mapping[str, tuple[Objective, float]]):
        super().__init__()
        if not terms:
            raise ValueError("WeightedSum needs at least one term, got none")
        for key, (objective, weight) in terms.items():
            if not isinstance(objective, nn.Module):
                raise ValueError(f"term {key!r}: expected an Objective module, got {type(objective).__name__}")
            if not isinstance(weight, (int, float)):
                raise ValueError(f"term {key!r}: expected a float weight, got {weight!r}")
        self.terms = nn.ModuleDict({key: objective for key, (objective, _) in terms.items()})
        self.weights = {key: float(weight) for key, (_, weight) in terms.items()}

    def requires(self) -> dict[str, tuple[str, ...]]:
        merged: dict[str, tuple[str, ...]] = {}
        for objective in self.terms.values():
            for view, maps in objective.requires().items():
                merged[view] = tuple(dict.fromkeys(merged.get(view, ()) + tuple(maps)))
        return merged

    def forward(self, features: FeatureDict, batch: Mapping | None = None) -> ObjectiveOutput:
        # Each term checks its own requirements, so an error names the term rather than "sum".
        return self.compute(features, {} if batch is None else batch)

    def compute(self, features: FeatureDict, batch: Mapping) -> ObjectiveOutput:
        total, outputs = weighted_terms(self.terms, self.weights, features, batch)
        metrics = {}
        for key, out in outputs.items():
            metrics[f"{key}/loss"] = out.loss.detach()
            metrics.update({f"{key}/{name}": value for name, value in out.metrics.items()})
        return ObjectiveOutput(total, metrics)

    def auxiliary_steps(self) -> list[AuxStep]:
        steps = []
        for key, objective in self.terms.items():
            for step in objective.auxiliary_steps():
                steps.append(AuxStep(f"{key}/{step.name}", step.module, step.lr, step.betas, step.loss_fn))
        return steps

    def after_step(self, features: FeatureDict, batch: Mapping) -> None:
        for objective in self.terms.values():
            objective.after_step(features, batch)


def weighted_terms(
    terms: Mapping[str, nn.Module], weights: Mapping[str, float], features: FeatureDict, batch: Mapping
) -> tuple[torch.Tensor, dict[str, ObjectiveOutput]]:
    """Run each objective on the features: ``(sum of weight * loss, {name: its own output})``. Shared by
    ``WeightedSum`` and the training model (which also needs each term's loss and metrics)."""
    total, outputs = None, {}
    for key, objective in terms.items():
        outputs[key] = out = objective(features, batch)
        weighted = weights[key] * out.loss
        total = weighted if total is None else total + weighted
    return total, outputs
