"""Recipe -> components: the view generator, the encoders (and which view uses which), the objectives.

A component that cannot be built from the recipe's arguments is a :class:`RecipeError` naming the recipe key, the
file and line where it was set, the arguments and what the component said. :func:`check_components` builds them
all on the CPU without reading data (``multiview pretrain --dry-run``), so a recipe that would fail at its first
step fails in a second instead.
"""

from __future__ import annotations

import re

from multiview import encoders as encoder_registry
from multiview import objectives as objective_registry
from multiview import views as view_registry
from multiview.train.model import MultiViewModel
from multiview.train.recipe import Recipe, recipe_error, recipe_knows
from multiview.train.recipe_io import short_repr


def _reason(err: Exception) -> str:
    """What a component said: a KeyError's message without the quotes ``str(KeyError)`` adds."""
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        return err.args[0]
    return str(err) or type(err).__name__


def _locate(base: str, args: dict, reason: str) -> str:
    """The recipe key a component's complaint is about: the argument it names (``unexpected keyword argument
    'bogus'``, ``temperature: expected > 0``) or whose value it quotes (``unknown view generator 'nope'``), at
    any depth of ``args``; ``base`` when none or several unrelated ones match."""
    hits: list[str] = []

    def quoted(value) -> bool:
        return isinstance(value, str) and f"'{value}'" in reason

    def mentioned(key, value) -> bool:
        named = re.search(rf"(?<![\w.]){re.escape(str(key))}(?![\w])", reason)
        return bool(named) or quoted(value) or (isinstance(value, list) and any(map(quoted, value)))

    def walk(node: dict, path: str) -> None:
        for key, value in node.items():
            child = f"{path}.{key}"
            if isinstance(value, dict):
                walk(value, child)
            elif mentioned(key, value):
                hits.append(child)

    match = re.search(r"unexpected keyword argument '(\w+)'", reason)
    if match:
        return f"{base}.args.{match.group(1)}"
    walk(args, f"{base}.args")
    if not hits:
        return base
    common = hits[0]
    for hit in hits[1:]:
        while not (hit == common or hit.startswith(f"{common}.")):
            common = common.rpartition(".")[0]
    return common if common.startswith(f"{base}.args") and common != f"{base}.args" else base


def import_plugins(recipe: Recipe) -> None:
    """Import the recipe's ``imports:`` modules, whose decorators register user components."""
    import importlib
    import sys

    if "" not in sys.path:
        sys.path.insert(0, "")  # like ``python -m``: modules next to where the command runs
    for i, name in enumerate(recipe.imports):
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise recipe_error(recipe, "imports", f"cannot import {name!r} (imports[{i}]): {err}") from err


def build_views(recipe: Recipe, train: bool = True):
    """The recipe's view generator (``train=False``: its deterministic evaluation form)."""
    import_plugins(recipe)
    args = dict(recipe.views.args)
    args.setdefault("seed", recipe.train.seed)
    name = recipe.views.name
    if name not in view_registry.VIEWS:
        raise recipe_error(recipe, "views.name", _unknown(view_registry.VIEWS, name))
    try:
        generator = view_registry.create(name, **args)
        if not train:
            generator = generator.eval_transform()
    except Exception as err:  # the generator's own argument check (ValueError, TypeError, a nested KeyError)
        shown, reason = dict(recipe.views.args), _reason(err)
        raise recipe_error(
            recipe,
            _locate("views", shown, reason),
            f"cannot build view generator {name!r} with {short_repr(shown, 300)}: {reason}",
        ) from err
    return generator


def _unknown(registry, name: str) -> str:
    try:
        registry.get(name)
    except KeyError as err:
        return _reason(err)
    return f"unknown {registry.kind} {name!r}"


def view_to_encoder(recipe: Recipe, view_names: list[str], modality_of) -> dict[str, str]:
    """Which encoder each view goes through: explicit ``view_to_encoder``, else the encoder named like the
    view, else the one named like the view's modality, else the only encoder."""
    unused = sorted(set(recipe.view_to_encoder) - set(view_names))
    if unused:
        raise recipe_error(
            recipe, f"view_to_encoder.{unused[0]}", f"no view {unused[0]!r}; the views are {list(view_names)}"
        )
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
            raise recipe_error(
                recipe,
                "encoders",
                f"view {view!r} (modality {modality_of(view)!r}) has no encoder; encoders are "
                f"{sorted(recipe.encoders)} -- name one after the view or its modality, or add "
                f"view_to_encoder: {{{view}: <encoder>}}",
            )
        if key not in recipe.encoders:
            raise recipe_error(
                recipe, f"view_to_encoder.{view}", f"no encoder {key!r}; expected one of {sorted(recipe.encoders)}"
            )
        mapping[view] = key
    return mapping


