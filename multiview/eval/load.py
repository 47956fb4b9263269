"""From a checkpoint to an :class:`EvalBundle`: the trained encoders keyed by shard field, with the
deterministic input transforms of the recipe's view generator in eval mode, and CMC's pair heads.

Evaluation owns this step (it reads the trainer's checkpoints; the trainer never imports evaluation).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import torch

from multiview.eval.bundle import EvalBundle


class ViewTransform:
    """Deterministic eval input of one field: the eval-mode generator's view ``view`` of a sample."""

    def __init__(self, generator, view: str):
        self.generator, self.view = generator, view

    def __call__(self, sample: dict) -> torch.Tensor:
        return self.generator(sample, generator=torch.Generator().manual_seed(0))[self.view]


class CameraTransform:
    """Deterministic eval input of camera ``index`` of a multi-camera sample."""

    def __init__(self, generator, index: int):
        self.generator, self.index = generator, index

    def __call__(self, sample: dict) -> torch.Tensor:
        return self.generator.camera_view(sample, self.index)


def field_inputs(eval_views, view_to_encoder: dict[str, str], n_cameras: int = 0) -> dict[str, tuple[str, Any]]:
    """Shard field -> (encoder key, deterministic transform), from the recipe's view generator in eval mode."""
    from multiview.views import CameraViews, FieldViews

    fields: dict[str, tuple[str, Any]] = {}
    if isinstance(eval_views, FieldViews):
        for view in eval_views.view_names:
            key, sub = eval_views.owner_of(view)
            sub_gen = eval_views.generators[key]
            name = getattr(sub_gen, "field", key)
            fields.setdefault(name, (view_to_encoder[view], ViewTransform(sub_gen, sub)))
    elif isinstance(eval_views, CameraViews):
        encoder = view_to_encoder[eval_views.view_names[0]]
        for k in range(n_cameras or eval_views.config.get("n_cameras") or 0):
            fields[f"{eval_views.prefix}{k}"] = (encoder, CameraTransform(eval_views, k))
    else:
        first = eval_views.view_names[0]
        fields[getattr(eval_views, "field", first)] = (view_to_encoder[first], ViewTransform(eval_views, first))
    return fields


def view_fields(eval_views) -> dict[str, str]:
    """View name -> shard field, for the views of a ``fields`` generator that are their field's only view."""
    from multiview.views import FieldViews

    if not isinstance(eval_views, FieldViews):
        return {}
    owners = {}
    for view in eval_views.view_names:
        key, _ = eval_views.owner_of(view)
        owners[view] = getattr(eval_views.generators[key], "field", key)
    counts = Counter(owners.values())
    return {view: name for view, name in owners.items() if counts[name] == 1}


def pair_heads_by_field(model, fields_of: dict[str, str]) -> dict[tuple[str, str], Any]:
    """``{(field a, field b): head}`` from the objectives' ``pair_projections()`` (CMC with ``pair_heads``)."""
    out: dict[tuple[str, str], Any] = {}
    for name, objective in model.objectives.items():
        for (a, b), head in getattr(objective, "pair_projections", dict)().items():
            key = (fields_of.get(a), fields_of.get(b))
            if None in key:
                continue  # a view that is not a field on its own (two augmented views of one field)
            if key in out:
                raise ValueError(f"objective {name!r} gives a second pair head for fields {key}; expected one")
            out[key] = head
    return out


def load_for_eval(checkpoint: str | Path):
    """Encoders keyed by shard field with their deterministic transforms, for ``multiview eval``."""
    from multiview.data import load_manifest
    from multiview.train.build import build_views
    from multiview.train.export import load_trained_model
    from multiview.train.recipe import recipe_to_dict

    model, recipe, _ = load_trained_model(checkpoint)
    n_cameras = 0
    try:
        manifest = load_manifest(recipe.data.path)
        n_cameras = sum(1 for info in manifest["fields"].values() if info.get("modality") == "camera")
    except Exception:  # the shards may live elsewhere at eval time; camera count then comes from the recipe
        pass
    eval_views = build_views(recipe, train=False)
    inputs = field_inputs(eval_views, model.view_to_encoder, n_cameras)
    encoders = {name: model.encoders[key] for name, (key, _) in inputs.items()}
    transforms = {name: transform for name, (_, transform) in inputs.items()}
    pair_heads = pair_heads_by_field(model, view_fields(eval_views))
    return EvalBundle(encoders=encoders, transforms=transforms, recipe=recipe_to_dict(recipe), pair_heads=pair_heads)
