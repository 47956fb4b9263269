"""Scores of segmentation maps against ground-truth label masks (numpy and scipy only).

A predicted map labels each pixel with a component ``0 .. k-1`` (or :data:`IGNORE`: a pixel the method did not
see, left out of every score); a mask labels it with ``0`` (background), ``1`` (the main object), ``2..``
(other objects). Components carry no meaning of their own, so each score first assigns components to mask labels:

- **per image**: the Hungarian assignment (``scipy.optimize.linear_sum_assignment``) between the components and
  the mask labels present in that image that maximises the summed IoU. One component per label: a label split
  over two components keeps the better one, the other's pixels count as wrong. ``fg_iou`` is the IoU of label
  :data:`FOREGROUND` under it (NaN where the image has no such pixel), ``miou`` the mean IoU over the labels
  present; ``ari`` is the adjusted Rand index (``sklearn.metrics.adjusted_rand_score``), which needs no
  assignment.
- **per data set** (for methods whose components mean the same in every image: a mixture's components, k-means
  clusters fitted on the whole split): one Hungarian assignment on the IoU of the confusion summed over all
  images, then ``fg_iou`` and ``miou`` of every image under that one assignment.

Examples:
    >>> truth = np.array([[[0, 0, 1, 1]]], dtype=np.uint8)
    >>> swapped = np.array([[[1, 1, 0, 0]]], dtype=np.uint8)
    >>> scores = score_maps(swapped, truth, k=2, dataset_level=True)
    >>> float(scores["image"]["fg_iou"][0]), float(scores["image"]["ari"][0]), float(scores["dataset"]["fg_iou"][0])
    (1.0, 1.0, 1.0)
"""

from __future__ import annotations

import numpy as np

IGNORE = 255  # a predicted pixel no method saw (outside the eval crop): left out of every score
FOREGROUND = 1  # the mask label of the main object


def confusions(pred: np.ndarray, truth: np.ndarray, k: int, n_labels: int) -> np.ndarray:
    """Per-image confusion counts: ``pred [N, H, W]`` (components ``< k`` or IGNORE) and ``truth [N, H, W]``
    (labels ``< n_labels``) -> ``[N, k, n_labels]`` int64, ``[n, c, l]`` = pixels of image n in component c and
    label l. Pixels predicted IGNORE are not counted."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(f"pred and truth must be [N, H, W] of one shape, got {pred.shape} and {truth.shape}")
    seen = pred != IGNORE
    if (pred[seen] >= k).any() or (truth >= n_labels).any():
        raise ValueError(f"components must be < k={k} and labels < n_labels={n_labels}")
    n = pred.shape[0]
    image = np.broadcast_to(np.arange(n)[:, None, None], pred.shape)
    # one bincount over (image, component, label) codes instead of a histogram per image
    codes = (image[seen] * k + pred[seen].astype(np.int64)) * n_labels + truth[seen].astype(np.int64)
    return np.bincount(codes, minlength=n * k * n_labels).reshape(n, k, n_labels)


def iou_matrix(confusion: np.ndarray) -> np.ndarray:
    """IoU of every component with every label from confusion counts ``[..., k, L]`` -> ``[..., k, L]``
    (0 where both are empty)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    union = confusion.sum(-1, keepdims=True) + confusion.sum(-2, keepdims=True) - confusion
    return np.divide(confusion, union, out=np.zeros_like(confusion), where=union > 0)


def assign(iou: np.ndarray) -> np.ndarray:
    """The Hungarian assignment of components to labels maximising the summed IoU: ``iou [k, L]`` -> ``[L]``, the
    component matched to each label (-1: none, when there are more labels than components)."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(iou, maximize=True)
    matched = np.full(iou.shape[1], -1, dtype=np.int64)
    matched[cols] = rows
    return matched


def label_ious(confusion: np.ndarray, matched: np.ndarray) -> np.ndarray:
    """IoU of each label with its matched component: ``confusion [k, L]``, ``matched [L]`` -> ``[L]`` (0 for an
    unmatched label, NaN for a label with no pixel)."""
    iou = iou_matrix(confusion)
    out = np.where(matched >= 0, iou[np.maximum(matched, 0), np.arange(len(matched))], 0.0)
    return np.where(confusion.sum(0) > 0, out, np.nan)


def image_scores(confusion: np.ndarray, matched: np.ndarray | None = None) -> tuple[float, float]:
    """``(fg_iou, miou)`` of one image from its confusion ``[k, L]``, under ``matched`` (default: the image's own
    Hungarian assignment between the components and the labels present)."""
    present = np.flatnonzero(confusion.sum(0) > 0)
    if matched is None:
        matched = np.full(confusion.shape[1], -1, dtype=np.int64)
        matched[present] = assign(iou_matrix(confusion[:, present]))
    ious = label_ious(confusion, matched)
    fg = ious[FOREGROUND] if len(ious) > FOREGROUND else np.nan
    return float(fg), float(np.nanmean(ious)) if len(present) else np.nan


def adjusted_rand(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Adjusted Rand index of each image's map against its mask (pixels predicted IGNORE left out): ``[N]``."""
    from sklearn.metrics import adjusted_rand_score

    out = np.full(len(pred), np.nan)
    for i, (p, t) in enumerate(zip(pred, truth)):
        seen = p != IGNORE
        if seen.any():
            out[i] = adjusted_rand_score(t[seen], p[seen])
    return out


def score_maps(pred: np.ndarray, truth: np.ndarray, k: int, dataset_level: bool) -> dict[str, dict[str, np.ndarray]]:
    """Per-image scores of maps ``pred [N, H, W]`` (components ``< k``, or IGNORE) against masks ``truth [N, H, W]``.

    Returns ``{"image": {"fg_iou", "miou", "ari"}}`` (each ``[N]``; see the module docstring) and, with
    ``dataset_level``, ``"dataset": {"fg_iou", "miou"}`` under one assignment for the whole split, plus
    ``"assignment"``: ``[L]``, the component matched to each label there.
    """
    truth = np.asarray(truth)
    n_labels = int(truth.max()) + 1 if truth.size else 1
    conf = confusions(pred, truth, k, max(n_labels, FOREGROUND + 1))
    per_image = np.array([image_scores(c) for c in conf]).reshape(-1, 2)
    out: dict[str, dict[str, np.ndarray]] = {
        "image": {"fg_iou": per_image[:, 0], "miou": per_image[:, 1], "ari": adjusted_rand(pred, truth)}
    }
    if dataset_level:
        total = conf.sum(0)
        present = np.flatnonzero(total.sum(0) > 0)
        matched = np.full(total.shape[1], -1, dtype=np.int64)
        matched[present] = assign(iou_matrix(total[:, present]))
        fixed = np.array([image_scores(c, matched) for c in conf]).reshape(-1, 2)
        out["dataset"] = {"fg_iou": fixed[:, 0], "miou": fixed[:, 1], "assignment": matched}
    return out


def mean_se(values: np.ndarray) -> tuple[float, float, int]:
    """``(mean, standard error, n)`` over the finite values (s.e. = sample std / sqrt(n); NaN for n < 2)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), 0
    se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return float(values.mean()), se, n
