"""Helpers shared by the builders: progress bars, the call to the shard writer and the one command line every
builder runs under (``python -m multiview.builders NAME`` and the thin ``datasets/NAME.py`` scripts)."""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

BUILDERS = ("avdigits", "basicmotions", "fashion_mnist", "mfeat", "scenes")


def progress(items: Iterable, total: int | None, desc: str, enabled: bool) -> Iterable:
    """``items`` wrapped in a tqdm bar when ``enabled`` (on stderr, so scripts' stdout stays clean)."""
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit="sample", leave=False)


def write(
    out_dir: str | Path,
    splits: Mapping[str, Iterable[dict]],
    totals: Mapping[str, int],
    *,
    builder: str,
    builder_args: Mapping[str, Any],
    extra: Mapping[str, Any],
    maxcount: int = 1000,
    show_progress: bool = False,
    modalities: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Write the splits through ``multiview.data.write_dataset`` and return its manifest (``modalities``
    overrides the inferred modality of a field, as there)."""
    from multiview.data import write_dataset

    wrapped = {name: progress(samples, totals.get(name), name, show_progress) for name, samples in splits.items()}
    return write_dataset(
        out_dir,
        wrapped,
        builder=builder,
        builder_args=dict(builder_args),
        maxcount=maxcount,
        extra=dict(extra),
        modalities=modalities,
    )


def run_builder(
    builder: str | ModuleType,
    argv: Sequence[str] | None = None,
    *,
    description: str | None = None,
    prog: str | None = None,
) -> int:
    """Build one data set's shards from a command line; returns the exit status.

    The options are ``--out`` (required), the builder module's own (its ``add_arguments(parser)``, if any),
    ``--maxcount`` (default: its ``build``'s) and ``--quiet``. The module's ``build_from_args(args)`` builds (default:
    ``build(out, maxcount=, show_progress=)``); the split counts are printed, then the module's ``report(manifest)``
    line if it has one. An error of a type in its ``CLI_ERRORS`` is printed as ``error: ...`` and returns 1.

    Args:
        builder: a name in :data:`BUILDERS` or the builder module.
        argv: the arguments (default: ``sys.argv[1:]``).
        description: the ``--help`` text (default: the builder module's docstring).
        prog: the program name ``--help`` shows (default: argparse's, the script's file name).
    """
    module = importlib.import_module(f"multiview.builders.{builder}") if isinstance(builder, str) else builder
    parser = argparse.ArgumentParser(
        prog=prog, description=description or module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, help="output folder (created)")
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    maxcount = inspect.signature(module.build).parameters["maxcount"].default
    parser.add_argument("--maxcount", type=int, default=maxcount, help=f"samples per shard (default: {maxcount})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        if hasattr(module, "build_from_args"):
            manifest = module.build_from_args(args)
        else:
            manifest = module.build(args.out, maxcount=args.maxcount, show_progress=not args.quiet)
    except getattr(module, "CLI_ERRORS", ()) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print({name: entry["count"] for name, entry in manifest["splits"].items()}, "->", args.out)
    if hasattr(module, "report"):
        print(module.report(manifest))
    return 0


def script_main(builder: ModuleType, description: str | None) -> Callable[[Sequence[str] | None], int]:
    """``main(argv=None) -> exit status`` of a ``datasets/NAME.py`` script: :func:`run_builder` with its docstring."""

    def main(argv: Sequence[str] | None = None) -> int:
        return run_builder(builder, argv, description=description)

    return main
