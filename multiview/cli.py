"""The ``multiview`` command: a thin front over the library.

Each area of the package contributes its sub-commands through a ``register(subparsers)`` function in a light
module (heavy imports happen inside the handlers), so ``multiview --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import sys

# module path -> registers one or more top-level sub-commands
COMMAND_MODULES = (
    "multiview.data.cli",  # shards write / inspect / verify
    "multiview.pretrain",  # pretrain, export
    "multiview.eval.cli",  # eval retrieval / linear / knn
    "multiview.quickstart",  # quickstart
)


def build_parser(command: str | None = "eval") -> argparse.ArgumentParser:
    """The parser; ``command`` (the first argument) lets areas skip building sub-commands that are not asked for
    (``register(subparsers, tasks=...)``)."""
    parser = argparse.ArgumentParser(
        prog="multiview",
        description="Self-supervised multimodal, multi-view representation learning by maximising MI across views.",
    )
    from multiview.core.version import __version__

    parser.add_argument("--version", action="version", version=f"multiview {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:  # a real import error inside an existing module
                raise
            continue  # that area is not built yet
        if "tasks" in inspect.signature(module.register).parameters:
            module.register(subparsers, tasks=command == module.COMMAND)
        else:
            module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args, extra = parser.parse_known_args(argv)
    # argparse stops collecting ``key=value`` overrides at the first option; accept them anywhere.
    if extra and hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _log_to_stderr()
    return int(args.func(args) or 0)


def _log_to_stderr() -> None:
    """The library's INFO lines (what a streamed epoch cuts or pads, sources read as a split) on stderr, once."""
    logger = logging.getLogger("multiview")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record comes (``main`` may run many times in one
    process -- tests, notebooks -- with stderr replaced in between)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
