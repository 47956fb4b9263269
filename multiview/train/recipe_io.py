"""Reading recipes: YAML with ``extends:``, ``key=value`` overrides, and where every value came from.

Every value keeps its origin (file and line, or "command line") so a validation error can point at it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class RecipeError(ValueError):
    """A recipe is wrong: the message names the key, where it was set and what was expected."""


@dataclass(frozen=True)
class Origin:
    source: str  # a file path or "command line"
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


Origins = dict[str, Origin]  # dotted key -> where it was set


def _construct(node: yaml.Node, path: str, source: str, origins: Origins) -> Any:
    """Turn a composed YAML node into Python objects, recording the line of every key."""
    origins[path] = Origin(source, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            if not isinstance(key, str):
                raise RecipeError(f"{source}:{key_node.start_mark.line + 1}: keys must be strings, got {key!r}")
            if key in out:
                raise RecipeError(f"{source}:{key_node.start_mark.line + 1}: key {key!r} appears twice")
            child = f"{path}.{key}" if path else key
            out[key] = _construct(value_node, child, source, origins)
            origins[child] = Origin(source, key_node.start_mark.line + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, f"{path}[{i}]", source, origins) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _load_yaml_with_origins(path: Path) -> tuple[dict, Origins]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RecipeError(f"recipe file not found: {path}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {err}") from None
    origins: Origins = {}
    data = {} if node is None else _construct(node, "", str(path), origins)
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys, got a {type(data).__name__}")
    return data, origins


def deep_merge(base: dict, override: dict) -> dict:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, everything else replaces)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_recipe_dict(path: str | Path, _seen: tuple[Path, ...] = ()) -> tuple[dict, Origins]:
    """Load a recipe file, resolving ``extends:`` (a path relative to the file, or a shipped recipe name)."""
    path = Path(path).resolve() if Path(path).exists() else resolve_recipe_path(path)
    if path in _seen:
        chain = " -> ".join(map(str, (*_seen, path)))
        raise RecipeError(f"recipe extends itself: {chain}")
    data, origins = _load_yaml_with_origins(path)
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        return data, origins
    if not isinstance(parent_ref, str):
        raise RecipeError(f"{origins['extends']}: extends: expected a recipe path (str), got {parent_ref!r}")
    parent_path = (path.parent / parent_ref) if (path.parent / parent_ref).exists() else parent_ref
    parent, parent_origins = load_recipe_dict(parent_path, (*_seen, path))
    return deep_merge(parent, data), {**parent_origins, **origins}


def shipped_recipes_dir() -> Path:
    """The ``recipes/`` folder of a source checkout (next to the package)."""
    return Path(__file__).resolve().parents[2] / "recipes"


def resolve_recipe_path(ref: str | Path) -> Path:
    """A path as given, or the name of a shipped recipe (``cmc_mfeat`` -> recipes/cmc_mfeat.yaml)."""
    candidates = [Path(ref), shipped_recipes_dir() / ref, shipped_recipes_dir() / f"{ref}.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise RecipeError(f"recipe not found: {ref} (looked in: {', '.join(map(str, candidates))})")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.batch_size=128`` -> (["train", "batch_size"], 128); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"command line: override {text!r} is not of the form key=value (e.g. train.steps=100)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise RecipeError(f"command line: override {text!r}: value is not valid YAML ({err})") from None
    return key.strip().split("."), value


def _child(node: Any, key: str, text: str, where: str, create: bool) -> Any:
    """One step of an override path: a mapping key, or an integer index into a list."""
    if isinstance(node, list):
        if not key.lstrip("-").isdigit() or not -len(node) <= int(key) < len(node):
            raise RecipeError(
                f"command line: override {text!r}: {where} is a list of {len(node)}; {key!r} is not an index"
            )
        return node[int(key)]
    if not isinstance(node, dict):
        raise RecipeError(f"command line: override {text!r}: {where} is a {type(node).__name__}, not a mapping")
    if create and node.get(key) is None:
        node[key] = {}
    return node[key]


def apply_overrides(data: dict, origins: Origins, overrides: list[str]) -> dict:
    """Apply ``key=value`` overrides (``train.steps=5``, ``objectives.0.temperature=0.2``) to a copy of a nested
    dict; validation catches unknown keys later."""
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for depth, key in enumerate(keys[:-1]):
            node = _child(node, key, text, ".".join(keys[:depth]) or "the recipe", create=True)
        last, where = keys[-1], ".".join(keys[:-1]) or "the recipe"
        if isinstance(node, list):
            _child(node, last, text, where, create=False)  # validates the index
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise RecipeError(f"command line: override {text!r}: {where} is a {type(node).__name__}, not a mapping")
        origins[".".join(keys)] = Origin(f"command line ({text})")
    return data
