"""Recipes: the typed configuration of a pretraining run.

A recipe is YAML validated into the dataclasses below. Unknown keys, wrong types and missing fields fail with
a :class:`RecipeError` naming the key, the file and line where it was set, and what was expected. Component
arguments (view generators, encoders, objectives) are free-form mappings passed to their registries, which
validate them in turn.

Examples:
    >>> recipe = load_recipe("recipes/tiny_cmc.yaml", ["train.steps=5"])  # doctest: +SKIP
    >>> recipe.train.steps  # doctest: +SKIP
    5
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from multiview.train.recipe_io import (
    Origin,
    Origins,
    RecipeError,
    apply_overrides,
    deep_merge,
    load_recipe_dict,
)


@dataclass
class DataIOConfig:
    """How shard URLs are opened (multiview.data.remote.IOOptions)."""

    timeout: float = 30.0  # seconds for a connection and for each read
    retries: int = 3  # re-tries of a transient failure (an open, a dropped connection), with backoff
    backoff: float = 0.5  # first wait in seconds, doubled each retry
    storage_options: dict[str, Any] = field(default_factory=dict)  # fsspec options (s3 endpoint_url, anon, ...)


@dataclass
class DataConfig:
    """Where samples come from and how they stream."""

    # a shard source: a folder with manifest.json, a folder or glob of .tar shards, URL patterns
    # (https://host/train-{000000..000127}.tar; {split} is filled in), a list of URLs, a text file of URLs,
    # an object-store prefix (s3://bucket/prefix/) or pipe:CMD -- see docs/shards.md
    path: str | list[str]
    split: str = "train"
    mode: Literal["auto", "indexed", "stream"] = "auto"  # auto: indexed for a local folder with a manifest
    rename: dict[str, str] = field(default_factory=dict)  # {name the views expect: field name in the shards}
    fields: list[str] | None = None  # fields to decode; None = all
    keep: list[str] = field(default_factory=list)  # non-view fields carried into the batch (labels, attributes)
    resampled: bool = False  # sample shards with replacement (fixed epoch_size) instead of one pass per epoch
    epoch_size: int | None = None  # samples per epoch over all ranks; None = the split's size
    shuffle: bool = True
    num_workers: int = 0
    on_error: Literal["raise", "skip"] = "raise"
    cache: bool = False  # keep decoded samples in memory after the first epoch (small data sets, num_workers 0)
    shuffle_buffer: int = 1000  # streamed: samples per shuffle group (whole shards)
    io: DataIOConfig = field(default_factory=DataIOConfig)


@dataclass
class ComponentConfig:
    """A registered component by name plus its keyword arguments."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObjectiveConfig:
    name: str
    weight: float = 1.0
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    name: Literal["adam", "adamw", "sgd", "lars"] = "adam"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd / lars


