"""Seeded crop and colour primitives on uint8 / float image tensors, batched over views with per-view factors.

torchvision's random transforms draw from the global RNG, so the random parameters are drawn here from a
``Uniforms`` stream (one ``torch.Generator``) and applied with ``torchvision.transforms.v2.functional`` or with
the vectorised colour operations below. The colour operations follow torchvision's definitions
(``F.adjust_brightness``/``contrast``/``saturation``/``hue`` and ``rgb_to_grayscale`` on float images) but take
a factor per view, so the views of one sample share one call per operation.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torchvision.transforms.v2 import functional as F

from multiview.views.base import Uniforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale.
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
_JITTER_OPS = ("brightness", "contrast", "saturation", "hue")

Box = tuple[int, int, int, int]  # (top, left, height, width) in source pixels


# -- geometry ---------------------------------------------------------------------------------------------
def sample_crop_box(
    u: Uniforms, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> Box:
    """RandomResizedCrop's box: area fraction in ``scale``, log-uniform aspect in ``ratio``, 10 tries, then
    a centre crop with the aspect clamped to ``ratio`` (torchvision's algorithm, drawn from ``u``)."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        a, b = u.take(2)
        target = area * (scale[0] + (scale[1] - scale[0]) * a)
        aspect = math.exp(log_lo + (log_hi - log_lo) * b)
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return u.randint(0, height - h + 1), u.randint(0, width - w + 1), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(img: torch.Tensor, box: Box, size: tuple[int, int]) -> torch.Tensor:
    """``img [C, H, W]`` uint8 -> ``[C, size]`` uint8, bicubic with antialias (as PIL's resize).

    Equal to ``F.resized_crop(img, *box, size, BICUBIC, antialias=True)`` (tested); calling torch's kernel
    directly skips torchvision's dispatch, a sizeable share of the cost at these image sizes.
    """
    top, left, h, w = box
    crop = img[None, :, top : top + h, left : left + w]
    return nnf.interpolate(crop, size=tuple(size), mode="bicubic", antialias=True, align_corners=False)[0]


def eval_crop(img: torch.Tensor, size: int, crop_fraction: float) -> tuple[torch.Tensor, Box]:
    """Deterministic evaluation view: resize the shorter side to ``size / crop_fraction``, centre-crop ``size``.

    Returns the uint8 ``[C, size, size]`` view and its box in source pixels.
    """
    _, height, width = img.shape
    side = min(height, width)
    crop = min(side, max(1, round(size * side / round(size / crop_fraction))))
    box = ((height - crop) // 2, (width - crop) // 2, crop, crop)
    return resized_crop(img, box, (size, size)), box


def translate_box(u: Uniforms | None, height: int, width: int, pad: int, p: float) -> Box:
    """CIFAR-style translation: a ``height x width`` window of the ``pad``-reflect-padded image, moved by up
    to +-``pad`` pixels with probability ``p`` (box in padded coordinates)."""
    if u is None or not u.bernoulli(p):
        return pad, pad, height, width
    return u.randint(0, 2 * pad + 1), u.randint(0, 2 * pad + 1), height, width


# -- colour -----------------------------------------------------------------------------------------------
# Channel mixes as matrices: one call each instead of one per channel (these tensors are tiny, so
# the count of calls, not arithmetic, sets the cost).
_GRAY_KERNEL = torch.tensor([GRAY_WEIGHTS])
_GRAY_COLUMN = _GRAY_KERNEL.T.contiguous()
# Rows: G - B, B - R, R - G: the hue numerator when R, G or B is the largest channel.
_HUE_DIFF_KERNEL = torch.tensor([[0.0, 1.0, -1.0], [-1.0, 0.0, 1.0], [1.0, -1.0, 0.0]])
# Added to each candidate hue numerator, times delta: the sextant where R, G or B is the largest.
_HUE_BASE = torch.tensor([0.0, 2.0, 4.0]).reshape(1, 3, 1, 1)
# Hue (in sextants, 6 H) at which each output channel R, G, B is at its minimum (cyan, magenta, yellow).
_HUE_TARGETS = torch.tensor([3.0, 5.0, 1.0]).reshape(1, 3, 1, 1)


def _like(const: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A constant in ``x``'s dtype (an attribute check: cheaper than a ``.to`` call, which dispatches)."""
    return const if const.dtype == x.dtype else const.to(x.dtype)


def _mix_channels(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``matrix [K, C] @ x [V, C, H, W]`` over channels -> ``[V, K, H, W]`` (one matmul; a 1x1 conv2d takes
    torch's slow im2col path here)."""
    v, c, h, w = x.shape
    return torch.matmul(_like(matrix, x), x.reshape(v, c, h * w)).reshape(v, -1, h, w)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """``[V, C, H, W]`` float -> luma ``[V, 1, H, W]`` (identity for C = 1)."""
    if x.shape[-3] == 1:
        return x
    return _mix_channels(_GRAY_KERNEL, x)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """``x [V, C, H, W]`` in [0, 1], ``factor [V, 1, 1, 1]`` >= 0: scale towards black.

    Like every colour op here, it overwrites ``x`` with the result and returns it: new tensors of a batch of
    views cost more (allocation, first touch of the pages) than the arithmetic. ``clamp=False`` is for callers
    that know every factor is <= 1 (the result then stays in [0, 1]), as for the two blends below.
    """
    x.mul_(factor)
    return x.clamp_(max=1.0) if clamp else x  # factor >= 0: no clamp at 0 needed


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Blend with the mean luma of each view: ``f x + (1 - f) mean``, clamped to [0, 1] (in place)."""
    v, c = x.shape[:2]
    mean = x.mean(dim=(-2, -1))  # [V, C]: the luma of the mean is the mean of the luma
    mean = mean if c == 1 else torch.matmul(mean, _like(_GRAY_COLUMN, x))
    x.mul_(factor).add_(mean.reshape(v, 1, 1, 1).mul_(1.0 - factor))
    return x.clamp_(0.0, 1.0) if clamp else x


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Blend with the per-pixel luma (in place; identity on one channel, as torchvision)."""
    if x.shape[-3] == 1:
        return x
    luma = grayscale(x)
    x.mul_(factor).add_(luma.mul_(1.0 - factor))
    return x.clamp_(0.0, 1.0) if clamp else x


def adjust_hue(x: torch.Tensor, shift: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Rotate the HSV hue of ``x [V, 3, H, W]`` by ``shift [V, 1, 1, 1]`` turns (in [-0.5, 0.5]), in place.

    RGB -> (H, S, V) -> RGB in closed form. With delta = max - min = V * S, the hue in sextants is
    h = (G - B) / delta, (B - R) / delta + 2 or (R - G) / delta + 4 when R, G or B is the largest channel.
    Tied largest channels give the same hue modulo 6, and the larger candidate is the right one where R
    and B tie (-1 vs 5), so h = the largest candidate among the largest channels. After the shift, channel
    c is V - delta * clamp(2 - dist(h, t_c), 0, 1), where dist is the distance on the circle of length 6 to
    the hue t_c = (3, 5, 1) at which channel c is smallest: 2 - dist = | |h - t_c| - 3 | - 1 for h in
    [0, 6). Only plain arithmetic: comparisons and ``where`` cost several times more on these small
    tensors. Same result as torchvision's ``adjust_hue`` (to float rounding). ``clamp`` is unused (the
    result is always in range); it keeps the signature of the other colour ops.
    """
    if x.shape[-3] == 1:
        return x
    maxc, minc = x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True)
    delta = minc.neg_().add_(maxc)  # max - min, in minc's buffer
    candidates = _mix_channels(_HUE_DIFF_KERNEL, x)  # G - B, B - R, R - G
    # x is not read after this point: its buffer holds the offsets, then the weights, then the result (new
    # tensors of a batch cost more than the arithmetic). Candidates lie in [-delta, 5 delta] once the sextant
    # base (0, 2, 4) delta is added; -10 delta more rules out the channels that are not the largest:
    # min(-(max - x) * 1e31, -10) is 0 for the largest channels and -10 for the others.
    offsets = torch.sub(maxc, x, out=x).mul_(-1e31).clamp_(min=-10.0).add_(_like(_HUE_BASE, x))
    h = candidates.addcmul_(offsets, delta).amax(dim=1, keepdim=True)
    h = h.div_(delta.clamp_min(1e-12)).add_(6.0 * shift)  # delta = 0: h = 0, grey stays grey
    h = h.sub_(h.mul(1.0 / 6.0).floor_(), alpha=6.0)  # into [0, 6); far cheaper than remainder
    # clamp(2 - dist, 0, 1) = clamp(| |h - t| - 3 |, 1, 2) - 1; the -1 is folded into the last line.
    weight = torch.sub(h, _like(_HUE_TARGETS, x), out=x).abs_().sub_(3.0).abs_().clamp_(1.0, 2.0)
    return torch.addcmul(maxc.add_(delta), weight, delta, value=-1.0, out=x)  # max - delta * (weight - 1)


_ADJUST = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
_IDENTITY = (1.0, 1.0, 1.0, 0.0)  # the factor that leaves a view unchanged, per op
_OP_COST = (2.0, 6.0, 4.0, 25.0)  # tensor calls per op: what merging the views' orders saves


@dataclass(frozen=True)
class Photometric:
    """The per-view colour recipe: ColorJitter(brightness, contrast, saturation, hue) with probability
    ``jitter_p`` (ops in random order, as torchvision), grayscale with ``gray_p``, Gaussian blur with
    ``blur_p`` (sigma uniform in ``sigma``), solarisation with ``solarize_p``."""

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    jitter_p: float = 0.0
    gray_p: float = 0.0
    blur_p: float = 0.0
    sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0


@dataclass
class ColourPlan:
    """The drawn colour parameters of one view."""

    jitter: list[tuple[int, float]]  # (op index into _JITTER_OPS, factor) in the order they apply
    gray: bool = False
    blur_sigma: float | None = None
    solarize: bool = False


def sample_colour_plan(u: Uniforms, recipe: Photometric) -> ColourPlan:
    """Draw one view's colour parameters (factors as torchvision's ColorJitter: uniform in [1 - s, 1 + s]).

    Always consumes 13 numbers, whatever is applied: jitter?, 4 order keys, 4 factors, gray?, blur?, sigma,
    solarise? -- so a recipe change does not shift the draws of the views after it.
    """
    r = u.take(13)
    jitter: list[tuple[int, float]] = []
    if r[0] < recipe.jitter_p:
        strengths = (recipe.brightness, recipe.contrast, recipe.saturation, recipe.hue)
        for i in sorted(range(4), key=r[1:5].__getitem__):  # a random order of the four ops
            s = strengths[i]
            if s > 0:
                low, high = (-s, s) if i == 3 else (max(0.0, 1.0 - s), 1.0 + s)
                jitter.append((i, low + (high - low) * r[5 + i]))
    blur = recipe.sigma[0] + (recipe.sigma[1] - recipe.sigma[0]) * r[11] if r[10] < recipe.blur_p else None
    return ColourPlan(jitter, r[9] < recipe.gray_p, blur, r[12] < recipe.solarize_p)


def merge_orders(plans: list[ColourPlan]) -> list[tuple[int, dict[int, float]]]:
    """One op sequence that contains every view's jitter order as a subsequence: ``[(op, {view: factor})]``.

    Views are merged one by one along a longest common subsequence weighted by each op's cost, so the
    expensive hue rotation runs once for all views whatever their orders (a shortest common
    supersequence, greedy over views). Views absent from an entry get the identity factor there.
    """
    merged: list[tuple[int, dict[int, float]]] = []
    for v, plan in enumerate(plans):
        seq = plan.jitter
        n, m = len(merged), len(seq)
        # best[i][j]: the largest cost of ops shared between merged[i:] and seq[j:].
        best = [[0.0] * (m + 1) for _ in range(n + 1)]
        for i in range(n - 1, -1, -1):
            for j in range(m - 1, -1, -1):
                share = _OP_COST[seq[j][0]] + best[i + 1][j + 1] if merged[i][0] == seq[j][0] else 0.0
                best[i][j] = max(best[i + 1][j], best[i][j + 1], share)
        out: list[tuple[int, dict[int, float]]] = []
        i = j = 0
        while i < n or j < m:
            if i < n and j < m and merged[i][0] == seq[j][0] and best[i][j] == _OP_COST[seq[j][0]] + best[i + 1][j + 1]:
                out.append((merged[i][0], {**merged[i][1], v: seq[j][1]}))
                i, j = i + 1, j + 1
            elif i < n and (j == m or best[i][j] == best[i + 1][j]):
                out.append(merged[i])
                i += 1
            else:
                out.append((seq[j][0], {v: seq[j][1]}))
                j += 1
        merged = out
    return merged


def _jitter_merged(x: torch.Tensor, plans: list[ColourPlan]) -> torch.Tensor:
    """Few views: every step of ``merge_orders`` runs once on all views (identity factors elsewhere)."""
    steps = merge_orders(plans)
    if not steps:
        return x
    n_views = x.shape[0]
    table = [[factors.get(v, _IDENTITY[op]) for v in range(n_views)] for op, factors in steps]
    all_factors = torch.tensor(table, dtype=x.dtype).reshape(len(steps), n_views, 1, 1, 1)
    for (op, by_view), factors in zip(steps, all_factors):
        x = _ADJUST[op](x, factors, max(by_view.values()) > 1.0)  # blends with factors <= 1 stay in [0, 1]
    return x


def _jitter_grouped(x: torch.Tensor, plans: list[ColourPlan]) -> torch.Tensor:
    """Many views (a batch of samples): at each step, each op runs once on the views doing it at that step.

    Before each step the rows are reordered (one gather) so that the views doing the same op are a contiguous
    run, which each op then overwrites in place as a slice; the original order is restored at the end. One
    gather per step replaced a gather and a scatter per (step, op) group, which cost more than the ops.
    """
    n_views, n_steps = x.shape[0], max((len(p.jitter) for p in plans), default=0)
    rows = list(range(n_views))  # rows[r]: the view now stored in row r of x
    for step in range(n_steps):

        def op_at(view: int, step: int = step) -> int:  # 4 = no jitter op at this step
            jitter = plans[view].jitter
            return jitter[step][0] if step < len(jitter) else len(_JITTER_OPS)

        ordered = sorted(range(n_views), key=lambda r: op_at(rows[r]))
        if ordered != list(range(n_views)):
            x, rows = x[torch.tensor(ordered)], [rows[r] for r in ordered]
        start = 0
        for op, run in itertools.groupby(rows, key=op_at):
            views = list(run)
            end = start + len(views)
            if op < len(_JITTER_OPS):
                factors = [plans[v].jitter[step][1] for v in views]
                f = torch.tensor(factors, dtype=x.dtype).reshape(-1, 1, 1, 1)
                _ADJUST[op](x[start:end], f, max(factors) > 1.0)  # in place, into this run's rows of x
            start = end
    if rows != list(range(n_views)):
        x = x[torch.tensor(sorted(range(n_views), key=rows.__getitem__))]  # row r of the result holds view r
    return x


def colour_jitter(x: torch.Tensor, plans: list[ColourPlan]) -> torch.Tensor:
    """Apply each view's jitter ops in its own random order to ``x [V, C, H, W]``, batched over views.
    ``x`` is consumed (it may be overwritten in place): pass a tensor of your own.

    Up to 4 views (one sample) run the merged order (``merge_orders``): fewest tensor calls. More views (a
    batch of samples) run each (step, op) on the views that need it: no wasted arithmetic.
    """
    return _jitter_merged(x, plans) if len(plans) <= 4 else _jitter_grouped(x, plans)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur ``[C, H, W]`` float with a kernel of 2 * ceil(3 sigma) + 1 taps (capped below the image size)."""
    limit = 2 * ((min(x.shape[-2:]) - 1) // 2) + 1
    k = min(2 * math.ceil(3 * sigma) + 1, limit)
    return F.gaussian_blur(x, [k, k], [sigma, sigma]) if k > 1 else x


def apply_colour(x: torch.Tensor, plans: list[ColourPlan]) -> torch.Tensor:
    """``x [V, C, H, W]`` float in [0, 1] -> the same after each view's jitter, grayscale, blur, solarise.
    ``x`` is consumed (overwritten in place where that saves a copy)."""
    x = colour_jitter(x, plans)
    gray = [v for v, p in enumerate(plans) if p.gray]
    if gray and x.shape[1] > 1:  # the luma of the chosen views only, written over all their channels
        index = torch.tensor(gray)
        x.index_copy_(0, index, grayscale(x.index_select(0, index)).expand(-1, x.shape[1], -1, -1))
    if any(p.blur_sigma is not None for p in plans):
        x = torch.stack(
            [x[v] if p.blur_sigma is None else gaussian_blur(x[v], p.blur_sigma) for v, p in enumerate(plans)]
        )
    solar = [p.solarize for p in plans]
    if any(solar):
        mask = torch.tensor(solar).reshape(-1, 1, 1, 1)
        x = torch.where(mask & (x >= 0.5), 1.0 - x, x)
    return x
