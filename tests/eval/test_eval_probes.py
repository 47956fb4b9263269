"""Probes: the linear probe recovers a planted linear signal, kNN separates clusters, the online probe is detached."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multiview.eval.probes import (
    OnlineProbe,
    Standardizer,
    knn_predict,
    knn_probe,
    linear_probe,
    search_rows,
    stratified_split,
)


def planted(n: int, d: int = 20, classes: int = 4, seed: int = 0):
    """Labels that are the argmax of a hidden linear map, on features with very different scales."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    w = torch.randn(d, classes, generator=gen)
    y = (x @ w).argmax(1)
    scales = torch.logspace(-3, 3, d)  # standardisation must undo this
    return x * scales + 5.0, y


def test_linear_probe_recovers_a_planted_linear_signal():
    x, y = planted(900)
    res = linear_probe(x[:600], y[:600], x[600:], y[600:])
    assert res.top1 > 0.9
    assert res.n_train + res.n_val == 600 and res.n_test == 300 and res.n_classes == 4 and res.dim == 20
    assert res.weight_decay in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    assert len(res.val_top1_by_weight_decay) == 6


def test_linear_probe_is_at_chance_without_signal():
    x, y = planted(900)
    shuffled = y[torch.randperm(900, generator=torch.Generator().manual_seed(1))]
    res = linear_probe(x[:600], shuffled[:600], x[600:], shuffled[600:], weight_decays=(1e-2,))
    assert res.top1 < 0.45  # 4 classes: chance is about 0.25-0.3 given the class balance


def test_linear_probe_weight_decay_search_prefers_regularisation_on_noisy_wide_data():
    # 40 samples, 200 dims, 1 informative: weak decay overfits, the search must not pick the weakest.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(240, 200, generator=gen)
    y = (x[:, 0] > 0).long()
    res = linear_probe(x[:40], y[:40], x[40:], y[40:], weight_decays=(1e-6, 1.0), val_fraction=0.5)
    assert res.val_top1_by_weight_decay[repr(1.0)] >= res.val_top1_by_weight_decay[repr(1e-6)]
    assert res.weight_decay == 1.0


def test_linear_probe_handles_arbitrary_label_values():
    x, y = planted(400, classes=3)
    names = np.array([10, 20, 70])[y.numpy()]
    assert linear_probe(x[:300], names[:300], x[300:], names[300:], weight_decays=(1e-3,)).top1 > 0.85


def test_search_rows_is_a_stratified_subset_or_everything():
    labels = np.repeat(np.arange(4), [400, 200, 200, 200])
    rows = search_rows(labels, 100)
    assert len(set(rows.tolist())) == len(rows) == 100
    assert np.bincount(labels[rows]).tolist() == [40, 20, 20, 20]  # the class proportions of all rows
    assert search_rows(labels, None).tolist() == list(range(1000)) == search_rows(labels, 5000).tolist()


def test_linear_probe_search_limit_searches_a_subset_and_refits_on_all():
    x, y = planted(2300)
    res = linear_probe(x[:2000], y[:2000], x[2000:], y[2000:], search_limit=500)
    assert abs(res.n_train + res.n_val - 500) <= 4  # the search saw the subset only (rounded per class)
    assert res.top1 > 0.9  # the final head, fitted on all 2000 rows, still recovers the signal
    # The refit used all rows: the same decay found on the full search gives the same head, hence the same score.
    full = linear_probe(x[:2000], y[:2000], x[2000:], y[2000:], weight_decays=(res.weight_decay,))
    assert abs(full.top1 - res.top1) < 1e-6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weight_decays": ()}, "weight_decays"),
        ({"val_fraction": 1.5}, "val_fraction"),
        ({"search_limit": 1}, "search_limit"),
    ],
)
def test_linear_probe_rejects_bad_settings(kwargs, match):
    x, y = planted(100)
    with pytest.raises(ValueError, match=match):
        linear_probe(x, y, x, y, **kwargs)


