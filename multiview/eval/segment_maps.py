"""From soft assignments on an encoder's local map to a label map at the mask's resolution, and the pixel
features of the colour baseline.

Where a map cell sits in the image: the encoder's input is the eval view of the field, cut from ``box``
(``(top, left, height, width)`` in the image's pixels; the whole image when the view is a plain resize) and
resized to ``S x S``. Cell ``i`` of a local map is centred at ``first + i * step`` input pixels: for an AMDIM
trunk, which pads nothing, exactly the centre of its receptive field (``window / 2 + i * jump``); for other
encoders (padded convolutions) the cells are spread evenly over the input (``(i + 0.5) * S / n``).

:func:`upsample_to` interpolates a map's soft assignments ``[k, h, w]`` bilinearly between those centres (held
constant beyond the outermost ones) at every target pixel centre; the label is the argmax over components of the
interpolated assignments (so a hard assignment, one-hot, gives the nearest cell's label at a cell centre and the
larger share in between). Target pixels outside the box get :data:`~multiview.eval.segment_metrics.IGNORE`.

Examples:
    >>> pi = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # k=2 components on a 1 x 2 map
    >>> axis = interpolation_matrix(4, image_side=4, box=(0, 4), input_side=4, cells=(1.0, 2.0), n_cells=2)
    >>> labels_from(pi, interpolation_matrix(1, 1, (0, 1), 1, (0.5, 1.0), 1), axis).tolist()
    [[0, 0, 1, 1]]
"""

from __future__ import annotations

import numpy as np
import torch

from multiview.eval.segment_metrics import IGNORE


def cell_centres(encoder: torch.nn.Module, name: str, input_side: int, n_cells: int) -> tuple[float, float]:
    """``(first centre, step)`` in input pixels of the cells of local map ``name`` (``n_cells`` along a side of
    an ``input_side`` input): an AMDIM trunk's receptive fields, else cells spread evenly."""
    from multiview.encoders.amdim import NAMES, AmdimTrunk

    trunk = getattr(encoder, "trunk", None)
    if isinstance(trunk, AmdimTrunk) and name in NAMES:
        window, jump = trunk.receptive_field(NAMES.index(name))
        return window / 2, float(jump)
    return input_side / (2 * n_cells), input_side / n_cells


def interpolation_matrix(
    target_side: int, image_side: int, box: tuple[int, int], input_side: int, cells: tuple[float, float], n_cells: int
) -> torch.Tensor:
    """Linear interpolation weights along one axis: ``[target_side, n_cells]``, row t gives target pixel t's
    weights on the cells; an all-zero row for a target pixel outside the box.

    Args:
        target_side: pixels of the output (the mask) along this axis.
        image_side: pixels of the field's image along this axis (the box is in these pixels).
        box: ``(start, length)`` of the eval view's crop along this axis, in image pixels.
        input_side: pixels of the encoder's input along this axis (the crop resized).
        cells: ``(first centre, step)`` of the map's cells in input pixels (:func:`cell_centres`).
        n_cells: cells of the map along this axis.
    """
    start, length = box
    image = (torch.arange(target_side, dtype=torch.float64) + 0.5) * image_side / target_side
    inside = (image >= start) & (image < start + length)
    position = ((image - start) * input_side / length - cells[0]) / cells[1]  # in cell units
    position = position.clamp(0, n_cells - 1)
    low = position.floor().long().clamp(max=n_cells - 1)
    high = (low + 1).clamp(max=n_cells - 1)
    frac = position - low
    weights = torch.zeros(target_side, n_cells, dtype=torch.float64)
    rows = torch.arange(target_side)
    weights[rows, low] += 1 - frac
    weights[rows, high] += frac
    return (weights * inside[:, None]).float()


def labels_from(assignments: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Soft assignments ``[..., k, h, w]`` -> uint8 labels ``[..., H, W]``: interpolated with the row and column
    matrices ``[H, h]``, ``[W, w]`` (:func:`interpolation_matrix`), then argmax over k; IGNORE outside the box."""
    up = torch.einsum("yh,...khw,xw->...kyx", rows, assignments.float(), cols)
    labels = up.argmax(-3).to(torch.uint8)
    outside = (rows.sum(1) == 0)[:, None] | (cols.sum(1) == 0)[None, :]
    return labels.masked_fill(outside, IGNORE)


def map_geometry(
    encoder: torch.nn.Module,
    name: str,
    map_shape: tuple[int, int],
    input_shape: tuple[int, int],
    image_shape: tuple[int, int],
    box: tuple[int, int, int, int] | None,
    target_shape: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The row and column interpolation matrices taking local map ``name`` (``map_shape``) of an input
    ``input_shape`` cut from ``box`` of an ``image_shape`` image to ``target_shape`` pixels."""
    top, left, height, width = box if box is not None else (0, 0, *image_shape)
    matrices = []
    for axis, (start, length) in enumerate(((top, height), (left, width))):
        cells = cell_centres(encoder, name, input_shape[axis], map_shape[axis])
        matrices.append(interpolation_matrix(target_shape[axis], image_shape[axis], (start, length),
                                             input_shape[axis], cells, map_shape[axis]))  # fmt: skip
    return matrices[0], matrices[1]


# ----------------------------------------------------------------------------------------------- pixels
_SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_D65 = np.array([0.95047, 1.0, 1.08883])


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of sRGB values in [0, 1]: ``[..., 3] -> [..., 3]`` (L in 0..100)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _D65
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def pixel_features(image: torch.Tensor, xy_weight: float) -> np.ndarray:
    """The colour baseline's features of every pixel: uint8 ``[C, H, W]`` -> ``[H * W, 5]`` (L*, a*, b*, then x
    and y scaled so that crossing the image's longer side is ``100 * xy_weight``, the span of L*); a grey image
    gives ``[H * W, 3]`` (L*, x, y)."""
    c, h, w = image.shape
    pixels = image.permute(1, 2, 0).numpy().astype(np.float64) / 255.0
    colour = rgb_to_lab(pixels[..., :3]) if c >= 3 else rgb_to_lab(np.repeat(pixels[..., :1], 3, -1))[..., :1]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    scale = 100.0 * xy_weight / max(h, w)
    return np.concatenate([colour, (xs * scale)[..., None], (ys * scale)[..., None]], -1).reshape(h * w, -1)
