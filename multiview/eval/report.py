"""Reports of an evaluation: one JSON with every metric and its provenance, and a Markdown page with the PNGs.

The JSON (schema ``multiview.eval/1``) has, besides nested ``results``, a flat ``rows`` list, one row per number:
``{"task", "method", "subject", "level", "metric", "value"}``, e.g. ``("retrieval", "learned", "pix->fac",
"instance", "R@1", 0.95)`` or ``("linear", "raw", "fused", "test", "top1", 0.98)``. :func:`markdown_table`
pivots the rows of several JSON files into one table (methods as columns), for the README.

A row whose method was fitted on the split it is scored on (``--allow-same-split``) carries
``"fitted_on_scored_split": true``; tables show its value with a ``*`` and a footnote.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

SCHEMA = "multiview.eval/1"
LEARNED = "learned"
SAME_SPLIT_FLAG = "fitted_on_scored_split"
SAME_SPLIT_FOOTNOTE = "Values marked * were fitted on the split they are scored on (--allow-same-split): optimistic."


def retrieval_rows(results: dict) -> list[dict]:
    """Rows of ``{method: {pair: {direction: {level: {metric: value}}}}}`` (pair is ``"a<->b"``)."""
    rows = []
    for method, pairs in results.items():
        for directions in pairs.values():
            for direction, levels in directions.items():
                for level, metrics in levels.items():
                    for metric, value in metrics.items():
                        if isinstance(value, (int, float)) and not metric.startswith("n_"):
                            rows.append(_row("retrieval", method, direction, level, metric, value))
    return rows


def retrieval_group_rows(results: dict, group_by: str | None) -> list[dict]:
    """Rows of the per-group class mAPs in ``results`` (``class_metrics(..., query_groups=...)``'s ``groups``):
    level ``class [<group_by> <group>]``."""
    rows = []
    for method, pairs in results.items():
        for directions in pairs.values():
            for direction, levels in directions.items():
                for name, group in levels.get("class", {}).get("groups", {}).items():
                    rows.append(_row("retrieval", method, direction, f"class [{group_by} {name}]", "mAP", group["mAP"]))
    return rows


def probe_rows(task: str, results: dict) -> list[dict]:
    """Rows of ``{method: {field_or_fused: {"top1": .., ...}}}``."""
    return [
        _row(task, method, subject, "test", "top1", res["top1"])
        for method, subjects in results.items()
        for subject, res in subjects.items()
    ]


def mark_same_split(rows: list[dict], methods: Iterable[str]) -> list[dict]:
    """Flag the rows of ``methods`` (fitted on the split they are scored on); returns ``rows``."""
    methods = set(methods)
    for row in rows:
        if row["method"] in methods:
            row[SAME_SPLIT_FLAG] = True
    return rows


def _row(task: str, method: str, subject: str, level: str, metric: str, value: float) -> dict:
    return {"task": task, "method": method, "subject": subject, "level": level, "metric": metric, "value": float(value)}


def build_report(
    task: str,
    results: dict,
    *,
    checkpoint: str | None,
    data: str,
    split: str,
    command: Sequence[str] | str,
    settings: dict | None = None,
    figures: dict[str, str] | None = None,
    recipe: dict | None = None,
    rows: list[dict] | None = None,
    seconds: dict[str, float] | None = None,
) -> dict:
    """The JSON-ready report: provenance, settings, nested ``results``, flat ``rows`` (given by the evaluation, or
    read from ``results`` by :func:`retrieval_rows` / :func:`probe_rows`), figure paths and the wall-clock
    ``seconds`` of each phase (embed, fit, score, plots; :class:`multiview.eval.progress.PhaseTimer`)."""
    from multiview.core.evaluations import EVALUATIONS
    from multiview.core.version import __version__

    if task not in EVALUATIONS:
        raise ValueError(f"task must be a registered evaluation {EVALUATIONS.names()}, got {task!r}")
    if rows is None:  # the built-in shapes of results: retrieval's {method: {pair: {direction: ...}}}, else probes'
        rows = retrieval_rows(results) if task == "retrieval" else probe_rows(task, results)
    return {
        "schema": SCHEMA,
        "task": task,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "data": str(data),
        "split": split,
        "command": command if isinstance(command, str) else " ".join(command),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "multiview_version": __version__,
        "settings": settings or {},
        "results": results,
        "rows": rows,
        "figures": figures or {},
        "recipe": recipe or {},
        **({"seconds": dict(seconds)} if seconds else {}),
    }


def write_json(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False, default=_jsonable) + "\n")
    return path


def _jsonable(value):
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_report(path: str | Path) -> dict:
    """Read a report JSON, checking its schema."""
    report = json.loads(Path(path).read_text())
    if report.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {report.get('schema')!r}, expected {SCHEMA!r}")
    return report


def pivot(rows: Iterable[dict], extra_keys: Sequence[str] = ()) -> tuple[list[str], list[tuple], dict]:
    """Methods (learned first), row keys in first-seen order, and ``{(key, method): value}``."""
    methods: list[str] = []
    keys: list[tuple] = []
    values: dict = {}
    for r in rows:
        key = _row_key(r, extra_keys)
        if key not in values and key not in keys:
            keys.append(key)
        if r["method"] not in methods:
            methods.append(r["method"])
        values[(key, r["method"])] = r["value"]
    methods = sorted(methods, key=lambda m: m != LEARNED)  # stable: baselines keep their first-seen order
    return methods, keys, values


def _row_key(row: dict, extra_keys: Sequence[str]) -> tuple:
    return tuple(row.get(k, "") for k in extra_keys) + (row["task"], row["subject"], row["level"], row["metric"])


def markdown_table(rows: Iterable[dict], extra_keys: Sequence[str] = ()) -> str:
    """A Markdown table: one line per (task, subject, level, metric), one column per method, plus
    ``learned - <baseline>`` columns when the learned method is present. Values fitted on the split they are
    scored on are marked ``*``, with a footnote under the table."""
    rows = list(rows)
    methods, keys, values = pivot(rows, extra_keys)
    flagged = {(_row_key(r, extra_keys), r["method"]) for r in rows if r.get(SAME_SPLIT_FLAG)}
    baselines = [m for m in methods if m != LEARNED] if LEARNED in methods else []
    head = [*extra_keys, "task", "subject", "level", "metric", *methods, *(f"{LEARNED} - {b}" for b in baselines)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in keys:
        mark = {m: "*" if (key, m) in flagged else "" for m in methods}
        cells = [_fmt(values.get((key, m))) + mark[m] for m in methods]
        for b in baselines:
            a, c = values.get((key, LEARNED)), values.get((key, b))
            delta = None if a is None or c is None else a - c
            cells.append(_fmt(delta, signed=True) + ("*" if delta is not None and (mark[LEARNED] or mark[b]) else ""))
        lines.append("| " + " | ".join([*map(str, key), *cells]) + " |")
    if flagged:
        lines += ["", SAME_SPLIT_FOOTNOTE]
    return "\n".join(lines)


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:+.1f}" if signed else f"{value:.1f}"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def tabulate_reports(paths: Sequence[str | Path]) -> str:
    """One Markdown table over several report JSONs (a ``data`` column tells them apart)."""
    rows = []
    for p in paths:
        report = load_report(p)
        rows += [{**r, "data": Path(report["data"]).name} for r in report["rows"]]
    return markdown_table(rows, extra_keys=("data",))


def write_markdown(report: dict, path: str | Path) -> Path:
    """A short page: provenance, the metric table, and the figures (paths relative to the page)."""
    path = Path(path)
    lines = [
        f"# multiview eval {report['task']}",
        "",
        f"- checkpoint: `{report['checkpoint'] or 'none (raw-input baseline only)'}`",
        f"- data: `{report['data']}`, split `{report['split']}`",
        f"- command: `{report['command']}`",
        f"- created: {report['created']} (multiview {report['multiview_version']})",
    ]
    if report.get("seconds"):
        phases = ", ".join(f"{name} {s:.1f} s" for name, s in report["seconds"].items())
        lines.append(f"- time: {sum(report['seconds'].values()):.1f} s ({phases})")
    settings = dict(report["settings"])
    notes = settings.pop("notes", [])
    lines += [f"- {k}: `{v}`" for k, v in settings.items()]
    lines += [f"- **note**: {note}" for note in notes]
    lines += ["", "## Metrics", "", markdown_table(report["rows"]), ""]
    if report["task"] == "retrieval":
        lines += [
            "R@k: share of queries with a positive in the top k; ranks are 1-based, ties counted against the "
            "query; instance level pairs row i with row i, class level counts every same-label item.",
            "",
        ]
    if report["figures"]:
        lines += ["## Figures", ""]
        for name, fig in report["figures"].items():
            rel = os.path.relpath(Path(fig), path.parent) if Path(fig).is_absolute() else fig
            lines += [f"### {name}", "", f"![{name}]({rel})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
