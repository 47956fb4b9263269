"""The evaluation extension point: an :class:`Evaluation` is one class with an ``Options`` dataclass (its own
arguments: they become ``multiview eval <name>`` flags and recipe ``eval:`` keys) and ``run(ctx, options)``;
what every evaluation shares -- the data, the encoders, the splits, the output -- is one :class:`EvalContext`.

Register one with ``@register_evaluation("name")``; the CLI, the recipe loader and ``run_evaluation`` find it
in :data:`multiview.core.evaluations.EVALUATIONS`.

Examples (docs/guide/extending.md runs a complete one)::

    >>> from dataclasses import dataclass
    >>> @register_evaluation("count")  # doctest: +SKIP
    ... class Count(Evaluation):
    ...     help = "count the samples of a split"
    ...     @dataclass
    ...     class Options:
    ...         limit: int = 0  # an option: --limit on the command line, `limit:` in a recipe entry
    ...     def run(self, ctx, options):
    ...         n = sum(1 for _ in ctx.samples(ctx.split))
    ...         return {"task": "count", "rows": [{"metric": "samples", "value": n}]}
    >>> "count" in EVALUATIONS  # doctest: +SKIP
    True
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

from multiview.core.evaluations import EVALUATIONS
from multiview.eval.bundle import EvalBundle

SamplesFn = Callable[[str], Iterable[dict]]


class OptionError(ValueError):
    """An evaluation option has a bad value: ``key`` names it (the recipe loader adds the file and line)."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


@dataclass
class Methods:
    """Which methods an evaluation runs: the checkpoint's encoders (learned) and / or the raw-input baseline."""

    learned: bool
    baseline: bool


@dataclass
class EvalContext:
    """What every evaluation needs besides its own options.

    Attributes:
        data: the shard source (a folder, URLs, ``s3://`` prefix...; see docs/shards.md).
        checkpoint: a checkpoint folder (or None: the raw baseline, or ``bundle`` given directly).
        bundle: encoders and transforms already loaded (tests, the trainer); loaded from ``checkpoint`` otherwise.
        split, train_split: the split evaluated, and the one baselines / probes are fitted on.
        baseline: ``"raw"`` evaluates raw inputs instead of a checkpoint; ``compare_baseline`` adds the raw
            baseline next to a checkpoint's results.
        label_field, batch_size, device: which field holds labels; encoder batch size and device.
        out_dir, plots, map_method, command: where the report goes, whether to draw PNGs, the 2-D map method,
            the command recorded in the report.
        samples_fn: ``split -> iterable of decoded samples`` (default: ``multiview.data.iter_samples(data, split)``).
        rename: ``{name: field in the shards}`` (default: the checkpoint recipe's ``data.rename``).
    """

    data: Any = None
    checkpoint: str | None = None
    bundle: EvalBundle | None = None
    split: str = "test"
    train_split: str = "train"
    baseline: str | None = None
    compare_baseline: bool = True
    label_field: str | None = "label"
    batch_size: int = 256
    device: str = "cpu"
    out_dir: str | Path | None = None
    plots: bool = True
    map_method: str = "pca"
    command: Sequence[str] | str = ""
    samples_fn: SamplesFn | None = None
    rename: dict[str, str] | None = None

    def samples(self, split: str) -> Iterable[dict]:
        """The decoded samples of ``split``, in stored order, fields renamed as the checkpoint's recipe says."""
        if self.samples_fn is not None:
            return self.samples_fn(split)
        from multiview.eval import tasks

        rename = self.field_names()
        return tasks.default_samples_fn(self.data, **({"rename": rename} if rename else {}))(split)

    def field_names(self) -> dict[str, str]:
        """``{name the encoders expect: field in the shards}``: ``rename`` if given, else the recipe's
        ``data.rename`` (a checkpoint trained on foreign shards reads them as it was trained)."""
        if self.rename is not None:
            return dict(self.rename)
        bundle = self.encoders() if self.methods.learned else None
        recipe = bundle.recipe if bundle is not None else {}
        return dict((recipe.get("data") or {}).get("rename") or {})

    @cached_property
    def manifest(self) -> dict:
        """The source's manifest (or fields inferred from foreign shards; ``{}`` for none)."""
        from multiview.eval.tasks import read_manifest

        return read_manifest(self.data, self.split) if self.data is not None else {}

    @cached_property
    def methods(self) -> Methods:
        """Checkpoint and / or baseline, checked against each other (raises ValueError with the fix)."""
        if self.baseline not in (None, "raw"):
            raise ValueError(f"baseline must be 'raw' or None, got {self.baseline!r}")
        has_model = self.checkpoint is not None or self.bundle is not None
        if not has_model and self.baseline is None:
            raise ValueError("give a checkpoint (CKPT) or --baseline raw; got neither")
        if has_model and self.baseline == "raw":
            raise ValueError("--baseline raw evaluates raw inputs without a checkpoint; drop CKPT or drop --baseline")
        return Methods(learned=has_model, baseline=self.baseline == "raw" or self.compare_baseline)

    def encoders(self) -> EvalBundle | None:
        """The bundle (loaded from the checkpoint once) when the learned method runs, else None."""
        if self.methods.learned and self.bundle is None:
            from multiview.eval.load import load_for_eval

            self.bundle = load_for_eval(self.checkpoint)
        return self.bundle

    def output(self, task: str) -> Path:
        return Path(self.out_dir if self.out_dir is not None else f"runs/eval/{task}")