@dataclass
class ScheduleConfig:
    name: Literal["constant", "cosine", "step"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of the peak lr
    step_every: int = 1000  # step schedule: multiply lr by gamma every N steps
    gamma: float = 0.1


@dataclass
class TrainConfig:
    batch_size: int = 64  # global batch (over all processes and accumulation steps)
    steps: int | None = None
    epochs: int | None = None
    precision: Literal["no", "bf16", "fp16"] = "no"
    grad_accum: int = 1
    grad_clip: float | None = None
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = None  # torch CPU threads; None keeps torch's default (OMP_NUM_THREADS or the core count)
    compile: bool = False


@dataclass
class CheckpointConfig:
    every: int = 500  # steps; 0 = only at the end
    keep: int = 3


@dataclass
class LogConfig:
    every: int = 10
    dir: str = "runs"  # the run folder is <dir>/<name>
    tensorboard: bool = False  # also write TensorBoard events when tensorboard is installed
    progress: bool = True


@dataclass
class EvalConfig:
    """One evaluation to run on the final checkpoint: a registered evaluation (``kind``), the splits, and its
    options (every other key of the entry, checked against the evaluation's ``Options``; read back as attributes:
    ``entry.features``)."""

    kind: str
    split: str = "test"
    train_split: str = "train"
    args: dict[str, Any] = field(default_factory=dict)
    options: Any = field(default=None, repr=False, compare=False)  # the evaluation's Options, set by validation

    def __getattr__(self, name: str) -> Any:
        options = self.__dict__.get("options")
        if options is not None and hasattr(options, name):
            return getattr(options, name)
        raise AttributeError(f"eval entry {self.__dict__.get('kind')!r} has no option {name!r}")


@dataclass
class Recipe:
    """A full pretraining run."""

    name: str
    data: DataConfig
    views: ComponentConfig
    encoders: dict[str, ComponentConfig]  # keyed by view name or modality
    objectives: list[ObjectiveConfig]
    description: str = ""
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    eval: list[EvalConfig] = field(default_factory=list)
    view_to_encoder: dict[str, str] = field(default_factory=dict)  # explicit view -> encoder key sharing
    imports: list[str] = field(default_factory=list)  # modules to import first (they register your components)

    @property
    def run_dir(self) -> Path:
        return Path(self.log.dir) / self.name


# ---------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of {_type_name(typing.get_args(tp)[1])}"
    if tp is Any:
        return "any value"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


class _Validator:
    def __init__(self, origins: Origins, root_source: str):
        self.origins = origins
        self.root_source = root_source

    def where(self, path: str) -> Origin:
        probe = path
        while probe:
            if probe in self.origins:
                return self.origins[probe]
            probe = probe.rpartition(".")[0] if "." in probe else probe.rpartition("[")[0]
        return Origin(self.root_source)

    def fail(self, path: str, message: str) -> RecipeError:
        return RecipeError(f"{self.where(path)}: {path}: {message}")

    def convert(self, value: Any, tp: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        if tp is Any:
            return value
        if dataclasses.is_dataclass(tp):
            return self.convert_dataclass(value, tp, path)
        if origin in (typing.Union, types.UnionType):
            args = typing.get_args(tp)
            if value is None and type(None) in args:
                return None
            for arg in (a for a in args if a is not type(None)):
                try:
                    return self.convert(value, arg, path)
                except RecipeError:
                    continue
            raise self.fail(path, f"expected {_type_name(tp)}, got {value!r}")
        if origin is Literal:
            if value not in typing.get_args(tp):
                raise self.fail(path, f"expected one of {_type_name(tp)}, got {value!r}")
            return value
        if origin is list:
            if not isinstance(value, list | tuple):
                raise self.fail(path, f"expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
            (item_tp,) = typing.get_args(tp)
            return [self.convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
        if origin is dict:
            if not isinstance(value, dict):
                raise self.fail(path, f"expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")
            _, value_tp = typing.get_args(tp)
            return {k: self.convert(v, value_tp, f"{path}.{k}") for k, v in value.items()}
        return self.convert_scalar(value, tp, path)

    def convert_scalar(self, value: Any, tp: type, path: str) -> Any:
        if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if tp is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if tp in (str, bool) and isinstance(value, tp):
            return value
        raise self.fail(path, f"expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")

    def convert_dataclass(self, value: Any, cls: type, path: str) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise self.fail(path, f"expected {_type_name(cls)}, got {value!r} ({type(value).__name__})")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            key = f"{path}.{unknown[0]}" if path else unknown[0]
            raise self.fail(key, f"unknown key {unknown[0]!r}; expected one of: {', '.join(fields)}")
        kwargs = {}
        for name, f in fields.items():
            key = f"{path}.{name}" if path else name
            if name in value:
                kwargs[name] = self.convert(value[name], hints[name], key)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise self.fail(key, f"missing required key (expected {_type_name(hints[name])})")
        return cls(**kwargs)


def _normalise_components(data: dict) -> dict:
    """Accept the short forms ``views: {name: amdim, size: 64}``, ``encoders: {image: {kind: timm, ...}}`` and
    ``objectives: [{name: cmc, weight: 1, temperature: 0.1}]``: keys other than the name (and an objective's
    weight) become ``args``; an explicit ``args`` mapping wins over them."""
    data = dict(data)

    def split(spec: Any, name_key: str, head_keys: tuple[str, ...] = ()) -> Any:
        if not isinstance(spec, dict) or name_key not in spec:
            return spec
        spec = dict(spec)
        head = {"name": spec.pop(name_key), **{k: spec.pop(k) for k in head_keys if k in spec}}
        args = spec.pop("args", {})
        if not isinstance(args, dict):
            return {**head, "args": args, **spec}  # validation reports the bad args
        return {**head, "args": deep_merge(spec, args)}

    if "views" in data:
        data["views"] = split(data["views"], "name")
    if isinstance(data.get("encoders"), dict):
        data["encoders"] = {
            k: split(v, "kind") if "kind" in (v or {}) else split(v, "name") for k, v in data["encoders"].items()
        }
    if isinstance(data.get("objectives"), list):
        data["objectives"] = [split(spec, "name", ("weight",)) for spec in data["objectives"]]
    if isinstance(data.get("eval"), list):  # {kind, split, train_split, <options>} -> options under args
        heads = ("kind", "split", "train_split", "args")
        data["eval"] = [
            {**{k: v for k, v in e.items() if k in heads}, "args": {k: v for k, v in e.items() if k not in heads}}
            if isinstance(e, dict) and "args" not in e
            else e
            for e in data["eval"]
        ]
    return data


def validate_recipe(data: dict, origins: Origins | None = None, source: str = "<recipe>") -> Recipe:
    """Validate a recipe mapping into a :class:`Recipe`; errors name the key and where it was set."""
    validator = _Validator(origins or {}, source)
    recipe = validator.convert_dataclass(_normalise_components(data), Recipe, "")
    _check_semantics(recipe, validator)
    return recipe


def _check_semantics(recipe: Recipe, validator: _Validator) -> None:
    train = recipe.train
    if (train.steps is None) == (train.epochs is None):
        raise validator.fail(
            "train", f"set exactly one of train.steps and train.epochs (got {train.steps}, {train.epochs})"
        )
    positives = {
        "train.batch_size": train.batch_size,
        "train.grad_accum": train.grad_accum,
        "train.steps": train.steps or 1,
        "train.epochs": train.epochs or 1,
        "log.every": recipe.log.every,
        "checkpoint.keep": recipe.checkpoint.keep,
    }
    for key, value in positives.items():
        if value <= 0:
            raise validator.fail(key, f"expected a positive integer, got {value}")
    data = recipe.data
    for key, value in {"data.shuffle_buffer": data.shuffle_buffer, "data.io.timeout": data.io.timeout}.items():
        if value <= 0:
            raise validator.fail(key, f"expected a positive number, got {value}")
    if data.io.retries < 0 or data.io.backoff < 0:
        raise validator.fail("data.io", f"retries and backoff must be >= 0, got {data.io.retries}, {data.io.backoff}")
    if data.epoch_size is not None and data.epoch_size <= 0:
        raise validator.fail("data.epoch_size", f"expected a positive integer, got {data.epoch_size}")
    if isinstance(data.path, list) and not data.path:
        raise validator.fail("data.path", "expected a source or a non-empty list of URLs, got []")
    if recipe.eval:
        _import_plugins(recipe, validator)  # a plugin module may register the evaluation an entry names
    for i, entry in enumerate(recipe.eval):
        _check_eval_entry(entry, f"eval[{i}]", validator)
    if not recipe.objectives:
        raise validator.fail("objectives", "expected at least one objective")
    if not recipe.encoders:
        raise validator.fail("encoders", "expected at least one encoder")
    if recipe.optimizer.lr <= 0:
        raise validator.fail("optimizer.lr", f"expected a positive learning rate, got {recipe.optimizer.lr}")


def _import_plugins(recipe: Recipe, validator: _Validator) -> None:
    """Import the recipe's ``imports:`` modules (they register components and evaluations)."""
    import importlib

    for i, module in enumerate(recipe.imports):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise validator.fail(f"imports[{i}]", f"cannot import {module!r}: {err}") from None


def _check_eval_entry(entry: EvalConfig, path: str, validator: _Validator) -> None:
    """The entry's kind is a registered evaluation and its options fit that evaluation's ``Options``."""
    from multiview.core.evaluations import EVALUATIONS

    if entry.kind not in EVALUATIONS:
        raise validator.fail(f"{path}.kind", f"unknown evaluation {entry.kind!r}; registered: {EVALUATIONS.names()}")
    evaluation = EVALUATIONS.get(entry.kind)()
    options = validator.convert_dataclass(entry.args, evaluation.Options, path)
    try:
        evaluation.check(options)
    except ValueError as err:  # OptionError: names the key
        key = getattr(err, "key", None)
        raise validator.fail(f"{path}.{key}" if key else path, getattr(err, "message", str(err))) from None
    entry.options = options


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load, merge (``extends:``), override (``key=value``) and validate a recipe file."""
    data, origins = load_recipe_dict(path)
    data = apply_overrides(data, origins, list(overrides or []))
    return validate_recipe(data, origins, str(path))


def recipe_to_dict(recipe: Recipe) -> dict:
    return dataclasses.asdict(recipe)


def dump_recipe(recipe: Recipe, path: str | Path) -> None:
    """Write the fully resolved recipe (what actually ran) as YAML."""
    Path(path).write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))


def recipe_from_dict(data: dict) -> Recipe:
    return validate_recipe(data, {}, "<saved recipe>")