def test_linear_probe_rejects_mismatched_shapes():
    x, y = planted(100)
    with pytest.raises(ValueError, match="train_x has 20 dims but test_x has 5"):
        linear_probe(x, y, x[:, :5], y)
    with pytest.raises(ValueError, match="train_y has 99 labels for 100 rows"):
        linear_probe(x, y[:99], x, y)


def test_stratified_split_keeps_every_class_in_both_parts():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 2)
    tr, va = stratified_split(labels, 0.2, seed=3)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(17))
    assert set(labels[va]) == {0, 1, 2} and set(labels[tr]) == {0, 1, 2}
    assert (labels[va] == 0).sum() == 2


def test_standardizer_keeps_constant_dims_finite():
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    z = Standardizer.fit(x)(x)
    assert torch.allclose(z, torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))


def clusters(n_per: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.eye(8)[:3] * 4
    x = torch.cat([c + 0.5 * torch.randn(n_per, 8, generator=gen) for c in centres])
    return x, torch.arange(3).repeat_interleave(n_per)


def test_knn_separates_clusters():
    xtr, ytr = clusters(30, 0)
    xte, yte = clusters(10, 1)
    res = knn_probe(xtr, ytr, xte, yte)
    assert res.top1 == 1.0 and res.k == 20 and res.temperature == 0.07


def test_knn_votes_are_temperature_weighted():
    # One very close neighbour of class 1 against two farther ones of class 0: the weighted vote (tau 0.07)
    # follows the close one, a near-uniform vote (tau 100) follows the majority.
    bank = torch.tensor([[1.0, 0.05], [0.5, 0.8660254], [0.5, -0.8660254]])
    labels = np.array([1, 0, 0])
    query = torch.tensor([[1.0, 0.0]])
    assert knn_predict(bank, labels, query, k=3, temperature=0.07).tolist() == [1]
    assert knn_predict(bank, labels, query, k=3, temperature=100.0).tolist() == [0]


def test_knn_chunked_equals_unchunked():
    xtr, ytr = clusters(30, 0)
    xte, _ = clusters(20, 2)
    a = knn_predict(xtr, ytr, xte, k=7, chunk_size=3)
    b = knn_predict(xtr, ytr, xte, k=7)
    assert np.array_equal(a, b)


def test_knn_rejects_bad_k_and_temperature():
    xtr, ytr = clusters(3, 0)
    with pytest.raises(ValueError, match=r"k must lie in \[1, 9\]"):
        knn_predict(xtr, ytr, xtr, k=20)
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        knn_predict(xtr, ytr, xtr, temperature=0)


def test_online_probe_trains_its_head_only_and_learns():
    torch.manual_seed(0)
    x, y = clusters(40, 0)
    features = x.clone().requires_grad_(True)
    probe = OnlineProbe(8, 3)
    opt = torch.optim.SGD(probe.parameters(), lr=0.5)
    first = probe(features, y).metrics["probe_acc"].item()
    for _ in range(30):
        out = probe(features, y)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert features.grad is None  # detached: nothing flows back to the encoder
    assert out.metrics["probe_acc"].item() == 1.0 and out.metrics["probe_acc"].item() > first - 1e-9
    assert out.metrics["probe_loss"].requires_grad is False


def test_online_probe_ignores_unlabelled_rows():
    probe = OnlineProbe(4, 2)
    x = torch.randn(4, 4)
    out = probe(x, torch.tensor([0, -1, 1, -1]))
    ref = torch.nn.functional.cross_entropy(probe.head(x[[0, 2]]), torch.tensor([0, 1]))
    assert torch.allclose(out.loss, ref)
    empty = probe(x, torch.full((4,), -1))
    assert empty.loss.item() == 0.0 and empty.loss.requires_grad


def test_online_probe_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_classes >= 2, got 8 and 1"):
        OnlineProbe(8, 1)
