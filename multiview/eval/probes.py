"""Frozen-feature probes: a linear classifier with a weight-decay search, a weighted kNN, and an online probe.

- :func:`linear_probe`: standardise with the train statistics, carve a stratified validation split from train,
  fit a multinomial logistic regression (full-batch L-BFGS) for each weight decay of a small grid, keep the best
  on validation, refit on the whole train split and report top-1 on test.
- :func:`knn_probe`: cosine kNN with k = 20 neighbours whose votes weigh ``exp(similarity / tau)``, tau = 0.07
  (Wu et al. 2018, "Unsupervised feature learning via non-parametric instance discrimination").
- :class:`OnlineProbe`: a linear head on detached features that a training loop can attach to monitor
  linear separability while pretraining (as AMDIM does); its gradients never reach the encoder.

Examples:
    >>> import torch
    >>> x = torch.randn(200, 5); y = (x[:, 0] > 0).long()
    >>> linear_probe(x[:100], y[:100], x[100:], y[100:], weight_decays=(1e-3,)).top1 > 0.9
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from multiview.eval.retrieval import resolve_chunk_size

DEFAULT_WEIGHT_DECAYS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
SMALL_PROBLEM_ELEMENTS = 1 << 23  # below this many feature values, one thread is faster than several


@contextmanager
def small_problem_threads(n_elements: int):
    """Run a small dense problem on one torch thread (restored afterwards); leave large ones alone.

    On a busy machine, multi-threaded BLAS/LAPACK spins on small matrices: measured here (2 cores, load average
    9), an eigh of a 240 x 240 matrix took 0.86 s on 2 threads and 6 ms on 1; the mfeat linear probe (800 x 649,
    348 loss evaluations) took 9-20 s on 2 threads and 1-4 s on 1.
    """
    before = torch.get_num_threads()
    if n_elements <= SMALL_PROBLEM_ELEMENTS:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _as_float(name: str, x) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().float()
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf; expected finite features")
    return x


def _as_labels(name: str, y, n: int) -> np.ndarray:
    y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y).reshape(-1)
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels for {n} rows; expected one label per row")
    return y


@dataclass
class Standardizer:
    """Per-dimension ``(x - mean) / std`` with the statistics of the data it was fitted on.

    Constant dimensions (std 0) keep std 1, so they map to 0 instead of NaN.
    """

    mean: torch.Tensor  # [D]
    std: torch.Tensor  # [D]

    @classmethod
    def fit(cls, x: torch.Tensor) -> Standardizer:
        std = x.std(0, unbiased=False)
        return cls(x.mean(0), torch.where(std > 0, std, torch.ones_like(std)))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)``: ``val_fraction`` of every class (at least one sample where a class has two)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(val_fraction * len(idx)))
        n_val = min(max(n_val, 1 if len(idx) > 1 else 0), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def search_rows(labels: np.ndarray, limit: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a stratified subset of about ``limit`` rows of ``labels`` (every class in proportion);
    all rows when ``limit`` is None or not smaller than ``len(labels)``."""
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    _, subset = stratified_split(labels, limit / len(labels), seed + 1)
    return subset


