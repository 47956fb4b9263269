"""Retrieval metrics: hand-computed cases (ties, several positives, no positive), chunked == dense == reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multiview.eval import retrieval
from multiview.eval.retrieval import (
    class_metrics,
    instance_metrics,
    ranking_stats,
    resolve_chunk_size,
    retrieval_report,
    top_k,
)


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


# ------------------------------------------------------------------------------------- hand-computed cases


def test_instance_ties_count_against_the_query():
    # q0 ties its partner g0 with g1 -> rank 2; q1's partner g1 scores 0, as do g0, -> all three >= 0 -> rank 3;
    # q2's partner g2 scores 0, below g0 and g1 -> rank 3.
    q = t([[1, 0], [0, 1], [1, 0]])
    g = t([[1, 0], [1, 0], [0, 1]])
    m = instance_metrics(q, g, ks=(1, 2, 3), return_ranks=True)
    assert m["ranks"].tolist() == [2, 3, 3]
    assert m["R@1"] == 0.0
    assert m["R@2"] == pytest.approx(1 / 3)
    assert m["R@3"] == 1.0
    assert m["median_rank"] == 3.0
    assert m["mean_rank"] == pytest.approx(8 / 3)


def test_collapsed_embeddings_rank_last_not_first():
    q = torch.ones(5, 3)
    m = instance_metrics(q, q.clone(), ks=(1, 5))
    assert m["R@1"] == 0.0 and m["median_rank"] == 5.0


def test_perfect_instance_retrieval():
    q = torch.eye(4)
    m = instance_metrics(q, q * 3.0, ks=(1,))  # cosine: scale does not matter
    assert m["R@1"] == 1.0 and m["mean_rank"] == 1.0


def test_class_several_positives_and_a_query_without_positive():
    # q0 (label 0) sees g0 (label 1, score 1), g1 (label 0, 0.6), g2 (label 0, 0), g3 (label 2, -1).
    # Ranked: neg, pos, pos, neg -> AP = (1/2 + 2/3) / 2; P@1 = 0, P@2 = 1/2, P@3 = 2/3; first hit at rank 2.
    # q1 has label 5, absent from the gallery: left out and counted.
    q = t([[1, 0], [0, 1]])
    g = t([[1, 0], [0.6, 0.8], [0, 1], [-1, 0]])
    m = class_metrics(q, g, [0, 5], [1, 0, 0, 2], ks=(1, 2, 3), return_ranks=True)
    assert m["n_queries"] == 1 and m["n_no_positive"] == 1
    assert m["mAP"] == pytest.approx(7 / 12)
    assert (m["P@1"], m["P@2"], m["P@3"]) == pytest.approx((0.0, 1 / 2, 2 / 3))
    assert (m["R@1"], m["R@2"]) == (0.0, 1.0)
    assert m["ranks"].tolist() == [2]


def test_class_ties_put_negatives_first():
    # Scores [0.5, 0.5, 0.5, 0.1] with positives at 0 and 2: negatives first within the tie -> [neg, pos, pos, neg].
    stats = ranking_stats(t([[0.5, 0.5, 0.5, 0.1]]), torch.tensor([[True, False, True, False]]), ks=(1, 2))
    assert stats["first_rank"].tolist() == [2]
    assert stats["ap"].item() == pytest.approx(7 / 12)
    assert stats["P@1"].item() == 0.0 and stats["P@2"].item() == 0.5


def test_all_queries_without_positive_raise():
    with pytest.raises(ValueError, match="no query has a positive"):
        class_metrics(torch.eye(2), torch.eye(2), [0, 1], [2, 3], ks=(1,))


def test_report_has_both_directions_and_levels():
    q, g = torch.eye(3), torch.eye(3)
    rep = retrieval_report(q, g, labels=[0, 0, 1], names=("img", "aud"), ks=(1,))
    assert set(rep) == {"img->aud", "aud->img"}
    assert set(rep["aud->img"]) == {"instance", "class"}
    assert rep["img->aud"]["instance"]["R@1"] == 1.0
    # class level, query 0 (label 0): its own row first (score 1), then rows 1 (label 0) and 2 (label 1) tie at 0
    # and the negative goes first -> hits [T, F, T], AP = (1 + 2/3) / 2; query 1 likewise; query 2 AP = 1.
    assert rep["img->aud"]["class"]["mAP"] == pytest.approx(((1 + 2 / 3) / 2 * 2 + 1) / 3)


@pytest.mark.parametrize(
    ("q", "g", "kwargs", "match"),
    [
        (torch.zeros(3), torch.zeros(3, 2), {}, "2-D"),
        (torch.zeros(3, 2), torch.zeros(4, 2), {}, "equal counts"),
        (torch.zeros(3, 2), torch.zeros(3, 5), {}, "dim"),
        (torch.full((3, 2), float("nan")), torch.zeros(3, 2), {}, "NaN"),
        (torch.eye(3), torch.eye(3), {"ks": (4,)}, r"ks must lie in \[1, 3\]"),
        (torch.eye(3), torch.eye(3), {"ks": (1,), "chunk_size": 0}, "chunk_size"),
    ],
)
def test_bad_input_names_the_value(q, g, kwargs, match):
    with pytest.raises(ValueError, match=match):
        instance_metrics(q, g, **kwargs)


# --------------------------------------------------------------------------- reference and chunked paths


def reference(scores: np.ndarray, positive: np.ndarray, ks):
    """Plain-Python definitions: sort by (score desc, negatives first), then read off the metrics."""
    out = []
    for s, p in zip(scores, positive):
        order = sorted(range(len(s)), key=lambda j: (-s[j], bool(p[j])))
        hits = [bool(p[j]) for j in order]
        if not any(hits):
            out.append(None)
            continue
        first = hits.index(True) + 1
        precisions = [sum(hits[: r + 1]) / (r + 1) for r, h in enumerate(hits) if h]
        out.append({"rank": first, "ap": sum(precisions) / len(precisions), **{k: sum(hits[:k]) / k for k in ks}})
    return out


def quantised(n, d, seed):
    """Embeddings on a coarse grid, so exact score ties are common."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 2, (n, d), generator=gen).float() + 0.01 * (torch.arange(d) == 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chunked_equals_dense_equals_reference(seed):
    n, d, ks = 37, 3, (1, 5, 10)
    q, g = quantised(n, d, seed), quantised(n, d, seed + 100)
    labels = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(seed)).numpy()
    dense_i = instance_metrics(q, g, ks, chunk_size=n, return_ranks=True)
    dense_c = class_metrics(q, g, labels, labels, ks, chunk_size=n, return_ranks=True)
    for chunk in (1, 5, 36):
        ci = instance_metrics(q, g, ks, chunk_size=chunk, return_ranks=True)
        cc = class_metrics(q, g, labels, labels, ks, chunk_size=chunk, return_ranks=True)
        assert np.array_equal(ci.pop("ranks"), dense_i["ranks"])
        assert np.array_equal(cc.pop("ranks"), dense_c["ranks"])
        assert ci == {k: v for k, v in dense_i.items() if k != "ranks"}
        assert cc == {k: v for k, v in dense_c.items() if k != "ranks"}

    qn, gn = torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(g, dim=1)
    scores = (qn.double() @ gn.double().T).float().numpy()  # as the library: no last-bit noise in ties
    ref_i = reference(scores, np.eye(n, dtype=bool), ks)
    assert dense_i["ranks"].tolist() == [r["rank"] for r in ref_i]
    ref_c = [r for r in reference(scores, labels[:, None] == labels[None, :], ks) if r is not None]
    assert dense_c["mAP"] == pytest.approx(np.mean([r["ap"] for r in ref_c]))
    for k in ks:
        assert dense_c[f"P@{k}"] == pytest.approx(np.mean([r[k] for r in ref_c]))
    # the sort-based class path and the counting-based instance path agree when each row's label is unique
    unique = class_metrics(q, g, np.arange(n), np.arange(n), ks, chunk_size=7, return_ranks=True)
    assert np.array_equal(unique["ranks"], dense_i["ranks"])


def test_blocks_never_exceed_the_chunk(monkeypatch):
    seen = []
    original = retrieval.iter_score_blocks

    def spy(q, g, chunk):
        for start, block in original(q, g, chunk):
            seen.append(tuple(block.shape))
            yield start, block

    monkeypatch.setattr(retrieval, "iter_score_blocks", spy)
    x = torch.randn(50, 4)
    instance_metrics(x, x, ks=(1,), chunk_size=8)
    class_metrics(x, x, np.arange(50) % 3, np.arange(50) % 3, ks=(1,), chunk_size=8)
    assert seen and max(rows for rows, _ in seen) == 8 and all(cols == 50 for _, cols in seen)


def test_default_chunk_is_sized_by_memory():
    assert resolve_chunk_size(10_000, 100_000, None, max_block_elements=1_000_000) == 10
    assert resolve_chunk_size(5, 100, None) == 5  # small problems: one block


def test_top_k_is_best_first():
    q = t([[1, 0]])
    g = t([[0, 1], [1, 0], [0.8, 0.6], [-1, 0]])
    assert top_k(q, g, k=3).tolist() == [[1, 2, 0]]