class Evaluation:
    """Base of an evaluation (see the module docstring). Subclasses set ``help`` / ``description``, define a
    dataclass ``Options`` (defaults, ``Literal`` choices; ``field(metadata={"help": ..., "flag": ...})``) and
    ``run``; ``check`` validates option values beyond their types."""

    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @dataclass
    class Options:
        pass

    def check(self, options: Any) -> None:
        """Raise :class:`OptionError` for an option value its type admits but the evaluation does not."""

    def run(self, ctx: EvalContext, options: Any) -> dict:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------- options
    def options(self, **values: Any) -> Any:
        """``Options(**values)``, checked; unknown names raise ValueError listing the known ones."""
        known = {f.name for f in dataclasses.fields(self.Options)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"evaluation {self.name!r} has no option {unknown[0]!r}; its options: {sorted(known)}")
        options = self.Options(**values)
        self.check(options)
        return options

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """One command-line flag per option: ``--name`` (``--no-name`` for a flag that defaults to on)."""
        hints = typing.get_type_hints(self.Options)
        for f in dataclasses.fields(self.Options):
            parser.add_argument(*_flag(f), dest=f.name, **_argparse_kwargs(f, hints[f.name]))

    def options_from_args(self, args: argparse.Namespace) -> Any:
        return self.options(**{f.name: getattr(args, f.name) for f in dataclasses.fields(self.Options)})


def register_evaluation(name: str, *, overwrite: bool = False):
    """Class decorator: register an :class:`Evaluation` subclass under ``name`` (a CLI sub-command, a recipe
    ``eval: - {kind: name}``)."""

    def decorator(cls: type[Evaluation]) -> type[Evaluation]:
        cls.name = name
        return EVALUATIONS.register(name, overwrite=overwrite)(cls)

    return decorator


def get_evaluation(name: str) -> Evaluation:
    """The registered evaluation ``name`` (raises KeyError listing the registered ones)."""
    return EVALUATIONS.get(name)()


def run_evaluation(name: str, checkpoint: str | None = None, **kwargs: Any) -> dict:
    """Run evaluation ``name``: keyword arguments are :class:`EvalContext` fields and the evaluation's options.

    Examples:
        >>> run_evaluation("linear", "runs/x/checkpoints/step_000100", data="shards/mfeat", features="maps")
        ... # doctest: +SKIP
    """
    evaluation = get_evaluation(name)
    context_names = {f.name for f in dataclasses.fields(EvalContext)}
    ctx = EvalContext(checkpoint=checkpoint, **{k: v for k, v in kwargs.items() if k in context_names})
    options = evaluation.options(**{k: v for k, v in kwargs.items() if k not in context_names})
    return evaluation.run(ctx, options)


# ------------------------------------------------------------------------------------------- argparse
def _flag(f: dataclasses.Field) -> list[str]:
    if "flag" in f.metadata:
        return [f.metadata["flag"]]
    name = f.name.replace("_", "-")
    return [f"--no-{name}"] if f.default is True else [f"--{name}"]


def _argparse_kwargs(f: dataclasses.Field, tp: Any) -> dict[str, Any]:
    """argparse keywords for a dataclass field of type ``tp``."""
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    kwargs: dict[str, Any] = {"default": default, "help": f.metadata.get("help", "")}
    if default is not None and not isinstance(default, bool) and "(default" not in kwargs["help"]:
        shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else default
        kwargs["help"] += f" (default: {shown})"
    if tp is bool:
        return {**kwargs, "action": "store_false" if default is True else "store_true"}
    if "parse" in f.metadata:
        return {**kwargs, "type": f.metadata["parse"]}
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        tp = args[0]
    if typing.get_origin(tp) is Literal:
        return {**kwargs, "choices": list(typing.get_args(tp))}
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        return {**kwargs, "nargs": "+", "type": item}
    return {**kwargs, "type": tp}


def option_field(default: Any = dataclasses.MISSING, help: str = "", **metadata: Any) -> Any:  # noqa: A002
    """A dataclass field with its help text (and ``flag`` / ``parse`` overrides) for the CLI."""
    meta = {"help": help, **metadata}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)
