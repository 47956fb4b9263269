"""Reading recipes: YAML with ``extends:``, ``key=value`` overrides, and where every value came from.

Every value keeps its origin (file and line, or "command line") so a validation error can point at it.
"""

from __future__ import annotations

import copy
import re
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


# YAML 1.2 reads ``7e-2`` and ``1e-3`` as numbers; PyYAML's YAML 1.1 float pattern needs a dot and reads them as
# strings. Recipes take the YAML 1.2 reading everywhere (component args too): a number-like scalar is a number.
_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")  # exponent, dot or not


MAX_DEPTH = 64  # nesting of mappings and lists; recipes use < 10


class _RecipeLoader(yaml.SafeLoader):
    """SafeLoader plus the YAML 1.2 float pattern (``7e-2`` is a float) and a bound on nesting (deeper YAML is
    refused at once, not after a RecursionError; libyaml's C composer even crashes on it, so it is not used)."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_RecipeLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))

MAX_ALIAS_NODES = 10_000  # nodes an alias may re-expand in all (``&a``/``*a`` copies); recipes use a few dozen


class _Builder:
    """Turn a composed YAML node graph into Python objects, recording the line of every key.

    Aliases are expanded (every key keeps its own origin), but an alias that contains itself is refused, and so
    is expansion beyond :data:`MAX_ALIAS_NODES` copied nodes -- nested aliases otherwise grow exponentially
    (nine levels of nine ``*a`` are 9**9 nodes from 300 bytes)."""

    def __init__(self, source: str, origins: Origins, loader: yaml.SafeLoader):
        self.source, self.origins, self.loader = source, origins, loader
        self.seen: set[int] = set()  # nodes built at least once: building one again is alias expansion
        self.stack: set[int] = set()  # nodes being built (an alias of one of them is a cycle)
        self.copies = 0

    def where(self, node: yaml.Node) -> str:
        return f"{self.source}:{node.start_mark.line + 1}"

    def build(self, node: yaml.Node, path: str, depth: int = 0) -> Any:
        if id(node) in self.stack:
            raise RecipeError(
                f"{self.where(node)}: {path or 'the recipe'}: a YAML alias refers to itself (a recursive "
                f"structure); expected a finite value"
            )
        if depth > MAX_DEPTH:
            raise RecipeError(f"{self.where(node)}: {path}: nested deeper than {MAX_DEPTH} levels")
        if id(node) in self.seen:
            self.copies += 1
            if self.copies > MAX_ALIAS_NODES:
                raise RecipeError(
                    f"{self.where(node)}: {path}: YAML aliases expand to more than {MAX_ALIAS_NODES:,} nodes; "
                    f"expected a few aliases of small values (use extends: to share recipes)"
                )
        self.seen.add(id(node))
        self.origins[path] = Origin(self.source, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        plain = "tag:yaml.org,2002:seq" if isinstance(node, yaml.SequenceNode) else "tag:yaml.org,2002:map"
        if node.tag != plain:  # !!set, !!omap, !!python/object... on a collection: never constructed, so refused
            raise RecipeError(
                f"{self.where(node)}: {path or 'the recipe'}: YAML tag {node.tag!r} is not supported; expected a "
                f"plain {'list' if isinstance(node, yaml.SequenceNode) else 'mapping'}"
            )
        self.stack.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node.value)]
            return self.mapping(node, path, depth)
        finally:
            self.stack.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: str, depth: int) -> dict:
        out = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise RecipeError(
                    f"{self.where(key_node)}: {path or 'the recipe'}: YAML merge keys (<<) are not supported; "
                    f"expected plain keys (use extends: to build on another recipe)"
                )
            key = self.scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                shown = short_repr(key) if isinstance(key_node, yaml.ScalarNode) else f"a {key_node.id}"
                raise RecipeError(f"{self.where(key_node)}: {path or 'the recipe'}: keys must be strings, got {shown}")
            if key in out:
                raise RecipeError(f"{self.where(key_node)}: {path or 'the recipe'}: key {key!r} appears twice")
            child = f"{path}.{key}" if path else key
            out[key] = self.build(value_node, child, depth + 1)
            self.origins[child] = Origin(self.source, key_node.start_mark.line + 1)
        return out

    def scalar(self, node: yaml.ScalarNode, path: str) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except Exception as err:  # bad tags; PyYAML's constructors fail every way on `!!int ""`, `!!timestamp x`
            reason = getattr(err, "problem", None) or (
                f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            )
            raise RecipeError(
                f"{self.where(node)}: {path or 'the recipe'}: not a valid YAML value: {short_repr(node.value)} "
                f"tagged {node.tag!r} ({reason})"
            ) from None


def _yaml_error(source: str, text: str, err: Exception) -> RecipeError:
    """A parser/constructor error as ``file:line: not valid YAML: ...`` (PyYAML says ``<unicode string>``)."""
    if isinstance(err, yaml.reader.ReaderError):  # a character YAML does not allow (checked before parsing)
        line = text.count("\n", 0, err.position) + 1
        char = err.character if isinstance(err.character, str) else chr(err.character)
        return RecipeError(
            f"{source}:{line}: not valid YAML: character {char!r} (#x{ord(char):04x}): control characters are not "
            f"allowed; expected printable text (tabs and newlines are fine)"
        )
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    where = f"{source}:{line}" if line else source
    return RecipeError(f"{where}: not valid YAML: {err}")


def parse_yaml(text: str, source: str, origins: Origins, path: str = "") -> Any:
    """Parse YAML text (a recipe file or an override value) into Python objects, recording origins under
    ``path``; every failure is a :class:`RecipeError` naming ``source`` and the line."""
    try:
        loader = _RecipeLoader(text)  # checks the characters first (ReaderError)
    except yaml.YAMLError as err:
        raise _yaml_error(source, text, err) from None
    loader.name = source  # marks in PyYAML's messages name the file, not "<unicode string>"
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as err:
            raise _yaml_error(source, text, err) from None
        except RecursionError:
            raise RecipeError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
        return None if node is None else _Builder(source, origins, loader).build(node, path)
    finally:
        loader.dispose()


MAX_RECIPE_BYTES = 1_000_000  # PyYAML's pure-Python parser reads about 1 MB/s; long URL lists go in a file of URLs


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_RECIPE_BYTES:
            raise RecipeError(
                f"{path}: the recipe is {size:,} bytes; expected at most {MAX_RECIPE_BYTES:,} (list many shard URLs "
                f"in a text file and set data.path to it)"
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError(f"recipe file not found: {path}") from None
    except OSError as err:
        raise RecipeError(f"{path}: cannot read the recipe: {err.strerror or err}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise RecipeError(
            f"{path}:{line}: not UTF-8 text: byte 0x{raw[err.start]:02x} at offset {err.start}; "
            f"expected a UTF-8 recipe (re-save the file as UTF-8)"
        ) from None


def _load_yaml_with_origins(path: Path) -> tuple[dict, Origins]:
    text = _read_text(path)
    origins: Origins = {}
    data = parse_yaml(text, str(path), origins)
    data = {} if data is None else data
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


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr`` of a value, cut to ``limit`` characters (a 5,000-character path stays readable)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value):,} characters" if isinstance(value, str) else f"{len(text):,} characters as text"
    return f"{text[: limit - 25]}... ({size})"


def load_recipe_dict(path: str | Path, _seen: tuple[Path, ...] = ()) -> tuple[dict, Origins]:
    """Load a recipe file, resolving ``extends:`` (a path relative to the file, or a shipped recipe name)."""
    path = resolve_recipe_path(path)
    if path in _seen:
        chain = " -> ".join(map(str, (*_seen, path)))
        raise RecipeError(f"recipe extends itself: {chain}")
    data, origins = _load_yaml_with_origins(path)
    if "extends" not in data:
        return data, origins
    parent_ref, where = data.pop("extends"), origins["extends"]
    if parent_ref is None:  # ``extends: null``: no parent
        return data, origins
    if not isinstance(parent_ref, str) or not parent_ref.strip():
        raise RecipeError(
            f"{where}: extends: expected a recipe path (a file next to this one, or a shipped recipe name), "
            f"got {short_repr(parent_ref)}"
        )
    try:
        parent_path = resolve_recipe_path(parent_ref, base=path.parent)
    except RecipeError as err:
        raise RecipeError(f"{where}: extends: {err}") from None
    parent, parent_origins = load_recipe_dict(parent_path, (*_seen, path))
    return deep_merge(parent, data), {**parent_origins, **origins}


def shipped_recipes_dir() -> Path:
    """The ``recipes/`` folder of a source checkout (next to the package)."""
    return Path(__file__).resolve().parents[2] / "recipes"


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


def resolve_recipe_path(ref: str | Path, base: Path | None = None) -> Path:
    """A path as given (first relative to ``base``, the folder of a recipe that extends it), or the name of a
    shipped recipe (``cmc_mfeat`` -> recipes/cmc_mfeat.yaml)."""
    candidates = [Path(ref), shipped_recipes_dir() / ref, shipped_recipes_dir() / f"{ref}.yaml"]
    if base is not None:
        candidates.insert(0, base / ref)
    for candidate in candidates:
        if _is_file(candidate):
            return candidate.resolve()
    if len(str(ref)) > 255:
        raise RecipeError(f"recipe not found: {short_repr(str(ref))}; expected the path of a recipe file")
    raise RecipeError(
        f"recipe not found: {str(ref)!r}; expected a recipe file (looked in: {', '.join(map(str, candidates))})"
    )


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.batch_size=128`` -> (["train", "batch_size"], 128); the value is parsed as YAML, by the rules of
    recipe files (``7e-2`` is a float; recursive or exploding aliases are refused)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"command line: override {text!r} is not of the form key=value (e.g. train.steps=100)")
    keys = key.strip().split(".")
    if any(not part for part in keys):
        raise RecipeError(f"command line: override {text!r}: empty key in {key.strip()!r}; expected a.b.c=value")
    value = parse_yaml(raw, f"command line ({text})", {}) if raw.strip() else None
    return keys, value


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
    dict; validation catches unknown keys later. The overridden key (and everything under it) is then said to
    come from the command line, under the same dotted path as a file's keys (``objectives[0].temperature``)."""
    data = copy.deepcopy(data)
    for text in overrides:
        keys, value = parse_override(text)
        node, path = data, ""
        for depth, key in enumerate(keys[:-1]):
            parent = node
            node = _child(node, key, text, ".".join(keys[:depth]) or "the recipe", create=True)
            path = _join(path, parent, key)
        last, where = keys[-1], ".".join(keys[:-1]) or "the recipe"
        if isinstance(node, list):
            _child(node, last, text, where, create=False)  # validates the index
            node[int(last)] = value
            last = str(int(last) % len(node))
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise RecipeError(f"command line: override {text!r}: {where} is a {type(node).__name__}, not a mapping")
        path = _join(path, node, last)
        for stale in [k for k in origins if k == path or k.startswith((f"{path}.", f"{path}["))]:
            del origins[stale]
        origins[path] = Origin(f"command line ({text})")
    return data


def _join(path: str, node: Any, key: str) -> str:
    """The dotted path of ``node[key]`` as validation spells it: ``a.b``, ``a[0]``."""
    if isinstance(node, list):
        return f"{path}[{int(key) % len(node)}]"
    return f"{path}.{key}" if path else key
