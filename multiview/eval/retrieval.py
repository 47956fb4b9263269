"""Cross-view retrieval metrics: instance-level R@k / ranks and class-level mAP / P@k, memory-bounded.

Definitions (as in CLIP_benchmark where it defines them):

- A gallery item is a *positive* for a query when their ids are equal. Instance-level: the ids are the row
  indices (row i of the query side is paired with row i of the gallery side). Class-level: the ids are labels.
- ``R@k`` (recall at k): the fraction of queries with **at least one** positive among their top k hits.
- ``rank``: the 1-based position of the first positive; ``median_rank`` / ``mean_rank`` summarise it.
- ``P@k`` (precision at k): the fraction of the top k hits that are positives, averaged over queries.
- ``AP``: the mean, over the positives of a query, of the precision at each positive's position in the ranked
  gallery; ``mAP`` averages AP over queries.

Ties are broken **against the query**: among gallery items with equal scores, negatives rank ahead of
positives. So a collapsed encoder (every score equal) gets rank N, not rank 1, and the numbers never flatter a
model because of the order of the gallery. Queries with **no positive** in the gallery are left out of every
average and counted in ``n_no_positive``.

Scores are computed in float64 and rounded to float32, so each score (and so each tie) is the same whatever the
block size.

Memory: similarities are computed for ``chunk_size`` queries at a time (``[chunk_size, N_gallery]``), never as an
``[N_query, N_gallery]`` matrix unless ``chunk_size >= N_query``. With ``chunk_size=None`` a block holds at most
``max_block_elements`` scores (4 M). Measured here (N = 8,000, D = 128, glibc's MALLOC_MMAP_THRESHOLD_ fixed):
class metrics peaked at 1.9 GB extra RSS dense and 87 MB with 256-row blocks. Without a fixed threshold, glibc's
arenas may keep freed blocks and RSS can grow past the working set (MALLOC_ARENA_MAX=1 also avoids it).

Examples:
    >>> import torch
    >>> q = torch.eye(3)
    >>> m = instance_metrics(q, q, ks=(1,))
    >>> m["R@1"], m["median_rank"]
    (1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

# 4 M scores per query block. The class path holds about 8 bytes x 4 arrays per score at once (float64 scores,
# int64 sort indices, ...): measured peak 87 MB at 256 x 8,000 and 1.9 GB for a dense 8,000 x 8,000.
DEFAULT_MAX_BLOCK_ELEMENTS = 1 << 22


def _check_embeddings(name: str, x: torch.Tensor) -> torch.Tensor:
    """Validate one side ``[N, D]`` and return it L2-normalised in float32 (cosine similarity = dot product)."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.ndim != 2:
        raise ValueError(f"{name} embeddings must be 2-D [N, D], got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} embeddings are empty (shape {tuple(x.shape)}); expected at least one row")
    x = x.detach().float()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} embeddings contain NaN or inf; expected finite values")
    return F.normalize(x, dim=1)


def _check_ks(ks: Sequence[int], n_gallery: int) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    bad = [k for k in ks if k < 1 or k > n_gallery]
    if bad:
        raise ValueError(f"ks must lie in [1, {n_gallery}] (the gallery size), got {bad}")
    return ks


def resolve_chunk_size(
    n_query: int, n_gallery: int, chunk_size: int | None, max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS
) -> int:
    """Rows per block: ``chunk_size`` if given, else as many as fit in ``max_block_elements`` scores."""
    if chunk_size is None:
        chunk_size = max(1, max_block_elements // max(1, n_gallery))
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return min(int(chunk_size), n_query)


def iter_score_blocks(
    query: torch.Tensor, gallery: torch.Tensor, chunk_size: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, scores [c, N_gallery])`` for consecutive blocks of normalised query rows."""
    # BLAS sums in an order that depends on the block's shape, so float32 scores of one pair could differ in the
    # last bit between block sizes and break ties differently; float64 products rounded to float32 do not.
    gallery64 = gallery.double()
    for start in range(0, query.shape[0], chunk_size):
        yield start, (query[start : start + chunk_size].double() @ gallery64.T).float()


def ranked_positive_mask(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Sort each row best-first, ties against the query; return where the positives land.

    Args:
        scores: ``[c, N]`` similarities.
        positive: ``[c, N]`` bool, True where the gallery item is a positive for the row's query.

    Returns:
        ``[c, N]`` bool: ``out[i, r]`` is True when the item at rank ``r + 1`` of query i is a positive.
    """
    # Two stable sorts make a lexicographic key: first negatives before positives, then by score descending;
    # the second sort keeps the first order among equal scores, so ties put negatives first.
    by_label = torch.sort(positive.to(torch.int8), dim=1, stable=True).indices
    by_score = torch.sort(scores.gather(1, by_label), dim=1, descending=True, stable=True).indices
    return positive.gather(1, by_label.gather(1, by_score))


def ranking_stats(scores: torch.Tensor, positive: torch.Tensor, ks: Sequence[int]) -> dict[str, torch.Tensor]:
    """Per-query ranking statistics for one block.

    Args:
        scores: ``[c, N]`` similarities; positive: ``[c, N]`` bool.
        ks: cut-offs for precision at k.

    Returns:
        ``{"n_pos": [c], "first_rank": [c] (0 when no positive), "ap": [c], "P@k": [c] ...}``; AP and P@k are 0
        for rows without positives (callers drop those rows).
    """
    hits = ranked_positive_mask(scores, positive)
    n_pos = hits.sum(1)
    cum_hits = hits.cumsum(1).double()  # float64 so that P@k of small galleries prints as the exact fraction
    positions = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64)
    precision_at_hit = torch.where(hits, cum_hits / positions, torch.zeros((), dtype=torch.float64))
    ap = precision_at_hit.sum(1) / n_pos.clamp(min=1)
    first_rank = torch.where(n_pos > 0, hits.float().argmax(1) + 1, torch.zeros((), dtype=torch.long))
    out = {"n_pos": n_pos, "first_rank": first_rank, "ap": ap}
    for k in ks:
        out[f"P@{k}"] = cum_hits[:, k - 1] / k
    return out


