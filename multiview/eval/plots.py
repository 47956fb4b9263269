"""Figures of an evaluation: recall@k curves, a retrieval grid with thumbnails, a 2-D map of an embedding; and
the training curves of a run (loss, MI estimates faceted by view against the InfoNCE ceiling).

Uses matplotlib's object API (``Figure``, no pyplot), so it needs no display and no global backend switch.

Thumbnails (:func:`draw_thumbnail`) follow the decoded field's kind: ``uint8`` images and 3-D float maps are
shown as images, audio (when a sample rate is given) as a log-mel spectrogram, ``[C, T]`` float arrays as sensor
traces (one line per channel), 1-D vectors and scalars as bar plots (one filled step patch).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

CORRECT_COLOUR = "#1a9850"
WRONG_COLOUR = "#d73027"
SAME_CLASS_COLOUR = "#f0a30a"  # paired retrieval: not the paired item, but of the query's class
HIT_COLOURS = {0: WRONG_COLOUR, 1: SAME_CLASS_COLOUR, 2: CORRECT_COLOUR}


def recall_curve(ranks: np.ndarray, max_k: int) -> np.ndarray:
    """``[max_k]``: recall@k for k = 1..max_k from 1-based first-positive ranks ``[Q]``."""
    ranks = np.asarray(ranks)
    return (ranks[None, :] <= np.arange(1, max_k + 1)[:, None]).mean(1)


def plot_recall_curves(
    curves: dict[str, np.ndarray], path: str | Path, max_k: int = 50, title: str = "recall@k"
) -> Path:
    """One line per entry of ``curves`` (``{"image->audio": ranks [Q], ...}``), recall@k for k = 1..max_k."""
    if not curves:
        raise ValueError("no curves to plot; expected {label: ranks}")
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    for label, ranks in curves.items():
        k = np.arange(1, max_k + 1)
        ax.plot(k, recall_curve(ranks, max_k), label=label)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k (a positive in the top k)")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def draw_thumbnail(ax, value, sample_rate: int | None = None) -> None:
    """Draw one decoded field value on ``ax`` (see the module docstring for the rule per kind)."""
    if sample_rate is not None:
        from multiview.eval.baselines import _log_mel

        wave = torch.as_tensor(_to_numpy(value)).float()
        spec = _log_mel(wave.reshape(-1, wave.shape[-1]), int(sample_rate)).numpy()
        ax.imshow(spec, origin="lower", aspect="auto", cmap="magma")
    else:
        arr = _to_numpy(value)
        is_image = arr.ndim == 3 or (arr.ndim == 2 and arr.dtype == np.uint8)
        if is_image:
            img = arr if arr.ndim == 2 else np.moveaxis(arr, 0, -1)  # [C, H, W] -> [H, W, C]
            img = img.astype(np.float32)
            if img.ndim == 3 and img.shape[-1] not in (3, 4):
                img = img.mean(-1)  # other channel counts: show their mean
            if img.ndim == 3 and img.shape[-1] == 1:
                img = img[..., 0]
            span = img.max() - img.min()
            img = (img - img.min()) / span if span > 0 else np.zeros_like(img)
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        elif arr.ndim == 2:
            for channel in arr.astype(np.float32):
                ax.plot(channel, linewidth=0.8)
        else:
            flat = arr.reshape(-1).astype(np.float32)
            # One filled step patch looks like bars of width 1 but is one artist, not one per value: a grid of
            # 36 mfeat vectors (240 values each) took 14.5 s to draw as bars on a busy 2-core machine.
            edges = np.arange(flat.shape[0] + 1, dtype=np.float32) - 0.5
            ax.stairs(flat, edges, baseline=0.0, fill=True, color="#4575b4")
    ax.set_xticks([])
    ax.set_yticks([])


def _frame(ax, colour: str) -> None:
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(colour)
        spine.set_linewidth(3)


def plot_retrieval_grid(
    queries: Sequence[tuple],
    hits: Sequence[Sequence[tuple]],
    correct: np.ndarray,
    path: str | Path,
    title: str = "",
    query_titles: Sequence[str] | None = None,
) -> Path:
    """Rows of a query and its top hits; correct hits framed green, same-class ones amber, wrong ones red.

    Args:
        queries: ``[Q]`` of ``(value, sample_rate or None)``.
        hits: ``[Q][k]`` of ``(value, sample_rate or None)``, best first.
        correct: ``[Q, k]`` bool (True: correct), or int grades: 2 correct (the paired item), 1 same class, 0 wrong.
        query_titles: a caption per query (its key and label).
    """
    correct = np.asarray(correct)
    correct = correct.astype(np.int64) * 2 if correct.dtype == bool else correct.astype(np.int64)
    n_q, k = correct.shape
    if len(queries) != n_q or any(len(h) != k for h in hits) or len(hits) != n_q:
        raise ValueError(
            f"grid shapes disagree: {len(queries)} queries, hits {[len(h) for h in hits]}, correct {correct.shape}"
        )
    fig = Figure(figsize=(1.4 * (k + 1), 1.4 * n_q + 0.4))
    axes = fig.subplots(n_q, k + 1, squeeze=False)
    for i in range(n_q):
        draw_thumbnail(axes[i, 0], *queries[i])
        _frame(axes[i, 0], "black")
        if query_titles is not None:
            axes[i, 0].set_title(query_titles[i], fontsize=6)
        for j in range(k):
            draw_thumbnail(axes[i, j + 1], *hits[i][j])
            _frame(axes[i, j + 1], HIT_COLOURS[int(correct[i, j])])
            if i == 0:
                axes[i, j + 1].set_title(f"hit {j + 1}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def embedding_map(embeddings: torch.Tensor, method: str = "pca", seed: int = 0) -> np.ndarray:
    """``[N, 2]`` coordinates of ``[N, D]`` embeddings by PCA or t-SNE (cosine geometry: rows L2-normalised)."""
    x = torch.nn.functional.normalize(torch.as_tensor(embeddings).float(), dim=1)
    if method == "pca":
        from multiview.eval.baselines import principal_axes

        mean, axes = principal_axes(x, 2, seed)
        out = ((x - mean) @ axes).numpy()
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))  # 1-D embeddings: a flat second axis
    if method == "tsne":
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits  # installed with scikit-learn

        perplexity = float(min(30, max(2, (x.shape[0] - 1) // 3)))
        # One OpenMP thread: on a busy machine the spinning threads made 90 points take 24 s instead of 0.6 s.
        with threadpool_limits(limits=1):
            return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x.numpy())
    raise ValueError(f"map method must be 'pca' or 'tsne', got {method!r}")


def plot_embedding_map(
    embeddings: torch.Tensor,
    labels: np.ndarray | None,
    path: str | Path,
    method: str = "pca",
    max_points: int = 2000,
    seed: int = 0,
    title: str = "",
) -> Path:
    """Scatter of a 2-D map of the embedding, coloured by label (a seeded subsample of ``max_points`` rows)."""
    n = embeddings.shape[0]
    idx = np.sort(np.random.default_rng(seed).permutation(n)[:max_points]) if n > max_points else np.arange(n)
    xy = embedding_map(embeddings[idx], method, seed)
    fig = Figure(figsize=(5, 4.5))
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.7)
    else:
        lab = np.asarray(labels)[idx]
        points = ax.scatter(xy[:, 0], xy[:, 1], c=lab, cmap="tab10" if lab.max() < 10 else "tab20", s=4, alpha=0.8)
        fig.colorbar(points, ax=ax, label="label")
    ax.set_title(title or f"{method.upper()} map ({len(idx)} points)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path)


def mi_directions(keys: Sequence[str], views: Sequence[str] | None = None) -> dict[str, dict[str, str]]:
    """``{anchor view: {partner view: metric key}}`` of directed pair estimates ``"<objective>/mi_<a>_<b>"``.

    ``views`` (the objective's view names) splits names that hold underscores themselves; without it a key
    splits at its one underscore. Keys that do not split into two views (AMDIM's ``mi_1t5``) are left out.
    """
    names = set(views or ())
    out: dict[str, dict[str, str]] = {}
    for key in keys:
        rest = key.rpartition("/mi_")[2] if "/mi_" in key else key.removeprefix("mi_")
        cuts = [i for i, c in enumerate(rest) if c == "_"]
        found = [(rest[:i], rest[i + 1 :]) for i in cuts if {rest[:i], rest[i + 1 :]} <= names] if names else []
        if not found and not names and len(cuts) == 1:
            found = [(rest[: cuts[0]], rest[cuts[0] + 1 :])]
        if len(found) == 1:
            a, b = found[0]
            out.setdefault(a, {})[b] = key
    return out


def plot_training_curves(
    records: Sequence[dict],
    path: str | Path,
    mi_ceiling: float | None = None,
    views: Sequence[str] | None = None,
    ceiling_label: str = "InfoNCE ceiling",
) -> Path:
    """:func:`training_curves_figure` saved as a PNG at ``path``."""
    return _save(training_curves_figure(records, mi_ceiling, views, ceiling_label), path)


def training_curves_figure(
    records: Sequence[dict],
    mi_ceiling: float | None = None,
    views: Sequence[str] | None = None,
    ceiling_label: str = "InfoNCE ceiling",
) -> Figure:
    """The training loss and the MI estimates of a ``metrics.jsonl`` (its records, in step order).

    Pairwise estimates (``<objective>/mi_<a>_<b>``, one per direction; CMC logs 30 for six views) are faceted:
    one panel per anchor view a, one line per partner b, each partner in the same colour in every panel, so both
    directions of a pair show (a->b in panel a, b->a in panel b) and no panel holds more than the views. Other MI
    keys share one panel. ``mi_ceiling`` (log of the negatives + 1, log(batch) for in-batch InfoNCE) is drawn in
    every MI panel: an InfoNCE estimate cannot exceed it, so lines that reach it say the batch is too small to
    measure more.
    """
    if not records:
        raise ValueError("no metric records to plot; expected the rows of a metrics.jsonl")
    steps = [r["step"] for r in records]
    mi_keys = list(dict.fromkeys(k for r in records for k in r if k.rpartition("/")[2].startswith("mi_")))
    by_view = mi_directions(mi_keys, views)
    order = list(views or ()) + [v for a, lines in by_view.items() for v in (a, *lines) if v not in (views or ())]
    order = list(dict.fromkeys(order))  # the views' order, then any others as first seen
    panels = [(f"from {a}", dict(sorted(by_view[a].items(), key=lambda kv: order.index(kv[0])))) for a in order
              if a in by_view]  # fmt: skip
    paired = {key for lines in by_view.values() for key in lines.values()}
    others = {k.rpartition("/")[2].removeprefix("mi_"): k for k in mi_keys if k not in paired}
    if others:
        panels.append(("other estimates", others))
    colours = {v: f"C{i % 10}" for i, v in enumerate(order)}
    partners = [v for v in order if any(v in lines for lines in by_view.values())]
    cells = 1 + len(panels) + (1 if by_view else 0)  # the loss, the MI panels, a cell for the shared legend
    ncols = min(4, cells)
    nrows = -(-cells // ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.6 * nrows))
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(cells)]
    axes[0].plot(steps, [r["loss"] for r in records], color="k", lw=1)
    axes[0].set_title("training loss", fontsize=9)
    axes[0].set_xlabel("step", fontsize=8)
    axes[0].tick_params(labelsize=7)
    values = [r[k] for r in records for _, lines in panels for k in lines.values() if r.get(k) is not None]
    top = max([*values, mi_ceiling or 0.0, 1e-3]) * 1.08
    bottom = min([*values, 0.0])
    for ax, (title, lines) in zip(axes[1:], panels):
        for name, key in lines.items():
            ax.plot(steps, [r.get(key, np.nan) for r in records], lw=1, label=name, color=colours.get(name))
        if mi_ceiling is not None:
            ax.axhline(mi_ceiling, color="0.4", ls="--", lw=1)
        ax.set_ylim(bottom, top)
        ax.set_title(f"MI estimate (nats), {title}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        if title == "other estimates" or not by_view:
            ax.legend(fontsize=7)
    if by_view:
        legend_ax = axes[-1]
        legend_ax.axis("off")
        handles = [legend_ax.plot([], [], color=colours[b], lw=1.5, label=b)[0] for b in partners]
        if mi_ceiling is not None:
            handles.append(legend_ax.plot([], [], color="0.4", ls="--", lw=1,
                                          label=f"{ceiling_label} {mi_ceiling:.2f}")[0])  # fmt: skip
        legend_ax.legend(handles=handles, title="partner view", loc="center", fontsize=8, title_fontsize=8)
    elif mi_ceiling is not None and len(axes) > 1:
        axes[1].text(0.01, mi_ceiling, f" {ceiling_label} {mi_ceiling:.2f}", fontsize=7, va="bottom",
                     transform=axes[1].get_yaxis_transform())  # fmt: skip
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