def build_encoders(recipe: Recipe) -> dict:
    import_plugins(recipe)
    built = {}
    for key, spec in recipe.encoders.items():
        if spec.name not in encoder_registry.ENCODERS:
            where = f"encoders.{key}.kind" if recipe_knows(recipe, f"encoders.{key}.kind") else f"encoders.{key}.name"
            raise recipe_error(recipe, where, _unknown(encoder_registry.ENCODERS, spec.name))
        # the encoder's own argument check; timm says RuntimeError for an unknown model
        built[key] = _create(recipe, encoder_registry.create, "encoder", spec, f"encoders.{key}")
    return built


def _create(recipe: Recipe, create, kind: str, spec, base: str):
    """``create(spec.name, **spec.args)``; any failure is a RecipeError at the argument it is about."""
    try:
        return create(spec.name, **spec.args)
    except Exception as err:
        reason = _reason(err)
        raise recipe_error(
            recipe,
            _locate(base, spec.args, reason),
            f"cannot build {kind} {spec.name!r} with {short_repr(spec.args, 300)}: {reason}",
        ) from err


def objective_names(recipe: Recipe) -> list[str]:
    """Unique names for the recipe's objectives (``cmc``, or ``cmc``, ``cmc_1`` when one repeats)."""
    names, seen = [], {}
    for spec in recipe.objectives:
        count = seen.get(spec.name, 0)
        names.append(spec.name if count == 0 else f"{spec.name}_{count}")
        seen[spec.name] = count + 1
    return names


def build_objectives(recipe: Recipe) -> dict:
    """Objective name (``objective_names``) -> the built objective."""
    built = {}
    for i, (name, spec) in enumerate(zip(objective_names(recipe), recipe.objectives)):
        if spec.name not in objective_registry.OBJECTIVES:
            raise recipe_error(recipe, f"objectives[{i}].name", _unknown(objective_registry.OBJECTIVES, spec.name))
        built[name] = _create(recipe, objective_registry.create, "objective", spec, f"objectives[{i}]")
    return built


def _check_requirements(recipe: Recipe, views, mapping: dict, encoders: dict, objectives: dict) -> None:
    """Every view an objective reads is one the generator emits, and every local map it reads is one that
    view's encoder gives -- checked before any data is read, not at the first step."""
    emitted = list(views.view_names)
    for i, objective in enumerate(objectives.values()):
        spec, requires = recipe.objectives[i], getattr(objective, "requires", None)
        try:
            needed = dict(requires()) if callable(requires) else {}
        except NotImplementedError:
            continue
        except Exception as err:  # an objective built from arguments of the wrong type (views: [[a, b]])
            reason = _reason(err)
            raise recipe_error(
                recipe,
                _locate(f"objectives[{i}]", spec.args, reason),
                f"objective {spec.name!r} with {short_repr(spec.args, 300)} cannot name the views it reads: {reason}",
            ) from err
        for view, maps in needed.items():
            if not isinstance(view, str) or not all(isinstance(m, str) for m in maps):
                raise recipe_error(
                    recipe,
                    f"objectives[{i}]",
                    f"objective {spec.name!r} reads view {short_repr(view)} (maps {short_repr(maps)}); expected view "
                    f"and map names (strings)",
                )
            if view not in mapping:
                raise recipe_error(
                    recipe,
                    _locate(f"objectives[{i}]", spec.args, f"'{view}'"),
                    f"objective {spec.name!r} needs view {view!r}; the view generator {recipe.views.name!r} emits "
                    f"{emitted}",
                )
            key = mapping[view]
            have = getattr(encoders[key], "local_dims", None)
            missing = [m for m in maps if have is not None and m not in have]
            if missing:
                raise recipe_error(
                    recipe,
                    _locate(f"objectives[{i}]", spec.args, f"'{missing[0]}'"),
                    f"objective {spec.name!r} needs local map {missing[0]!r} of view {view!r}; its encoder "
                    f"encoders.{key} gives {sorted(have) or 'none'} (set its local_scales or local maps)",
                )


def build_model(recipe: Recipe, views=None) -> MultiViewModel:
    views = views if views is not None else build_views(recipe)
    mapping = view_to_encoder(recipe, list(views.view_names), views.modality_of)
    objectives = build_objectives(recipe)
    encoders = build_encoders(recipe)
    _check_requirements(recipe, views, mapping, encoders, objectives)
    weights = {name: spec.weight for name, spec in zip(objective_names(recipe), recipe.objectives)}
    return MultiViewModel(encoders, mapping, objectives, weights)


def check_components(recipe: Recipe) -> None:
    """Build the view generator, the encoders and the objectives on the CPU, as a run would, without data;
    raise :class:`RecipeError` (file and line) for the first that cannot be built or does not fit the others."""
    build_model(recipe, build_views(recipe))
