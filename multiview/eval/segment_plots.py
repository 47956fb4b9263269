"""Segmentation grids: images with their predicted maps laid over them (a colour per component, alpha blended),
and the ground-truth masks when there are any (painted flat), one column per image.

Uses matplotlib's object API (``Figure``, no pyplot), as :mod:`multiview.eval.plots`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from multiview.eval.segment_metrics import IGNORE

ALPHA = 0.55  # the map's share of a blended pixel: the image stays readable under it
# mask labels painted flat (no image under them): background black, the main object white, others in colour
MASK_COLOURS = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.22, 0.49, 0.72], [0.30, 0.69, 0.29],
                         [0.60, 0.31, 0.64], [1.00, 0.50, 0.00], [0.65, 0.34, 0.16], [0.89, 0.10, 0.11]])  # fmt: skip


def component_colours(k: int) -> np.ndarray:
    """``[k, 3]`` RGB in [0, 1]: matplotlib's tab10 (tab20 beyond 10 components), so reruns use the same colours."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    return np.array([cmap(i % cmap.N)[:3] for i in range(k)])


def overlay(image: np.ndarray, labels: np.ndarray, colours: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """``image`` float ``[H, W, 3]`` in [0, 1] blended with ``colours[labels]`` (labels ``[H, W]``); pixels
    labelled IGNORE (outside what the method saw) are left as they are."""
    painted = colours[np.minimum(labels, len(colours) - 1)]
    blended = (1 - alpha) * image + alpha * painted
    return np.where((labels == IGNORE)[..., None], image, blended)


def to_rgb(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """uint8 ``[C, H, W]`` (C = 1 or 3) -> float ``[h, w, 3]`` in [0, 1] at ``shape`` (nearest pixel)."""
    img = np.asarray(image, dtype=np.float32) / 255.0
    img = np.repeat(img[:1], 3, 0) if img.shape[0] == 1 else img[:3]
    rows = (np.arange(shape[0]) * img.shape[1] // shape[0]).clip(0, img.shape[1] - 1)
    cols = (np.arange(shape[1]) * img.shape[2] // shape[1]).clip(0, img.shape[2] - 1)
    return np.moveaxis(img[:, rows][:, :, cols], 0, -1)


def plot_segment_grid(
    images: Sequence[np.ndarray],
    maps: np.ndarray,
    path: str | Path,
    k: int,
    masks: np.ndarray | None = None,
    titles: Sequence[str] = (),
    method: str = "",
    title: str = "",
) -> Path:
    """One column per image: the image, the image under its map, and its mask (when given; painted flat).

    Args:
        images: uint8 ``[C, H, W]`` each.
        maps: uint8 ``[n, h, w]`` components (IGNORE: not seen), at the mask's resolution.
        masks: uint8 ``[n, h, w]`` ground-truth labels, or None.
        titles: a caption per column (the sample keys).
    """
    n = len(images)
    rows = 3 if masks is not None else 2
    fig = Figure(figsize=(1.5 * n + 0.6, 1.55 * rows + 0.5))
    axes = fig.subplots(rows, n, squeeze=False)
    colours = component_colours(k)
    names = ["image", f"{method} k={k}".strip(), "mask"]
    for j, image in enumerate(images):
        rgb = to_rgb(image, maps.shape[1:])
        panels = [rgb, overlay(rgb, maps[j], colours)]
        if masks is not None:
            panels.append(MASK_COLOURS[np.minimum(masks[j], len(MASK_COLOURS) - 1)])
        for i, panel in enumerate(panels):
            ax = axes[i][j]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(names[i], fontsize=8)
        if j < len(titles):
            axes[0][j].set_title(titles[j], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