def first_positive_rank_paired(scores: torch.Tensor, start: int) -> torch.Tensor:
    """Rank of the paired item for rows ``start .. start + c`` of a paired block, ties against the query.

    Args:
        scores: ``[c, N]`` similarities of queries ``start + i`` to the whole gallery.

    Returns:
        ``[c]`` long: ``1 + #{j != start + i : scores[i, j] >= scores[i, start + i]}``.
    """
    rows = torch.arange(scores.shape[0])
    own = scores[rows, start + rows]
    return (scores >= own[:, None]).sum(1)  # counts the paired item itself once, hence 1-based


def summarise_ranks(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """``R@k``, median and mean rank from 1-based first-positive ranks ``[Q]``."""
    out = {f"R@{k}": float(np.mean(ranks <= k)) for k in ks}
    out["median_rank"] = float(np.median(ranks))
    out["mean_rank"] = float(np.mean(ranks))
    return out


def instance_metrics(
    query: torch.Tensor,
    gallery: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int | None = None,
    return_ranks: bool = False,
) -> dict:
    """Instance-level retrieval where row i of ``query`` is paired with row i of ``gallery``.

    Args:
        query: ``[N, D]`` embeddings; gallery: ``[N, D]`` embeddings of the other view of the same rows.
        ks: recall cut-offs. chunk_size: query rows per block (None: sized by memory).
        return_ranks: also return ``"ranks"``, the ``[N]`` numpy array of 1-based ranks (for recall curves).

    Returns:
        ``{"R@1": .., "R@5": .., "R@10": .., "median_rank": .., "mean_rank": .., "n_queries": N}``.
    """
    q, g = _check_embeddings("query", query), _check_embeddings("gallery", gallery)
    if q.shape[0] != g.shape[0]:
        raise ValueError(f"paired rows need equal counts, got {q.shape[0]} queries and {g.shape[0]} gallery items")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query dim {q.shape[1]} != gallery dim {g.shape[1]}; project both to one space first")
    ks = _check_ks(ks, g.shape[0])
    chunk = resolve_chunk_size(q.shape[0], g.shape[0], chunk_size)
    with torch.no_grad():
        ranks = torch.cat([first_positive_rank_paired(s, start) for start, s in iter_score_blocks(q, g, chunk)])
    ranks_np = ranks.numpy()
    out: dict = {**summarise_ranks(ranks_np, ks), "n_queries": int(q.shape[0])}
    if return_ranks:
        out["ranks"] = ranks_np
    return out


def class_metrics(
    query: torch.Tensor,
    gallery: torch.Tensor,
    query_labels: Sequence[int] | torch.Tensor,
    gallery_labels: Sequence[int] | torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int | None = None,
    return_ranks: bool = False,
    query_groups: Sequence[Any] | None = None,
) -> dict:
    """Class-level retrieval: a gallery item is a positive when it shares the query's label.

    Args:
        query: ``[Nq, D]``; gallery: ``[Ng, D]``; query_labels: ``[Nq]``; gallery_labels: ``[Ng]`` ints.
        ks: cut-offs for P@k and class-level R@k. chunk_size: query rows per block (None: sized by memory).
        return_ranks: also return ``"ranks"``: ``[Q]`` numpy 1-based rank of the first positive (queries with a
            positive only).
        query_groups: ``[Nq]`` a group name per query (e.g. the speaking rate of its clip): also return
            ``"groups"``, ``{name: {"mAP", "n_queries"}}`` over the queries of each group (the whole gallery
            stays the gallery).

    Returns:
        ``{"mAP", "P@k".., "R@k".. (first same-class hit within k), "n_queries", "n_no_positive"}`` [+ groups].
    """
    q, g = _check_embeddings("query", query), _check_embeddings("gallery", gallery)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query dim {q.shape[1]} != gallery dim {g.shape[1]}; project both to one space first")
    ql = torch.as_tensor(np.asarray(query_labels)).long().reshape(-1)
    gl = torch.as_tensor(np.asarray(gallery_labels)).long().reshape(-1)
    if ql.shape[0] != q.shape[0] or gl.shape[0] != g.shape[0]:
        raise ValueError(
            f"labels must match rows: query {q.shape[0]} rows / {ql.shape[0]} labels, "
            f"gallery {g.shape[0]} rows / {gl.shape[0]} labels"
        )
    ks = _check_ks(ks, g.shape[0])
    chunk = resolve_chunk_size(q.shape[0], g.shape[0], chunk_size)
    parts: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for start, scores in iter_score_blocks(q, g, chunk):
            positive = ql[start : start + scores.shape[0], None] == gl[None, :]
            for name, value in ranking_stats(scores, positive, ks).items():
                parts.setdefault(name, []).append(value)
    stats = {name: torch.cat(values).numpy() for name, values in parts.items()}
    keep = stats["n_pos"] > 0
    out: dict = {"n_queries": int(keep.sum()), "n_no_positive": int((~keep).sum())}
    if not keep.any():
        raise ValueError("no query has a positive in the gallery (no shared labels); class metrics are undefined")
    out["mAP"] = float(stats["ap"][keep].mean())
    for k in ks:
        out[f"P@{k}"] = float(stats[f"P@{k}"][keep].mean())
    for k in ks:
        out[f"R@{k}"] = float(np.mean(stats["first_rank"][keep] <= k))
    if return_ranks:
        out["ranks"] = stats["first_rank"][keep]
    if query_groups is not None:
        out["groups"] = _group_map(stats["ap"], keep, query_groups)
    return out


def _group_map(ap: np.ndarray, keep: np.ndarray, query_groups: Sequence[Any]) -> dict[str, dict]:
    """``{group: {"mAP", "n_queries"}}``: the mean AP of each group's queries that have a positive."""
    names = np.asarray([str(g) for g in query_groups], dtype=object)
    if names.shape[0] != ap.shape[0]:
        raise ValueError(f"query_groups has {names.shape[0]} entries for {ap.shape[0]} queries; expected one each")
    out = {}
    for name in sorted(set(names[keep].tolist())):
        rows = keep & (names == name)
        out[name] = {"mAP": float(ap[rows].mean()), "n_queries": int(rows.sum())}
    return out


def top_k(query: torch.Tensor, gallery: torch.Tensor, k: int = 5, chunk_size: int | None = None) -> torch.Tensor:
    """Indices ``[Nq, k]`` of each query's k most similar gallery items (cosine), best first, blockwise."""
    q, g = _check_embeddings("query", query), _check_embeddings("gallery", gallery)
    k = _check_ks((k,), g.shape[0])[0]
    chunk = resolve_chunk_size(q.shape[0], g.shape[0], chunk_size)
    with torch.no_grad():
        return torch.cat([s.topk(k, dim=1).indices for _, s in iter_score_blocks(q, g, chunk)])


def retrieval_report(
    query: torch.Tensor,
    gallery: torch.Tensor,
    *,
    labels: Sequence[int] | torch.Tensor | None = None,
    gallery_labels: Sequence[int] | torch.Tensor | None = None,
    paired: bool = True,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int | None = None,
    names: tuple[str, str] = ("query", "gallery"),
    return_ranks: bool = False,
) -> dict[str, dict]:
    """Metrics in BOTH directions: ``{"A->B": {"instance": {...}, "class": {...}}, "B->A": {...}}``.

    Args:
        query: ``[N, D]``; gallery: ``[M, D]`` (M == N when ``paired``).
        labels: ``[N]`` labels of the query rows (and of the gallery rows unless ``gallery_labels`` is given);
            None skips class-level metrics.
        paired: report instance-level metrics (row i <-> row i).
        names: the two sides' names, used in the direction keys.
    """
    if not paired and labels is None:
        raise ValueError("nothing to measure: paired=False and no labels given; pass labels or paired=True")
    a, b = names
    glabels = labels if gallery_labels is None else gallery_labels
    out: dict[str, dict] = {}
    for (src, dst), (x, y), (lx, ly) in (
        ((a, b), (query, gallery), (labels, glabels)),
        ((b, a), (gallery, query), (glabels, labels)),
    ):
        block: dict[str, dict] = {}
        if paired:
            block["instance"] = instance_metrics(x, y, ks, chunk_size, return_ranks=return_ranks)
        if lx is not None:
            block["class"] = class_metrics(x, y, lx, ly, ks, chunk_size, return_ranks=return_ranks)
        out[f"{src}->{dst}"] = block
    return out


def hit_grades(rows: np.ndarray, hits: np.ndarray, labels: np.ndarray | None, paired: bool) -> np.ndarray:
    """``[Q, k]`` grades of the hits of query rows: 2 the paired item (paired) or any same-label item (unpaired),
    1 a same-label item that is not the paired one (paired, with labels), 0 wrong."""
    same_class = labels[hits] == labels[rows][:, None] if labels is not None else np.zeros(hits.shape, dtype=bool)
    if not paired:
        return same_class.astype(np.int64) * 2
    same_item = hits == rows[:, None]
    return np.where(same_item, 2, np.where(same_class, 1, 0))
