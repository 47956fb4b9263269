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
import logging
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

from multiview.core.evaluations import EVALUATIONS
from multiview.eval.bundle import EvalBundle
from multiview.eval.cache import EvalCache

SamplesFn = Callable[[str], Iterable[dict]]
log = logging.getLogger(__name__)


class OptionError(ValueError):
    """An evaluation option has a bad value: ``key`` names it (the recipe loader adds the file and line)."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


class EvalInputError(ValueError):
    """The evaluation cannot run on this input as asked (a split missing, fitting on the scored split); raised
    before any embedding, the message names the flag that fixes it. The CLI prints it without a traceback."""


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
        allow_same_split: let ``train_split == split`` (or two names that resolve to the same shards) fit what it
            then scores; refused otherwise, and such results are marked in the report (optimistic numbers).
        baseline: ``"raw"`` evaluates raw inputs instead of a checkpoint; ``compare_baseline`` adds the raw
            baseline next to a checkpoint's results: ``None`` (default) adds it when the source has
            ``train_split`` to fit it on and otherwise leaves it out with a warning and a note in the report;
            ``True`` insists (a missing ``train_split`` is an error); ``False`` leaves it out.
        label_field, batch_size, device: which field holds labels; encoder batch size and device.
        out_dir, plots, map_method, command: where the report goes, whether to draw PNGs, the 2-D map method,
            the command recorded in the report.
        samples_fn: ``split -> iterable of decoded samples`` (default: ``multiview.data.iter_samples(data, split)``).
        rename: ``{name: field in the shards}`` (default: the checkpoint recipe's ``data.rename``).
        notes: what the report should say about how the numbers were obtained (filled by :meth:`check_splits`).
        progress: show a progress bar per phase on stderr (embedding each split, fitting, scoring, plots) when
            stderr is a terminal; False keeps quiet (``--quiet``). Each evaluation logs its phase times either way.
        cache: embeddings and raw inputs already computed (:class:`multiview.eval.cache.EvalCache`); hand the same
            cache to several contexts on the same data and checkpoint to compute them once.
    """

    data: Any = None
    checkpoint: str | None = None
    bundle: EvalBundle | None = None
    split: str = "test"
    train_split: str = "train"
    allow_same_split: bool = False
    baseline: str | None = None
    compare_baseline: bool | None = None
    label_field: str | None = "label"
    batch_size: int = 256
    device: str = "cpu"
    out_dir: str | Path | None = None
    plots: bool = True
    map_method: str = "pca"
    command: Sequence[str] | str = ""
    samples_fn: SamplesFn | None = None
    rename: dict[str, str] | None = None
    notes: list[str] = field(default_factory=list)
    progress: bool = True
    cache: EvalCache = field(default_factory=lambda: EvalCache())
    _same_shards: bool = field(default=False, init=False, repr=False)

    def samples(self, split: str) -> Iterable[dict]:
        """The decoded samples of ``split``, in stored order, fields renamed as the checkpoint's recipe says."""
        if self.samples_fn is not None:
            return self.samples_fn(split)
        from multiview.eval import tasks

        rename = self.field_names()
        return tasks.default_samples_fn(self.data, **({"rename": rename} if rename else {}))(split)

    def source_key(self) -> tuple:
        """What identifies the samples this context reads (data, renaming, label field): a cache key part."""
        data = ("samples_fn", id(self.samples_fn)) if self.samples_fn is not None else ("data", str(self.data))
        return (*data, tuple(sorted(self.field_names().items())), self.label_field)

    def split_size(self, split: str) -> int | None:
        """The sample count of ``split`` the manifest promises (None when it does not say: a progress total)."""
        if self.samples_fn is not None or self.data is None:
            return None
        try:
            count = ((self.manifest.get("splits") or {}).get(split) or {}).get("count")
        except Exception:  # noqa: BLE001 (a total for a progress bar is never worth failing over)
            return None
        return int(count) if isinstance(count, int) else None

    def progress_bar(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str, unit: str = "it"):
        """A progress bar (:func:`multiview.eval.progress.progress_bar`), drawn when :attr:`progress` allows."""
        from multiview.eval.progress import progress_bar

        return progress_bar(iterable, total=total, desc=desc, unit=unit, enabled=self.progress)

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
        return Methods(learned=has_model, baseline=self.baseline == "raw" or self.compare_baseline is not False)

    @property
    def same_split(self) -> bool:
        """Whether what is fitted on ``train_split`` is scored on it too (after :meth:`check_splits`, which also
        catches two names resolving to the same shards)."""
        return self.train_split == self.split or self._same_shards

    def check_splits(self, fitted: str, learned_fits: bool) -> Methods:
        """Check the splits before any embedding; returns the methods that will run.

        Args:
            fitted: what is fitted on ``train_split``, for messages ("the CCA baseline", "the linear probes").
            learned_fits: the learned method fits on ``train_split`` too (probes); otherwise only the baseline
                does (retrieval's CCA).

        ``split`` must exist (EvalInputError naming ``--split``). When anything is fitted: ``train_split`` must
        exist (EvalInputError naming ``--train-split``) -- except for the comparison baseline next to a checkpoint
        that nobody asked for explicitly (``compare_baseline=None``), which is left out with a warning and a note;
        and ``train_split`` must not be the scored split (EvalInputError naming ``--allow-same-split``) unless
        ``allow_same_split``, when a note says so.
        """
        methods = self.methods
        problem = self._split_problem(self.split)
        if problem:
            raise EvalInputError(f"cannot evaluate split {self.split!r}: {problem}; pass --split SPLIT")
        if not ((learned_fits and methods.learned) or methods.baseline):
            return methods
        problem = self._split_problem(self.train_split)
        if problem:
            if methods.learned and not learned_fits and self.compare_baseline is None:
                note = (
                    f"{fitted} is left out: it is fitted on split {self.train_split!r}, and {problem}. Pass "
                    "--train-split SPLIT to compare with it, or --no-baseline to say you do not want it"
                )
                log.warning("%s", note)
                self.notes.append(note)
                self.methods = Methods(learned=True, baseline=False)
                return self.methods
            raise EvalInputError(
                f"{fitted} is fitted on split {self.train_split!r}, and {problem}; pass --train-split SPLIT "
                f"naming a split to fit on{self._alone_hint(learned_fits)}"
            )
        same_names = self.train_split == self.split
        self._same_shards = not same_names and self._resolve_to_same_shards()
        if self.same_split:
            what = (
                f"split {self.split!r}"
                if same_names
                else (f"splits {self.train_split!r} and {self.split!r}, which resolve to the same shards")
            )
            if not self.allow_same_split:
                raise EvalInputError(
                    f"{fitted} would be fitted and scored on the same data ({what}): the numbers would be "
                    f"optimistic. Pass --train-split with another split{self._alone_hint(learned_fits)}, or "
                    "--allow-same-split to do it anyway (the report marks such results)"
                )
            note = f"{fitted} is fitted and scored on the same data ({what}; --allow-same-split): optimistic"
            log.warning("%s", note)
            self.notes.append(note)
        return methods

    def _alone_hint(self, learned_fits: bool) -> str:
        """The other way out when only the comparison baseline needs ``train_split``."""
        return (
            " (or --no-baseline to evaluate the checkpoint alone)" if self.methods.learned and not learned_fits else ""
        )

    def _split_problem(self, split: str) -> str | None:
        """Why ``split`` cannot be read from ``data`` (None: it can, or this context reads ``samples_fn``)."""
        if not self._checks_source():
            return None
        from multiview.data.location import SourceError, resolve
        from multiview.data.manifest import ManifestError

        try:
            source = resolve(self.data, split)
        except (SourceError, ManifestError) as err:
            return f"the source has no such split ({err})"
        if not source.urls:
            return f"the source has no shards for split {split!r}"
        return None

    def _resolve_to_same_shards(self) -> bool:
        """Whether ``train_split`` and ``split`` name the same shards (foreign shards without split names)."""
        if not self._checks_source():
            return False
        from multiview.data.location import resolve

        return resolve(self.data, self.train_split).urls == resolve(self.data, self.split).urls

    def _checks_source(self) -> bool:
        """Splits are checked on ``data`` unless samples come from ``samples_fn`` or ``data`` holds no shards."""
        if self.samples_fn is not None or self.data is None:
            return False
        from multiview.data.remote import is_local

        folder = Path(self.data) if isinstance(self.data, str | Path) and is_local(str(self.data)) else None
        return not (folder and folder.is_dir() and not (folder / "manifest.json").is_file()
                    and not any(folder.glob("*.tar")) and not any(folder.glob("*/*.tar")))  # fmt: skip

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
    context_names = {f.name for f in dataclasses.fields(EvalContext) if f.init}
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
