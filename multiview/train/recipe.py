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
import math
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
    short_repr,
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
    sync_bn: bool = True  # several processes: batch-norm statistics over the global batch (GlobalBatchNorm)


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
        """Where ``path`` (or the nearest key above it) was set. Component args may have been written in the
        short form (``objectives[0].temperature`` for ``objectives[0].args.temperature``): both are looked up."""
        probe = path
        while probe:
            for candidate in (probe, probe.replace(".args.", ".").removesuffix(".args")):
                if candidate in self.origins:
                    return self.origins[candidate]
            probe = probe.rpartition(".")[0] if probe.rfind(".") > probe.rfind("[") else probe.rpartition("[")[0]
        return Origin(self.root_source)

    def fail(self, path: str, message: str) -> RecipeError:
        short = path.replace(".args.", ".").removesuffix(".args")
        shown = short if path not in self.origins and short in self.origins else path  # as the recipe spells it
        return RecipeError(f"{self.where(path)}: {shown}: {message}")

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
            raise self.fail(path, f"expected {_type_name(tp)}, got {short_repr(value)}")
        if origin is Literal:
            if value not in typing.get_args(tp):
                raise self.fail(path, f"expected one of {_type_name(tp)}, got {short_repr(value)}")
            return value
        if origin is list:
            if not isinstance(value, list | tuple):
                raise self.fail(path, f"expected {_type_name(tp)}, got {short_repr(value)} ({type(value).__name__})")
            (item_tp,) = typing.get_args(tp)
            return [self.convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
        if origin is dict:
            if not isinstance(value, dict):
                raise self.fail(path, f"expected {_type_name(tp)}, got {short_repr(value)} ({type(value).__name__})")
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
        raise self.fail(path, f"expected {_type_name(tp)}, got {short_repr(value)} ({type(value).__name__})")

    def convert_dataclass(self, value: Any, cls: type, path: str) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise self.fail(path, f"expected {_type_name(cls)}, got {short_repr(value)} ({type(value).__name__})")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            key = f"{path}.{unknown[0]}" if path else unknown[0]
            raise self.fail(key, f"unknown key {short_repr(unknown[0])}; expected one of: {', '.join(fields)}")
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
            k: split(v, "kind") if isinstance(v, dict) and "kind" in v else split(v, "name")
            for k, v in data["encoders"].items()
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
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a mapping of keys, got {short_repr(data)} ({type(data).__name__})")
    recipe = validator.convert_dataclass(_normalise_components(data), Recipe, "")
    _check_semantics(recipe, validator)
    recipe.__dict__["_validator"] = validator  # not a field: recipe_error() points later errors at the file line
    return recipe


def recipe_error(recipe: Recipe, path: str, message: str) -> RecipeError:
    """A :class:`RecipeError` about ``path`` (``"objectives[0].args"``) of a loaded recipe, naming the file and
    line where it was set (or the recipe's name when it was built in code)."""
    validator = recipe.__dict__.get("_validator") or _Validator({}, f"recipe {recipe.name!r}")
    return validator.fail(path, message)


def recipe_knows(recipe: Recipe, path: str) -> bool:
    """Whether the recipe's file or command line set ``path`` itself (as written: ``encoders.a.kind``)."""
    validator = recipe.__dict__.get("_validator")
    return validator is not None and path in validator.origins


def check_batch_split(recipe: Recipe, processes: int) -> None:
    """train.batch_size is the global batch: it must split evenly over processes x accumulation steps (the
    process count is known only when the run starts)."""
    train = recipe.train
    if train.batch_size % (processes * train.grad_accum):
        raise recipe_error(
            recipe,
            "train.batch_size",
            f"{train.batch_size} is not divisible by processes x train.grad_accum = {processes} x {train.grad_accum}; "
            f"expected a multiple of {processes * train.grad_accum} (the global batch is split over both)",
        )


_POSITIVE_INT = ("expected a positive integer", lambda v: v > 0)
_OPTIONAL_POSITIVE_INT = ("expected a positive integer or null", lambda v: v is None or v > 0)
_COUNT = ("expected an integer >= 0", lambda v: v >= 0)
_POSITIVE = ("expected a positive finite number", lambda v: math.isfinite(v) and v > 0)
_NON_NEGATIVE = ("expected a finite number >= 0", lambda v: math.isfinite(v) and v >= 0)
_FRACTION = ("expected a number in [0, 1]", lambda v: 0 <= v <= 1)


def _ranges(recipe: Recipe) -> list[tuple[str, Any, tuple[str, Any]]]:
    """(key, value, (what is expected, test)) for every number of the recipe whose type alone is not enough."""
    train, data, optimizer, schedule = recipe.train, recipe.data, recipe.optimizer, recipe.schedule
    return [
        ("train.batch_size", train.batch_size, _POSITIVE_INT),
        ("train.grad_accum", train.grad_accum, _POSITIVE_INT),
        ("train.steps", train.steps, _OPTIONAL_POSITIVE_INT),
        ("train.epochs", train.epochs, _OPTIONAL_POSITIVE_INT),
        ("train.threads", train.threads, _OPTIONAL_POSITIVE_INT),  # 0 was silently ignored
        # a negative max norm turns clipping into gradient ascent (loss 20.8 -> 77.5 in 30 steps); 0 was "off"
        (
            "train.grad_clip",
            train.grad_clip,
            (
                "expected a positive number (the max gradient norm) or null (no clipping)",
                lambda v: v is None or (math.isfinite(v) and v > 0),
            ),
        ),
        (
            "train.seed",
            train.seed,
            ("expected an integer in [0, 2**32 - 1] (numpy's seed range)", lambda v: 0 <= v < 2**32),
        ),
        ("log.every", recipe.log.every, _POSITIVE_INT),
        ("checkpoint.keep", recipe.checkpoint.keep, _POSITIVE_INT),
        (
            "checkpoint.every",
            recipe.checkpoint.every,
            ("expected an integer >= 0 (0: only at the end)", lambda v: v >= 0),
        ),
        ("data.num_workers", data.num_workers, _COUNT),
        ("data.shuffle_buffer", data.shuffle_buffer, _POSITIVE_INT),
        ("data.epoch_size", data.epoch_size, _OPTIONAL_POSITIVE_INT),
        ("data.io.timeout", data.io.timeout, _POSITIVE),
        ("data.io.retries", data.io.retries, _COUNT),
        ("data.io.backoff", data.io.backoff, _NON_NEGATIVE),
        (
            "data.path",
            data.path,
            ("expected a shard source (a path or URL)", lambda v: isinstance(v, list) or v.strip()),
        ),
        ("optimizer.lr", optimizer.lr, _POSITIVE),
        (
            "optimizer.betas",
            optimizer.betas,
            ("expected two numbers in [0, 1)", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v)),
        ),
        ("optimizer.weight_decay", optimizer.weight_decay, _NON_NEGATIVE),
        ("optimizer.momentum", optimizer.momentum, _NON_NEGATIVE),
        ("schedule.warmup_steps", schedule.warmup_steps, _COUNT),
        ("schedule.min_lr_ratio", schedule.min_lr_ratio, _FRACTION),
        ("schedule.step_every", schedule.step_every, _POSITIVE_INT),
        ("schedule.gamma", schedule.gamma, _POSITIVE),
        (
            "name",
            recipe.name,
            (
                "expected a run name usable as a folder name (not empty, no '/', not '..')",
                lambda v: v.strip() and v not in (".", "..") and not set(v) & set("/\\\0"),
            ),
        ),
        *((f"objectives[{i}].weight", o.weight, _NON_NEGATIVE) for i, o in enumerate(recipe.objectives)),
    ]


def _check_semantics(recipe: Recipe, validator: _Validator) -> None:
    """Values of the right type but outside what they mean: each names the key, the value and the range."""
    train = recipe.train
    if (train.steps is None) == (train.epochs is None):
        raise validator.fail(
            "train", f"set exactly one of train.steps and train.epochs (got {train.steps}, {train.epochs})"
        )
    for key, value, (expected, ok) in _ranges(recipe):
        if not ok(value):
            raise validator.fail(key, f"{expected}, got {short_repr(value)}")
    if train.batch_size % train.grad_accum:
        raise validator.fail(
            "train.batch_size",
            f"{train.batch_size} is not divisible by train.grad_accum={train.grad_accum}; expected a multiple of it "
            f"(the global batch is split over processes x accumulation steps)",
        )
    if isinstance(recipe.data.path, list) and not recipe.data.path:
        raise validator.fail("data.path", "expected a source or a non-empty list of URLs, got []")
    for i, entry in enumerate(recipe.eval):
        _check_eval_entry(entry, f"eval[{i}]", validator)
    if not recipe.objectives:
        raise validator.fail("objectives", "expected at least one objective")
    if not recipe.encoders:
        raise validator.fail("encoders", "expected at least one encoder")


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
