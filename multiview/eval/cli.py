"""``multiview eval <evaluation>`` (one sub-command per registered evaluation: retrieval, linear, knn, ...) and
``multiview eval table``.

Examples::

    multiview eval retrieval runs/mfeat/checkpoints/step_001000 --data shards/mfeat --all-pairs
    multiview eval retrieval --baseline raw --data shards/avdigits --query image --gallery audio
    multiview eval linear CKPT --data shards/basicmotions --fields acc gyro
    multiview eval knn --baseline raw --data shards/mfeat --fields pix fac
    multiview eval segment runs/mixture --data shards/scenes --field cam0 --method mixture
    multiview eval table runs/eval/*/*.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import shlex

COMMAND = "eval"  # the top-level command this module adds


def register(subparsers, tasks: bool = True) -> None:
    """Add ``eval`` with one sub-command per registered evaluation (and ``table``) to the ``multiview`` parser.

    ``tasks=False`` adds the ``eval`` entry alone: the evaluations import torch to register, which ``multiview
    --help`` and the other commands need not pay for."""
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint (or raw inputs): retrieval, linear probe, kNN, and registered evaluations",
        description="Evaluate frozen features of a checkpoint, or the raw-input baseline, on a shard source.",
    )
    sub = parser.add_subparsers(dest="eval_command", metavar="TASK")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    if not tasks:
        return
    from multiview.core.evaluations import EVALUATIONS

    for name in EVALUATIONS.names():
        evaluation = EVALUATIONS.get(name)()
        p = sub.add_parser(name, help=evaluation.help, description=evaluation.description or evaluation.help)
        _common(p, name)
        evaluation.add_arguments(p)
        flags = {a.dest: (a.option_strings[-1], a.const is False) for a in p._actions if a.option_strings}
        p.set_defaults(func=_run, _flags=flags)
    _add_table(sub)


def _common(p: argparse.ArgumentParser, task: str) -> None:
    p.add_argument("checkpoint", nargs="?", metavar="CKPT", help="checkpoint folder (omit with --baseline raw)")
    p.add_argument(
        "--data",
        required=True,
        help="shard source: a folder (manifest.json + <split>-*.tar, or foreign tars), a URL pattern with {split} "
        "(https://host/{split}-{0000..0009}.tar), a text file of URLs, s3://bucket/prefix/ (see docs/shards.md)",
    )
    p.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    p.add_argument("--train-split", default="train", help="split to fit baselines / probes on (default: train)")
    p.add_argument(
        "--allow-same-split",
        action="store_true",
        help="let --train-split be the split evaluated (refused otherwise: optimistic numbers; the report marks them)",
    )
    p.add_argument(
        "--baseline",
        choices=["raw"],
        default=None,
        help="evaluate raw inputs (flattened, standardised; CCA for retrieval) instead of a checkpoint",
    )
    p.add_argument(
        "--no-baseline",
        action="store_true",
        help="with CKPT: skip the raw baseline that the report otherwise shows next to it (it is also left out, "
        "with a warning, when the source has no --train-split to fit it on)",
    )
    p.add_argument("--label-field", default="label", help="field holding the class label (default: label)")
    p.add_argument("--batch-size", type=int, default=256, help="samples per encoder call (default: 256)")
    p.add_argument("--device", default="cpu", help="device for the encoders (default: cpu)")
    p.add_argument(
        "--out",
        default=None,
        help=f"output folder (default: runs/eval/{task}-<UTC time>) for {task}.json, {task}.md, PNGs",
    )
    p.add_argument("--no-plots", action="store_true", help="write the JSON and Markdown only")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars (they are drawn on stderr only when it is a terminal; phase times are logged anyway)",
    )
    p.add_argument(
        "--rename",
        nargs="+",
        metavar="NAME=FIELD",
        help="read shard field FIELD as NAME (default: the checkpoint recipe's data.rename), e.g. image=jpg",
    )
    p.add_argument(
        "--map",
        dest="map_method",
        choices=["pca", "tsne"],
        default="pca",
        help="2-D map of the embedding coloured by label (default: pca)",
    )


def _add_table(sub) -> None:
    p = sub.add_parser(
        "table",
        help="one Markdown table from several eval JSON reports (for the README)",
        description="Pivot the rows of eval JSON reports: one column per method, deltas.",
    )
    p.add_argument("reports", nargs="+", help="retrieval.json / linear.json / knn.json files")
    p.set_defaults(func=_run_table)


def _out_dir(args, task: str) -> str:
    if args.out:
        return args.out
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"runs/eval/{task}-{stamp}"


def _context(args, task: str):
    """The EvalContext of a parsed command line."""
    from multiview.eval.base import EvalContext

    return EvalContext(
        data=args.data,
        checkpoint=args.checkpoint,
        split=args.split,
        train_split=args.train_split,
        allow_same_split=args.allow_same_split,
        baseline=args.baseline,
        compare_baseline=False if args.no_baseline else None,  # None: next to a checkpoint when it can be fitted
        label_field=args.label_field,
        batch_size=args.batch_size,
        device=args.device,
        out_dir=_out_dir(args, task),
        plots=not args.no_plots,
        progress=not args.quiet,
        map_method=args.map_method,
        command=command_line(args, task),
        rename=_rename(args.rename),
    )


def _rename(items: list[str] | None) -> dict[str, str] | None:
    """``["image=jpg", ...]`` -> ``{"image": "jpg"}`` (None: the checkpoint recipe's ``data.rename``)."""
    if items is None:
        return None
    pairs = [item.partition("=") for item in items]
    bad = [item for item, (name, eq, field) in zip(items, pairs) if not (name and eq and field)]
    if bad:
        raise SystemExit(f"error: --rename {bad[0]!r}: expected NAME=FIELD, e.g. image=jpg")
    return {name: field for name, _, field in pairs}


def command_line(args, task: str) -> str:
    """The command as parsed (defaults filled in), so a report says exactly what ran, however it was invoked."""
    parts = ["multiview", "eval", task]
    skip = {"func", "command", "eval_command", "checkpoint", "_flags"}
    flags = getattr(args, "_flags", {})
    if args.checkpoint:
        parts.append(args.checkpoint)
    for name, value in vars(args).items():
        flag, inverted = flags.get(name, ("--" + name.replace("_", "-"), False))
        if inverted:  # a --no-X flag: shown when it turned X off
            value = value is False
        if name in skip or value is None or value is False:
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def _finish(report: dict, task: str, out_dir: str) -> int:
    """Print the table, then one JSON line (the last) with where the files are and every number."""
    import json

    from multiview.eval.report import markdown_table

    print(markdown_table(report["rows"]))
    print(json.dumps({"task": task, "out_dir": out_dir, "json": f"{out_dir}/{task}.json", "rows": report["rows"]}))
    return 0


def _run(args) -> int:
    """Run the evaluation named by the sub-command with the parsed context and options."""
    import sys

    from multiview.core.threads import configure_threads
    from multiview.eval.base import EvalInputError, get_evaluation

    logging.getLogger("multiview.eval").info(configure_threads().line())  # no loader workers: every usable CPU
    task = args.eval_command
    evaluation = get_evaluation(task)
    ctx = _context(args, task)
    try:
        report = evaluation.run(ctx, evaluation.options_from_args(args))
    except EvalInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return _finish(report, task, str(ctx.out_dir))


def _run_table(args) -> int:
    from multiview.eval.report import tabulate_reports

    print(tabulate_reports(args.reports))
    return 0
