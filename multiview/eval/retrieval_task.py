"""Cross-view retrieval as an evaluation: embed two fields of the same samples (or every pair), rank by cosine
similarity, report instance metrics (R@k, median / mean rank; paired rows) and class metrics (mAP, P@k; labels) in
both directions, next to CCA on raw inputs; recall curves, hit grids and 2-D maps as PNGs."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from multiview.eval.base import EvalContext, Evaluation, OptionError, option_field, register_evaluation
from multiview.eval.baselines import CCARetrieval
from multiview.eval.groups import group_names
from multiview.eval.progress import PhaseTimer
from multiview.eval.report import build_report, mark_same_split, retrieval_group_rows, retrieval_rows
from multiview.eval.retrieval import class_metrics, hit_grades, instance_metrics, top_k
from multiview.eval.tasks import manifest_view_fields, resolve_paired, slug, write_report

GRID_HITS = 5
log = logging.getLogger(__name__)


@register_evaluation("retrieval")
class Retrieval(Evaluation):
    help = "cross-view retrieval: R@k, median/mean rank (paired rows), mAP and P@k (labels), both directions"
    description = (
        "Embed two fields of the same samples, rank by cosine similarity, report metrics both ways. "
        "R@k = at least one positive in the top k; ties are counted against the query."
    )

    @dataclass
    class Options:
        query: str | None = option_field(None, "query field (e.g. image)")
        gallery: str | None = option_field(None, "gallery field (e.g. audio)")
        all_pairs: bool = option_field(False, "every pair of --fields (default: all view fields)")
        fields: list[str] | None = option_field(None, "fields for --all-pairs")
        paired: Literal["auto", "yes", "no"] = option_field(
            "auto",
            "instance-level metrics (row i <-> row i). auto: yes, unless the manifest's extra.pairing says "
            "'class' (default: auto)",
        )
        ks: list[int] = option_field([1, 5, 10], "cut-offs k (default: 1 5 10)")
        chunk_size: int | None = option_field(
            None, "query rows per similarity block (default: sized to 4M scores per block)"
        )
        cca_components: int = option_field(10, "CCA components of the baseline (default: 10)")
        grid_queries: int = option_field(6, "queries shown in each retrieval grid (default: 6)")
        group_by: str | None = option_field(
            None,
            "also report class mAP per group of queries: a field of the samples or FIELD.KEY of a JSON field "
            "(e.g. meta.speed)",
        )
        group_edges: list[float] | None = option_field(
            None, "cut a numeric --group-by into ranges at these edges (e.g. 120 200 -> <120, 120-200, >=200)"
        )

    def check(self, options) -> None:
        for key in ("cca_components", "grid_queries"):
            if getattr(options, key) < 1:
                raise OptionError(key, f"expected a positive integer, got {getattr(options, key)}")
        if options.chunk_size is not None and options.chunk_size < 1:
            raise OptionError("chunk_size", f"expected a positive integer or null, got {options.chunk_size}")
        if options.group_edges is not None and options.group_by is None:
            raise OptionError("group_edges", "needs --group-by (the field whose values it cuts)")

    def run(self, ctx: EvalContext, options) -> dict:
        """Both directions for one pair of fields (or all pairs); the report is also written to
        ``<out>/retrieval.json`` and ``retrieval.md``."""
        methods = ctx.check_splits("the CCA baseline", learned_fits=False)  # before any embedding
        timer = PhaseTimer()
        bundle = ctx.encoders()
        fields = options.fields
        if options.all_pairs and not fields:
            fields = sorted(bundle.encoders) if bundle is not None else manifest_view_fields(ctx.manifest)
        pairs = retrieval_pairs(options.query, options.gallery, fields, options.all_pairs)
        used = list(dict.fromkeys(f for pair in pairs for f in pair))
        is_paired, why = resolve_paired(options.paired, ctx.manifest)
        groups = None
        if options.group_by is not None:  # a missing field fails here, before anything is embedded
            with timer.phase("groups"):
                groups = group_names(ctx.samples(ctx.split), options.group_by, options.group_edges)
        spaces, labels, maps = _spaces(ctx, options, pairs, used, timer)
        if not is_paired and labels is None:
            raise ValueError(f"rows are not instance-paired ({why}) and the samples have no {ctx.label_field!r} labels")
        n = next(iter(maps.values())).embeddings.shape[0]
        if groups is not None and len(groups) != n:
            raise ValueError(f"--group-by read {len(groups)} samples of split {ctx.split!r}, the embeddings {n}")
        if groups is not None and labels is None:
            raise ValueError(f"--group-by reports class mAP per group: the samples have no {ctx.label_field!r} labels")
        ks = _valid_ks(options.ks, n)
        with timer.phase("score"):
            results, curves = _score(spaces, labels, is_paired, ks, options.chunk_size, ctx, groups)
        out_dir = ctx.output("retrieval")
        figures = {}
        if ctx.plots:
            main = "learned" if methods.learned else "cca"  # the maps of the baseline show raw inputs, not CCA
            with timer.phase("plots"):
                figures = _retrieval_figures(out_dir, spaces[main], curves, maps, labels, is_paired, ctx, options,
                                             main)  # fmt: skip
        log.info("%s", timer.line("retrieval"))
        settings = {
            "pairs": [f"{a}<->{b}" for a, b in pairs],
            "paired": is_paired,
            "paired_reason": why,
            "label_field": ctx.label_field,
            "ks": list(ks),
            "train_split": ctx.train_split,
            "baseline": "cca" if methods.baseline else None,
            **({"fitted_on_scored_split": ["cca"]} if methods.baseline and ctx.same_split else {}),
            "pair_heads": [f"{a}<->{b}" for a, b in pairs if bundle is not None and bundle.has_pair_heads(a, b)],
            "cca_components": options.cca_components,
            "n_test": n,
            "similarity": "cosine",
            "ties": "against the query",
            **({"group_by": options.group_by, "group_edges": options.group_edges} if groups is not None else {}),
            **({"notes": list(ctx.notes)} if ctx.notes else {}),
        }
        rows = retrieval_rows(results) + retrieval_group_rows(results, options.group_by)
        if methods.baseline and ctx.same_split:
            mark_same_split(rows, ["cca"])  # the learned embeddings are not fitted here; the CCA is
        report = build_report("retrieval", results, rows=rows, checkpoint=ctx.checkpoint,
                              data=str(ctx.data), split=ctx.split, command=ctx.command, settings=settings,
                              figures=figures, recipe=bundle.recipe if bundle is not None else None,
                              seconds=timer.rounded())  # fmt: skip
        write_report(report, out_dir, "retrieval")
        return report


def _spaces(ctx: EvalContext, options, pairs, used, timer: PhaseTimer) -> tuple[dict, np.ndarray | None, dict]:
    """``({method: {pair: (query emb, gallery emb)}}, labels, {field: Embedded} for the maps)``.

    Every split is read once (:class:`~multiview.eval.cache.EvalCache`: the learned fields embedded and the raw
    inputs collected in the same pass, shared with later evaluations of the same context's cache); CCA is fitted
    once per pair."""
    spaces: dict[str, dict] = {}
    labels, maps = None, {}
    split, train_split = ctx.split, ctx.train_split
    learned, baseline = ctx.methods.learned, ctx.methods.baseline
    with timer.phase("embed"):
        for s in dict.fromkeys([split, train_split] if baseline else [split]):
            ctx.cache.read(ctx, s, learned=used if learned and s == split else (), raw=used if baseline else ())
    if learned:
        bundle = ctx.bundle
        with timer.phase("embed"):
            emb = ctx.cache.learned(ctx, split, used)
            labels = emb[used[0]].labels
            # Pair heads (CMC pair_heads) put the two fields in the space trained for that pair; else encoder outputs.
            spaces["learned"] = {(a, b): bundle.project_pair(a, b, emb[a].embeddings, emb[b].embeddings)
                                 for a, b in pairs}  # fmt: skip
        maps = {f: emb[f] for f in used}
    if baseline:
        with timer.phase("embed"):
            raw = ctx.cache.raw(ctx, used, train_split, [train_split, split])
        labels = raw[split][used[0]].labels if labels is None else labels
        spaces["cca"] = {}
        with timer.phase("fit"), ctx.progress_bar(pairs, desc="fit CCA", unit="pair") as bar:
            for a, b in bar:
                cca = CCARetrieval(n_components=options.cca_components)
                cca.fit(raw[train_split][a].embeddings, raw[train_split][b].embeddings)
                spaces["cca"][(a, b)] = cca.transform(raw[split][a].embeddings, raw[split][b].embeddings)
        if not ctx.methods.learned:
            maps = {f: raw[split][f] for f in used}
    return spaces, labels, maps


def _score(spaces: dict, labels, is_paired: bool, ks, chunk_size, ctx: EvalContext, groups=None):
    """Metrics of every method, pair and direction (class mAP per query group too, with ``groups``), and the
    ranks behind each recall curve: ``(results, curves)``."""
    results: dict = {}
    curves: dict[tuple, dict[str, np.ndarray]] = {}
    total = sum(2 * len(by_pair) for by_pair in spaces.values())
    with ctx.progress_bar(total=total, desc="score", unit="direction") as bar:
        for method, by_pair in spaces.items():
            results[method] = {}
            for (a, b), (qa, gb) in by_pair.items():
                pair_res = {}
                for src, dst, x, y in ((a, b, qa, gb), (b, a, gb, qa)):
                    pair_res[f"{src}->{dst}"], ranks = _direction_metrics(x, y, labels, is_paired, ks, chunk_size,
                                                                          groups)  # fmt: skip
                    curves.setdefault((a, b), {})[f"{src}->{dst} ({method})"] = ranks
                    bar.update(1)
                results[method][f"{a}<->{b}"] = pair_res
    return results, curves


def retrieval_pairs(query, gallery, fields, all_pairs: bool) -> list[tuple[str, str]]:
    if all_pairs:
        if not fields or len(fields) < 2:
            raise ValueError(f"--all-pairs needs at least two fields, got {fields}")
        return list(itertools.combinations(fields, 2))
    if not query or not gallery:
        raise ValueError(f"give --query and --gallery (or --all-pairs), got query={query!r} gallery={gallery!r}")
    if query == gallery:
        raise ValueError(f"query and gallery are the same field {query!r}; expected two different fields")
    return [(query, gallery)]


def _direction_metrics(
    q: torch.Tensor, g: torch.Tensor, labels, paired: bool, ks, chunk_size, groups=None
) -> tuple[dict, np.ndarray]:
    """Both levels for one direction, and the ranks for its recall curve."""
    block: dict = {}
    ranks = None
    if paired:
        block["instance"] = instance_metrics(q, g, ks, chunk_size, return_ranks=True)
        ranks = block["instance"].pop("ranks")
    if labels is not None:
        block["class"] = class_metrics(q, g, labels, labels, ks, chunk_size, return_ranks=True, query_groups=groups)
        class_ranks = block["class"].pop("ranks")
        ranks = class_ranks if ranks is None else ranks
    return block, ranks


def _valid_ks(ks: Sequence[int], n: int) -> tuple[int, ...]:
    kept = tuple(k for k in ks if 1 <= k <= n)
    if not kept:
        raise ValueError(f"no k in {list(ks)} fits a gallery of {n} items")
    return kept


def _grid_rows(n: int, count: int) -> np.ndarray:
    """``count`` evenly spread row indices (deterministic, so reruns show the same queries)."""
    return np.unique(np.linspace(0, n - 1, num=min(count, n)).round().astype(int))


def _retrieval_figures(out_dir, space, curves, maps, labels, paired, ctx, options, method) -> dict[str, str]:
    from multiview.eval.plots import plot_embedding_map, plot_recall_curves, plot_retrieval_grid

    figures: dict[str, str] = {}
    n = next(iter(maps.values())).embeddings.shape[0]
    with ctx.progress_bar(total=len(curves) + 2 * len(space) + len(maps), desc="plots", unit="figure") as bar:
        for (a, b), named in curves.items():
            name = f"recall_{slug(a)}-{slug(b)}.png"
            plot_recall_curves(named, out_dir / name, max_k=min(50, n), title=f"recall@k, {a} <-> {b}")
            figures[f"recall@k {a}<->{b}"] = name
            bar.update(1)
        grids = []  # (title, file, query rows, hit rows [Q, k], query field, gallery field)
        k = min(GRID_HITS, n)
        rows = _grid_rows(n, options.grid_queries)
        for (a, b), (qa, gb) in space.items():
            for src, dst, x, y in ((a, b, qa, gb), (b, a, gb, qa)):
                hits = top_k(x[rows], y, k).numpy()
                grids.append((f"{src} -> {dst} ({method})", f"grid_{slug(src)}-{slug(dst)}.png", rows, hits, src, dst))
        wanted = {int(i) for _, _, r, h, _, _ in grids for i in (*r, *h.reshape(-1))}
        values = _pick_samples(ctx.samples(ctx.split), wanted)
        keys = next(iter(maps.values())).keys
        for title, name, rows_, hits, src, dst in grids:
            correct = hit_grades(rows_, hits, labels, paired)
            queries = [_thumb(values[i], src) for i in rows_]
            hit_vals = [[_thumb(values[j], dst) for j in row] for row in hits]
            captions = [f"{keys[i]}" + ("" if labels is None else f" y={labels[i]}") for i in rows_]
            legend = (
                "green: the paired item, amber: same class, red: other" if paired else "green: same class, red: other"
            )
            plot_retrieval_grid(
                queries, hit_vals, correct, out_dir / name, title=f"{title}\n{legend}", query_titles=captions
            )
            figures[f"top-{k} hits {title}"] = name
            bar.update(1)
        for f, emb in maps.items():
            name = f"map_{slug(f)}.png"
            kind = "learned" if method == "learned" else "raw inputs"
            plot_embedding_map(emb.embeddings, emb.labels, out_dir / name, method=ctx.map_method, title=f"{f} ({kind})")
            figures[f"{ctx.map_method} map {f}"] = name
            bar.update(1)
    return figures


def _pick_samples(samples: Iterable[dict], wanted: set[int]) -> dict[int, dict]:
    """The samples at the given row indices (one ordered pass, stops after the last one)."""
    picked, last = {}, max(wanted) if wanted else -1
    for i, sample in enumerate(samples):
        if i in wanted:
            picked[i] = sample
        if i >= last:
            break
    return picked


def _thumb(sample: dict, field: str) -> tuple:
    return sample[field], sample.get(f"{field}.sample_rate")