def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    weight_decay: float,
    max_iter: int = 300,
    init: nn.Linear | None = None,
) -> nn.Linear:
    """Multinomial logistic regression by full-batch L-BFGS (deterministic, no learning rate to tune).

    Minimises ``mean CE(W x + b, y) + weight_decay / 2 * ||W||^2`` (the bias is not penalised).

    Args:
        x: ``[N, D]`` standardised features; y: ``[N]`` class indices in ``[0, n_classes)``.
        init: a fitted head to warm-start from (the next weight decay of a grid starts near the last optimum).
    """
    head = nn.Linear(x.shape[1], n_classes)
    with torch.no_grad():
        if init is not None:
            head.load_state_dict(init.state_dict())
        else:
            head.weight.zero_()
            head.bias.zero_()
    opt = torch.optim.LBFGS(
        head.parameters(),
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + 0.5 * weight_decay * head.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return head.requires_grad_(False)


def _top1(head: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((head(x).argmax(1) == y).float().mean())


@dataclass
class LinearProbeResult:
    """What :func:`linear_probe` measured; ``asdict`` gives the JSON."""

    top1: float
    weight_decay: float
    val_top1: float
    val_top1_by_weight_decay: dict[str, float] = field(default_factory=dict)
    n_train: int = 0
    n_val: int = 0
    n_test: int = 0
    n_classes: int = 0
    dim: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _class_index(train_y: np.ndarray, *others: np.ndarray) -> tuple[int, list[torch.Tensor]]:
    """Map labels to ``0..C-1`` by the train split's classes; labels unseen in train map to -1 (always wrong)."""
    classes = np.unique(train_y)
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    mapped = [torch.tensor([lookup.get(v, -1) for v in arr.tolist()], dtype=torch.long) for arr in (train_y, *others)]
    return len(classes), mapped


def linear_probe(
    train_x,
    train_y,
    test_x,
    test_y,
    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 300,
    search_limit: int | None = None,
    progress: Callable[[int], object] | None = None,
) -> LinearProbeResult:
    """Top-1 accuracy of a linear classifier on frozen features.

    Args:
        train_x: ``[N, D]``; train_y: ``[N]``; test_x: ``[M, D]``; test_y: ``[M]`` (any hashable ints).
        weight_decays: the grid searched on the validation split (ties go to the larger, safer value).
        val_fraction: share of each train class held out for the search.
        search_limit: run the search on a stratified subset of about this many train rows (None: all of
            train); the final fit still uses all of train. The search fits one head per weight decay, the
            refit only one, so this bounds the cost of probing a large train split (60k rows) at about one fit.
        progress: called with 1 after each fit (``len(weight_decays)`` search fits, then the final one), e.g. a
            progress bar's ``update``; it sees nothing of the numbers.

    Returns:
        :class:`LinearProbeResult` with test top-1 of the head refitted on all of train with the chosen decay.
    """
    if not weight_decays or any(w < 0 for w in weight_decays):
        raise ValueError(f"weight_decays must be a non-empty list of values >= 0, got {list(weight_decays)}")
    tx, sx = _as_float("train_x", train_x), _as_float("test_x", test_x)
    if tx.shape[1] != sx.shape[1]:
        raise ValueError(f"train_x has {tx.shape[1]} dims but test_x has {sx.shape[1]}; expected the same")
    ty_raw, sy_raw = _as_labels("train_y", train_y, tx.shape[0]), _as_labels("test_y", test_y, sx.shape[0])
    n_classes, (ty, sy) = _class_index(ty_raw, sy_raw)
    if search_limit is not None and search_limit < 2:
        raise ValueError(f"search_limit must be >= 2 rows or None, got {search_limit}")
    rows = search_rows(ty_raw, search_limit, seed)
    fit_rel, val_rel = stratified_split(ty_raw[rows], val_fraction, seed)
    fit_idx, val_idx = rows[fit_rel], rows[val_rel]
    with small_problem_threads(tx.numel()):
        return _search_and_fit(tx, ty, sx, sy, n_classes, fit_idx, val_idx, weight_decays, max_iter, progress)


def _search_and_fit(
    tx, ty, sx, sy, n_classes, fit_idx, val_idx, weight_decays, max_iter, progress=None
) -> LinearProbeResult:
    """The weight-decay search on (fit, val) and the final fit on all of train; see :func:`linear_probe`."""
    # The search standardises with the statistics of its own fitting part, as the final fit does with all of train.
    scale = Standardizer.fit(tx[fit_idx])
    xf, xv = scale(tx[fit_idx]), scale(tx[val_idx])
    scores: dict[str, float] = {}
    head = None
    for wd in sorted(weight_decays, reverse=True):  # strong to weak: each warm start is a small step
        head = fit_logistic(xf, ty[fit_idx], n_classes, wd, max_iter, init=head)
        scores[repr(float(wd))] = _top1(head, xv, ty[val_idx]) if len(val_idx) else 0.0
        if progress is not None:
            progress(1)
    best_wd = max(sorted(weight_decays, reverse=True), key=lambda w: scores[repr(float(w))])
    scale = Standardizer.fit(tx)
    final = fit_logistic(scale(tx), ty, n_classes, best_wd, max_iter)
    if progress is not None:
        progress(1)
    return LinearProbeResult(
        top1=_top1(final, scale(sx), sy),
        weight_decay=float(best_wd),
        val_top1=scores[repr(float(best_wd))],
        val_top1_by_weight_decay=scores,
        n_train=len(fit_idx),
        n_val=len(val_idx),
        n_test=int(sx.shape[0]),
        n_classes=n_classes,
        dim=int(tx.shape[1]),
    )


def knn_predict(
    train_x,
    train_y,
    test_x,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Predicted labels ``[M]`` by cosine kNN with ``exp(sim / temperature)`` weighted votes.

    Args:
        train_x: ``[N, D]`` memory bank; train_y: ``[N]``; test_x: ``[M, D]``.
        k: neighbours; temperature: vote sharpness. chunk_size: test rows per block (None: sized by memory).
    Vote ties go to the smallest class index (the order of ``np.unique(train_y)``).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    bank = F.normalize(_as_float("train_x", train_x), dim=1)
    queries = F.normalize(_as_float("test_x", test_x), dim=1)
    if bank.shape[1] != queries.shape[1]:
        raise ValueError(f"train_x has {bank.shape[1]} dims but test_x has {queries.shape[1]}; expected the same")
    if not 1 <= k <= bank.shape[0]:
        raise ValueError(f"k must lie in [1, {bank.shape[0]}] (the train size), got {k}")
    train_y = _as_labels("train_y", train_y, bank.shape[0])
    classes = np.unique(train_y)
    n_classes, (ty,) = _class_index(train_y)
    chunk = resolve_chunk_size(queries.shape[0], bank.shape[0], chunk_size)
    preds = []
    with torch.no_grad():
        for start in range(0, queries.shape[0], chunk):
            sims, idx = (queries[start : start + chunk] @ bank.T).topk(k, dim=1)
            # Subtracting 1 (the largest cosine) before exp keeps the weights in range; their ratios are unchanged.
            weights = torch.exp((sims - 1.0) / temperature)
            votes = torch.zeros(sims.shape[0], n_classes).scatter_add_(1, ty[idx], weights)
            preds.append(votes.argmax(1))
    return classes[torch.cat(preds).numpy()]


@dataclass
class KNNResult:
    top1: float
    k: int
    temperature: float
    n_train: int
    n_test: int

    def to_dict(self) -> dict:
        return asdict(self)


def knn_probe(train_x, train_y, test_x, test_y, k: int = 20, temperature: float = 0.07, chunk_size=None) -> KNNResult:
    """Top-1 accuracy of :func:`knn_predict` on ``test``."""
    pred = knn_predict(train_x, train_y, test_x, k, temperature, chunk_size)
    test_y = _as_labels("test_y", test_y, pred.shape[0])
    return KNNResult(float(np.mean(pred == test_y)), k, temperature, len(np.asarray(train_y)), len(test_y))


@dataclass
class OnlineProbeOutput:
    loss: torch.Tensor  # scalar: add it to the training loss; only the probe's head receives its gradient
    metrics: dict[str, torch.Tensor]


class OnlineProbe(nn.Module):
    """A linear classifier trained on detached features during pretraining (AMDIM's online evaluation).

    Args:
        in_dim: feature size D. n_classes: number of classes. ignore_index: label value of unlabelled rows.

    Examples:
        >>> probe = OnlineProbe(8, 3)
        >>> out = probe(torch.randn(4, 8, requires_grad=True), torch.tensor([0, 1, 2, -1]))
        >>> sorted(out.metrics)
        ['probe_acc', 'probe_loss']
    """

    def __init__(self, in_dim: int, n_classes: int, ignore_index: int = -1):
        super().__init__()
        if in_dim < 1 or n_classes < 2:
            raise ValueError(f"OnlineProbe needs in_dim >= 1 and n_classes >= 2, got {in_dim} and {n_classes}")
        self.head = nn.Linear(in_dim, n_classes)
        self.ignore_index = ignore_index

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> OnlineProbeOutput:
        """features: ``[B, D]`` (detached here); labels: ``[B]`` ints, ``ignore_index`` for unlabelled rows."""
        logits = self.head(features.detach())
        labelled = labels != self.ignore_index
        if not labelled.any():  # a batch without labels: a zero loss that still touches the head (DDP-safe)
            zero = logits.sum() * 0.0
            return OnlineProbeOutput(zero, {"probe_loss": zero.detach(), "probe_acc": zero.detach()})
        loss = F.cross_entropy(logits[labelled], labels[labelled])
        acc = (logits[labelled].argmax(1) == labels[labelled]).float().mean()
        return OnlineProbeOutput(loss, {"probe_loss": loss.detach(), "probe_acc": acc.detach()})
