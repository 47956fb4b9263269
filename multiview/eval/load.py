"""From a checkpoint to an :class:`EvalBundle`: the trained encoders keyed by shard field, with the
deterministic input transforms of the recipe's view generator in eval mode, CMC's pair heads and the objectives
(or, ``weights="random"``, the same model as its run initialised it, before any training).

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

    def input_box(self, sample: dict) -> tuple[int, int, int, int] | None:
        """Where the input comes from in the field's image: ``(top, left, height, width)`` in its pixels (None:
        the generator does not say, e.g. not an image)."""
        from multiview.views.base import META

        out = self.generator(sample, generator=torch.Generator().manual_seed(0))
        return _box(out.get(META, {}).get(self.view))


class CameraTransform:
    """Deterministic eval input of camera ``index`` of a multi-camera sample."""

    def __init__(self, generator, index: int):
        self.generator, self.index = generator, index

    def __call__(self, sample: dict) -> torch.Tensor:
        return self.generator.camera_view(sample, self.index)

    def input_box(self, sample: dict) -> tuple[int, int, int, int] | None:
        """As :meth:`ViewTransform.input_box`: the augmentation's eval crop, else the whole (resized) image."""
        from multiview.views.base import META
        from multiview.views.image import to_uint8_image

        gen = self.generator
        img = to_uint8_image(sample[f"{gen.prefix}{self.index}"])
        if gen.augment is None:
            return 0, 0, img.shape[-2], img.shape[-1]
        out = gen.augment(img, generator=torch.Generator().manual_seed(gen.seed))
        return _box(out.get(META, {}).get(next(k for k in out if k != META)))


def _box(meta: dict | None) -> tuple[int, int, int, int] | None:
    """The ``box`` of a view's meta as four ints (None when absent); eval views are never flipped."""
    if not isinstance(meta, dict) or "box" not in meta:
        return None
    top, left, height, width = (int(v) for v in meta["box"])
    return top, left, height, width


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


def untrained_model(checkpoint: str | Path):
    """The model of a checkpoint's recipe as its run initialised it, before the first step: built under
    ``torch.manual_seed(train.seed)`` as the trainer does (after ``set_seed``), no weights loaded; the caller's
    torch random stream is left as it was. Returns ``(model, recipe, checkpoint path)`` like
    :func:`multiview.train.export.load_trained_model`."""
    from multiview.train.build import build_model
    from multiview.train.checkpoint import find_checkpoint
    from multiview.train.recipe import load_recipe

    path = find_checkpoint(checkpoint, Path(checkpoint))
    recipe = load_recipe(path / "recipe.yaml")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.train.seed)
        model = build_model(recipe)
    return model.eval(), recipe, path


WEIGHTS = ("trained", "random")


def load_for_eval(checkpoint: str | Path, weights: str = "trained"):
    """Encoders keyed by shard field with their deterministic transforms, and the objectives, for ``multiview
    eval``. ``weights="random"``: the same architecture freshly initialised (:func:`untrained_model`), the
    untrained-encoder baseline."""
    from multiview.data import load_manifest
    from multiview.train.build import build_views
    from multiview.train.export import load_trained_model
    from multiview.train.recipe import recipe_to_dict

    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    model, recipe, _ = (load_trained_model if weights == "trained" else untrained_model)(checkpoint)
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
    return EvalBundle(
        encoders=encoders,
        transforms=transforms,
        recipe=recipe_to_dict(recipe),
        pair_heads=pair_heads,
        objectives=dict(model.objectives.items()),
    )
