"""MI objectives: a registry of losses over ``{view_name: Features}`` (docs/architecture.md section 4).

    >>> import multiview.objectives as objectives
    >>> obj = objectives.create("cmc", views=("view0", "view1"), mode="full", temperature=0.07)
    >>> objectives.names()
    ['amdim', 'amdim_mixture', 'cmc', 'cmi', 'dim', 'lightly', 'sum']

Add one with ``@multiview.objectives.register("name")`` on an :class:`Objective` subclass. Estimators (InfoNCE,
JSD, DV, NWJ, MINE) live in :mod:`multiview.objectives.estimators`; cross-process gathering with gradients in
:mod:`multiview.objectives.distributed`. ``lightly`` adapts a two-embedding loss of the lightly library
(NTXentLoss, BarlowTwinsLoss, VICRegLoss, ...) to a view pair (:mod:`multiview.objectives.lightly_loss`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from multiview.registry import Registry

OBJECTIVES = Registry("objective")
register = OBJECTIVES.register


def create(name: str, **kwargs: Any):
    """Build a registered objective by name (``"dim"``, ``"amdim"``, ``"amdim_mixture"``, ``"cmc"``, ``"cmi"``,
    ``"lightly"``, ``"sum"``)."""
    return OBJECTIVES.create(name, **kwargs)


def names() -> list[str]:
    return OBJECTIVES.names()


# The objective modules register themselves on import; they import ``register`` from here, hence the order.
from multiview.objectives import amdim, amdim_mixture, cmc, cmi, dim, lightly_loss  # noqa: E402, F401, I001
from multiview.objectives.base import AuxStep, Objective, ObjectiveOutput, WeightedSum  # noqa: E402


def combine(terms: Mapping[str, tuple[Objective, float]] | Sequence[tuple[str, Objective, float]]) -> WeightedSum:
    """Weighted sum of objectives: ``combine({"cmc": (cmc_obj, 1.0), "amdim": (amdim_obj, 0.5)})``."""
    if not isinstance(terms, Mapping):
        terms = {key: (objective, weight) for key, objective, weight in terms}
    return WeightedSum(terms)


@register("sum")
def _weighted_sum(terms: Sequence[Mapping[str, Any]]) -> WeightedSum:
    """From a recipe: ``terms: [{name: cmc, weight: 1.0, views: [...]}, {name: amdim, weight: 0.5, ...}]``.

    Terms are keyed by their name (``cmc``, ``cmc_1`` when one repeats)."""
    built: dict[str, tuple[Objective, float]] = {}
    for i, spec in enumerate(terms):
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise ValueError(f"sum terms[{i}]: expected a mapping with a 'name' key, got {spec!r}")
        kwargs = {k: v for k, v in spec.items() if k not in ("name", "weight")}
        key, n = spec["name"], 1
        while key in built:
            key, n = f"{spec['name']}_{n}", n + 1
        built[key] = (create(spec["name"], **kwargs), float(spec.get("weight", 1.0)))
    return WeightedSum(built)


__all__ = [
    "OBJECTIVES",
    "AuxStep",
    "Objective",
    "ObjectiveOutput",
    "WeightedSum",
    "combine",
    "create",
    "names",
    "register",
]
