"""``multiview shards write | inspect | verify | index`` (heavy imports happen inside the handlers)."""

from __future__ import annotations

import argparse
import json
import sys


def _size(text: str) -> int:
    """``"256M"`` / ``"1G"`` / ``"4096"`` -> bytes."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("b")
    try:
        return int(float(text[:-1]) * units[text[-1]]) if text and text[-1] in units else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected bytes or a number with k/M/G") from None


def _io_options(args: argparse.Namespace):
    """IOOptions from ``--endpoint-url`` / ``--storage-option KEY=JSON`` (credentials: the usual AWS_* variables)."""
    from multiview.data.remote import IOOptions

    storage: dict = {}
    for item in args.storage_option or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"--storage-option {item!r}: expected KEY=VALUE (VALUE as JSON, or a plain string)")
        try:
            storage[key] = json.loads(value)
        except json.JSONDecodeError:
            storage[key] = value
    if args.endpoint_url:
        storage.setdefault("client_kwargs", {})["endpoint_url"] = args.endpoint_url
    return IOOptions(timeout=args.timeout, retries=args.retries, backoff=args.backoff, storage_options=storage)


def _write(args: argparse.Namespace) -> int:
    from multiview.data.remote import RemoteError
    from multiview.data.sources import SourceError, folder_splits, table_splits
    from multiview.data.writer import WriteError, write_dataset

    modalities = {}
    for item in args.modality or []:
        field, eq, modality = item.partition("=")
        if not eq:
            print(f"error: --modality {item!r}: expected FIELD.EXT=MODALITY", file=sys.stderr)
            return 2
        modalities[field] = modality
    try:
        io_options = _io_options(args)
        if args.from_folder:
            splits = folder_splits(args.from_folder, args.split, args.split_dirs)
            source = {"from_folder": args.from_folder, "split_dirs": args.split_dirs}
        else:
            table = args.from_csv or args.from_jsonl
            splits = table_splits(table, args.split)
            source = {"from_table": table}
        # The splits actually written (a table's rows may name their own), and --split, as "default_split", only
        # where it can have named some of them (it names rows without a split; --split-dirs ignores it).
        used_default = args.split in splits and not (args.from_folder and args.split_dirs)
        written = {"splits": list(splits), **({"default_split": args.split} if used_default else {})}
        manifest = write_dataset(
            args.out,
            splits,
            builder=args.builder,
            builder_args={**source, **written, **({"pairing": args.pairing} if args.pairing else {})},
            maxcount=args.maxcount,
            maxsize=args.maxsize,
            modalities=modalities,
            io_options=io_options,
            pairing=args.pairing,
        )
    except (SourceError, WriteError, ValueError, RemoteError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for split, entry in manifest["splits"].items():
        print(f"{split}: {entry['count']} samples in {len(entry['shards'])} shard(s) -> {args.out}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from multiview.data.inspect import format_summary, preview, summarize

    try:
        options = _io_options(args)
        summary = summarize(args.source, args.split, options)
        print(json.dumps(summary, indent=2) if args.json else format_summary(summary, per_shard=not args.brief))
        if args.preview:
            path = preview(args.source, args.preview, split=args.split, n=args.n, options=options)
            print(f"preview: {path}", file=sys.stderr)
    except (ValueError, OSError) as err:  # ManifestError, SourceError, ShardError, RemoteError
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _verify(args: argparse.Namespace) -> int:
    from multiview.data.verify import verify

    report = verify(args.source, args.split, _io_options(args))
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for problem in report.problems:
        print(f"BAD {problem}")
    print(f"{report.samples} samples checked, {len(report.problems)} problem(s)")
    return 0 if report.ok else 1


def _index(args: argparse.Namespace) -> int:
    from multiview.data.index import index_source

    def progress(url: str, n: int) -> None:
        print(f"  {url}: {n} samples", file=sys.stderr)

    try:
        where, manifest = index_source(args.source, args.split or ["train"], args.out, _io_options(args), progress)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for split, entry in manifest["splits"].items():
        print(f"{split}: {entry['count']} samples in {len(entry['shards'])} shard(s); fields {entry['fields']}")
    print(f"wrote {where}")
    return 0


def _add_io_flags(parser: argparse.ArgumentParser, what: str) -> None:
    """Flags for opening URLs: S3-compatible endpoint, fsspec options, timeout, retries."""
    remote = parser.add_argument_group(f"{what} (s3://, any fsspec URL; credentials from AWS_* variables)")
    remote.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint, e.g. http://127.0.0.1:9000")
    remote.add_argument(
        "--storage-option", action="append", metavar="KEY=VALUE", help="fsspec option, VALUE as JSON (repeatable)"
    )
    remote.add_argument("--timeout", type=float, default=30.0, help="seconds per connect / read (default 30)")
    remote.add_argument("--retries", type=int, default=3, help="retries of a transient failure (default 3)")
    remote.add_argument("--backoff", type=float, default=0.5, help="first wait between retries, doubled (default 0.5 s)")


SOURCE_HELP = (
    "shard source: a folder (with or without manifest.json), a glob, a URL pattern such as "
    "'https://host/train-{000000..000127}.tar', a text file of URLs, s3://bucket/prefix/, or pipe:CMD"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``shards`` with ``write``, ``inspect``, ``verify`` and ``index`` to the ``multiview`` command."""
    shards = subparsers.add_parser("shards", help="write, inspect, verify and index WebDataset shards")
    sub = shards.add_subparsers(dest="shards_command", metavar="SUBCOMMAND", required=True)

    w = sub.add_parser(
        "write",
        help="write shards + manifest.json from a folder tree or a CSV/JSONL table",
        description="Each field is validated (decoded) while writing; a bad source fails with its file and reason.",
    )
    w.add_argument("out", help="output folder or fsspec URL, e.g. s3://bucket/prefix (shards + manifest.json)")
    source = w.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-folder", metavar="DIR", help="DIR/<sample>/<name>.<ext>: one sub-folder per sample")
    source.add_argument("--from-csv", metavar="FILE", help="CSV: columns <name>.<ext> (paths / values), key, split")
    source.add_argument("--from-jsonl", metavar="FILE", help="JSONL: one object per line, same columns as --from-csv")
    w.add_argument("--split", default="train", help="split name for samples without one (default: train)")
    w.add_argument("--split-dirs", action="store_true", help="--from-folder holds DIR/<split>/<sample>/...")
    w.add_argument("--maxcount", type=int, default=1000, help="samples per shard at most (default 1000)")
    w.add_argument("--maxsize", type=_size, default=256 << 20, help="bytes per shard at most, e.g. 256M (default)")
    w.add_argument("--builder", default="shards-write", help="builder name recorded in the manifest")
    w.add_argument("--modality", action="append", metavar="FIELD=MOD", help="override a field's modality")
    w.add_argument(
        "--pairing",
        choices=["instance", "class"],
        help="how the fields of a sample are paired, recorded as the manifest's extra.pairing: instance (all "
        "from one instance) or class (only the label in common, e.g. images and sounds matched within a class); "
        "eval retrieval reads it to report instance or class-level metrics (default: not recorded = instance)",
    )
    _add_io_flags(w, "writing to a URL")
    w.set_defaults(func=_write)

    i = sub.add_parser(
        "inspect",
        help="counts, fields, shapes, dtypes, sample rates of any shard source; --preview draws samples",
        description="Reads the manifest only; without one (shards we did not write), lists the shards and infers "
        "the fields from the first samples.",
    )
    i.add_argument("source", help=SOURCE_HELP)
    i.add_argument("--preview", metavar="OUT.png", help="draw a grid of the first samples to this PNG")
    i.add_argument("--split", help="split to show / preview (default: the manifest's first, or every shard)")
    i.add_argument("-n", type=int, default=6, help="samples in the preview (default 6)")
    i.add_argument("--json", action="store_true", help="print the summary as JSON")
    i.add_argument("--brief", action="store_true", help="omit per-shard counts")
    _add_io_flags(i, "reading URLs")
    i.set_defaults(func=_inspect)

    v = sub.add_parser("verify", help="decode every sample of any shard source; list every bad one; exit 1 if any")
    v.add_argument("source", help=SOURCE_HELP)
    v.add_argument("--split", action="append", help="only this split (repeatable; default: all)")
    _add_io_flags(v, "reading URLs")
    v.set_defaults(func=_verify)

    x = sub.add_parser(
        "index",
        help="count the samples of shards without a manifest and write one (exact epochs for foreign shards)",
        description="Streams every shard once. The manifest goes into the source folder / prefix, or --out; it "
        "lists shards by name beside them, by URL elsewhere.",
    )
    x.add_argument("source", help=SOURCE_HELP)
    x.add_argument("--split", action="append", help="split to index (repeatable; default: train)")
    x.add_argument("--out", metavar="DIR", help="where to write manifest.json (default: the source folder)")
    _add_io_flags(x, "reading URLs")
    x.set_defaults(func=_index)
