"""``multiview eval {retrieval,linear,knn,table}``: the evaluation commands (heavy imports inside handlers).

Examples::

    multiview eval retrieval runs/mfeat/checkpoints/step_001000 --data shards/mfeat --all-pairs
    multiview eval retrieval --baseline raw --data shards/avdigits --query image --gallery audio
    multiview eval linear CKPT --data shards/basicmotions --fields acc gyro
    multiview eval knn --baseline raw --data shards/mfeat --fields pix fac
    multiview eval table runs/eval/*/*.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shlex


def register(subparsers) -> None:
    """Add ``eval`` and its sub-commands to the top-level ``multiview`` parser."""
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint (or raw inputs): retrieval, linear probe, kNN",
        description="Evaluate frozen features of a checkpoint, or the raw-input baseline, on a shard folder.",
    )
    sub = parser.add_subparsers(dest="eval_command", metavar="TASK")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    _add_retrieval(sub)
    _add_linear(sub)
    _add_knn(sub)
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
        "--baseline",
        choices=["raw"],
        default=None,
        help="evaluate raw inputs (flattened, standardised; CCA for retrieval) instead of a checkpoint",
    )
    p.add_argument(
        "--no-baseline",
        action="store_true",
        help="with CKPT: skip the raw baseline that the report otherwise shows next to it",
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
        "--map",
        dest="map_method",
        choices=["pca", "tsne"],
        default="pca",
        help="2-D map of the embedding coloured by label (default: pca)",
    )


def _add_retrieval(sub) -> None:
    p = sub.add_parser(
        "retrieval",
        help="cross-view retrieval: R@k, median/mean rank (paired rows), mAP and P@k (labels), both directions",
        description="Embed two fields of the same samples, rank by cosine similarity, report metrics both ways. "
        "R@k = at least one positive in the top k; ties are counted against the query.",
    )
    _common(p, "retrieval")
    p.add_argument("--query", help="query field (e.g. image)")
    p.add_argument("--gallery", help="gallery field (e.g. audio)")
    p.add_argument("--all-pairs", action="store_true", help="every pair of --fields (default: all view fields)")
    p.add_argument("--fields", nargs="+", help="fields for --all-pairs")
    p.add_argument(
        "--paired",
        choices=["auto", "yes", "no"],
        default="auto",
        help="instance-level metrics (row i <-> row i). auto: yes, unless the manifest's "
        "extra.pairing says 'class' (default: auto)",
    )
    p.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10], help="cut-offs k (default: 1 5 10)")
    p.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="query rows per similarity block (default: sized to 4M scores per block)",
    )
    p.add_argument("--cca-components", type=int, default=10, help="CCA components of the baseline (default: 10)")
    p.add_argument("--grid-queries", type=int, default=6, help="queries shown in each retrieval grid (default: 6)")
    p.set_defaults(func=_run_retrieval)


def _add_probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fields", nargs="+", help="fields to probe (default: every field with an encoder / view)")
    p.add_argument("--no-fuse", action="store_true", help="do not add the fields' concatenated features")
    p.add_argument(
        "--features",
        choices=["global", "maps", "trunk"],
        default="global",
        help="what the probe reads: the encoders' global vectors (default); those plus every local conv map "
        "average-pooled to --grid x --grid (maps: the DIM / AMDIM papers' conv-map probes); or the pooled trunk "
        "output before the projection head (trunk: timm encoders)",
    )
    p.add_argument("--grid", type=int, default=2, help="pooling grid of --features maps (default: 2)")


def _add_linear(sub) -> None:
    p = sub.add_parser(
        "linear",
        help="linear probe on frozen features: standardise, weight-decay search on a validation split, top-1",
        description="Logistic regression on frozen, standardised features per field (and fused); the weight "
        "decay is chosen on a stratified validation split carved from the train split.",
    )
    _common(p, "linear")
    _add_probe_args(p)
    p.add_argument(
        "--weight-decays",
        type=float,
        nargs="+",
        default=None,
        help="grid of weight decays (default: 1e-6 .. 1e-1, one per decade)",
    )
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of train held out (default: 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation split (default: 0)")
    p.set_defaults(func=_run_linear)


def _add_knn(sub) -> None:
    p = sub.add_parser(
        "knn",
        help="cosine kNN on frozen features (k=20, exp(sim/0.07) weighted votes)",
        description="Weighted cosine kNN as in InstDisc: the k nearest train items vote with exp(sim / tau).",
    )
    _common(p, "knn")
    _add_probe_args(p)
    p.add_argument("--k", type=int, default=20, help="neighbours (default: 20)")
    p.add_argument("--temperature", type=float, default=0.07, help="vote temperature tau (default: 0.07)")
    p.add_argument("--chunk-size", type=int, default=None, help="test rows per similarity block")
    p.set_defaults(func=_run_knn)


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


def _shared(args, task: str) -> dict:
    return {
        "data": args.data,
        "split": args.split,
        "train_split": args.train_split,
        "baseline": args.baseline,
        "compare_baseline": not args.no_baseline,
        "label_field": args.label_field,
        "batch_size": args.batch_size,
        "device": args.device,
        "out_dir": _out_dir(args, task),
        "plots": not args.no_plots,
        "map_method": args.map_method,
        "command": command_line(args, task),
    }


def command_line(args, task: str) -> str:
    """The command as parsed (defaults filled in), so a report says exactly what ran, however it was invoked."""
    parts = ["multiview", "eval", task]
    skip = {"func", "command", "eval_command", "checkpoint"}
    if args.checkpoint:
        parts.append(args.checkpoint)
    for name, value in vars(args).items():
        if name in skip or value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-").replace("map-method", "map")
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


def _run_retrieval(args) -> int:
    from multiview.eval.tasks import run_retrieval

    kwargs = _shared(args, "retrieval")
    report = run_retrieval(
        args.checkpoint,
        query=args.query,
        gallery=args.gallery,
        fields=args.fields,
        all_pairs=args.all_pairs,
        paired=args.paired,
        ks=args.ks,
        chunk_size=args.chunk_size,
        cca_components=args.cca_components,
        grid_queries=args.grid_queries,
        **kwargs,
    )
    return _finish(report, "retrieval", kwargs["out_dir"])


def _run_linear(args) -> int:
    from multiview.eval.tasks import run_linear

    kwargs = _shared(args, "linear")
    report = run_linear(
        args.checkpoint,
        fields=args.fields,
        fuse=not args.no_fuse,
        weight_decays=args.weight_decays,
        val_fraction=args.val_fraction,
        seed=args.seed,
        features=args.features,
        grid=args.grid,
        **kwargs,
    )
    return _finish(report, "linear", kwargs["out_dir"])


def _run_knn(args) -> int:
    from multiview.eval.tasks import run_knn

    kwargs = _shared(args, "knn")
    report = run_knn(
        args.checkpoint,
        fields=args.fields,
        fuse=not args.no_fuse,
        k=args.k,
        temperature=args.temperature,
        chunk_size=args.chunk_size,
        features=args.features,
        grid=args.grid,
        **kwargs,
    )
    return _finish(report, "knn", kwargs["out_dir"])


def _run_table(args) -> int:
    from multiview.eval.report import tabulate_reports

    print(tabulate_reports(args.reports))
    return 0
