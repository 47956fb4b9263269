"""Recipe -> components: the view generator, the encoders (and which view uses which), the objectives."""

from __future__ import annotations

from multiview import encoders as encoder_registry
from multiview import objectives as objective_registry
from multiview import views as view_registry
from multiview.train.model import MultiViewModel
from multiview.train.recipe import Recipe


def import_plugins(recipe: Recipe) -> None:
    """Import the recipe's ``imports:`` modules, whose decorators register user components."""
    import importlib
    import sys

    if "" not in sys.path:
        sys.path.insert(0, "")  # like ``python -m``: modules next to where the command runs
    for name in recipe.imports:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ValueError(f"recipe {recipe.name!r}: imports: cannot import {name!r}: {err}") from err


def build_views(recipe: Recipe, train: bool = True):
    """The recipe's view generator (``train=False``: its deterministic evaluation form)."""
    import_plugins(recipe)
    args = dict(recipe.views.args)
    args.setdefault("seed", recipe.train.seed)
    generator = view_registry.create(recipe.views.name, **args)
    if not train:
        generator = generator.eval_transform()
    return generator


def view_to_encoder(recipe: Recipe, view_names: list[str], modality_of) -> dict[str, str]:
    """Which encoder each view goes through: explicit ``view_to_encoder``, else the encoder named like the
    view, else the one named like the view's modality, else the only encoder."""
    mapping = {}
    for view in view_names:
        if view in recipe.view_to_encoder:
            key = recipe.view_to_encoder[view]
        elif view in recipe.encoders:
            key = view
        elif modality_of(view) in recipe.encoders:
            key = modality_of(view)
        elif len(recipe.encoders) == 1:
            key = next(iter(recipe.encoders))
        else:
            raise ValueError(
                f"recipe {recipe.name!r}: view {view!r} (modality {modality_of(view)!r}) has no encoder; "
                f"encoders are {sorted(recipe.encoders)} -- name one after the view or its modality, or add "
                f"view_to_encoder: {{{view}: <encoder>}}"
            )
        if key not in recipe.encoders:
            raise ValueError(f"view_to_encoder.{view}: no encoder {key!r} (encoders: {sorted(recipe.encoders)})")
        mapping[view] = key
    return mapping


def build_encoders(recipe: Recipe) -> dict:
    import_plugins(recipe)
    built = {}
    for key, spec in recipe.encoders.items():
        try:
            built[key] = encoder_registry.create(spec.name, **spec.args)
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"encoders.{key}: cannot build encoder {spec.name!r} with {spec.args}: {err}") from err
    return built


def objective_names(recipe: Recipe) -> list[str]:
    """Unique names for the recipe's objectives (``cmc``, or ``cmc``, ``cmc_1`` when one repeats)."""
    names, seen = [], {}
    for spec in recipe.objectives:
        count = seen.get(spec.name, 0)
        names.append(spec.name if count == 0 else f"{spec.name}_{count}")
        seen[spec.name] = count + 1
    return names


def build_model(recipe: Recipe, views=None) -> MultiViewModel:
    views = views if views is not None else build_views(recipe)
    mapping = view_to_encoder(recipe, list(views.view_names), views.modality_of)
    objectives, weights = {}, {}
    for name, spec in zip(objective_names(recipe), recipe.objectives):
        try:
            objectives[name] = objective_registry.create(spec.name, **spec.args)
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"objectives ({spec.name}): cannot build with {spec.args}: {err}") from err
        weights[name] = spec.weight
    return MultiViewModel(build_encoders(recipe), mapping, objectives, weights)
