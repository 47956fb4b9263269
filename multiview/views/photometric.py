"""Seeded crop and colour primitives on uint8 / float image tensors, batched over views with per-view factors.

torchvision's random transforms draw from the global RNG, so the random parameters are drawn here from a
``Uniforms`` stream (one ``torch.Generator``) and applied with ``torchvision.transforms.v2.functional`` or with
the vectorised colour operations below. The colour operations follow torchvision's definitions
(``F.adjust_brightness``/``contrast``/``saturation``/``hue`` and ``rgb_to_grayscale`` on float images) but take
a factor per view, so the views of one sample share one call per operation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from multiview.views.base import Uniforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale.
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
# Offsets n of the HSV -> RGB formula f(n) = V - V*S*clamp(min(k, 4 - k), 0, 1), k = (n + H/60) mod 6.
_HUE_OFFSETS = torch.tensor([5.0, 3.0, 1.0]).reshape(1, 3, 1, 1)
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
        target = area * u.uniform(*scale)
        aspect = math.exp(u.uniform(log_lo, log_hi))
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
    """``img [C, H, W]`` uint8 -> ``[C, size]`` uint8, bicubic with antialias (as PIL's resize)."""
    top, left, h, w = box
    return F.resized_crop(img, top, left, h, w, list(size), InterpolationMode.BICUBIC, antialias=True)


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
def grayscale(x: torch.Tensor) -> torch.Tensor:
    """``[V, C, H, W]`` float -> luma ``[V, 1, H, W]`` (identity for C = 1)."""
    if x.shape[-3] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return r * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + b * GRAY_WEIGHTS[2]


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``x [V, C, H, W]`` in [0, 1], ``factor [V, 1, 1, 1]``: scale towards black."""
    return (x * factor).clamp_(0.0, 1.0)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (other + factor * (x - other)).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the mean luma of each view."""
    return _blend(x, grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the per-pixel luma (identity on one channel, as torchvision)."""
    if x.shape[-3] == 1:
        return x
    return _blend(x, grayscale(x), factor)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of ``x [V, 3, H, W]`` by ``shift [V, 1, 1, 1]`` turns (in [-0.5, 0.5]).

    RGB -> (H, S, V) -> RGB, with the closed form f(n) = V - delta * clamp(min(k, 4 - k), 0, 1),
    k = (n + 6 H) mod 6, n = 5, 3, 1 for R, G, B, where delta = max - min = V * S. Same result as
    torchvision's ``adjust_hue`` on float images, in about 20 vectorised operations.
    """
    if x.shape[-3] == 1:
        return x
    maxc, minc = x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True)
    delta = maxc - minc
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    # Hue in sextants (6 H), before the modulo; ties go to R, then G, as in torchvision.
    numerator = torch.where(maxc == r, g - b, torch.where(maxc == g, b - r + 2 * delta, r - g + 4 * delta))
    h6 = numerator / torch.where(delta > 0, delta, torch.ones_like(delta))
    k = torch.remainder(_HUE_OFFSETS + (h6 + 6.0 * shift), 6.0)
    weight = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return maxc - delta * weight


_ADJUST = {
    "brightness": adjust_brightness,
    "contrast": adjust_contrast,
    "saturation": adjust_saturation,
    "hue": adjust_hue,
}


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

    jitter: list[tuple[str, float]]  # (op, factor) in the order they apply
    gray: bool = False
    blur_sigma: float | None = None
    solarize: bool = False


def sample_colour_plan(u: Uniforms, recipe: Photometric) -> ColourPlan:
    """Draw one view's colour parameters (factors as torchvision's ColorJitter: uniform in [1 - s, 1 + s])."""
    jitter: list[tuple[str, float]] = []
    if recipe.jitter_p > 0 and u.bernoulli(recipe.jitter_p):
        strengths = (recipe.brightness, recipe.contrast, recipe.saturation, recipe.hue)
        for i in u.permutation(4):
            s = strengths[i]
            if s > 0:
                factor = u.uniform(-s, s) if i == 3 else u.uniform(max(0.0, 1.0 - s), 1.0 + s)
                jitter.append((_JITTER_OPS[i], factor))
    gray = recipe.gray_p > 0 and u.bernoulli(recipe.gray_p)
    blur = u.uniform(*recipe.sigma) if recipe.blur_p > 0 and u.bernoulli(recipe.blur_p) else None
    solarize = recipe.solarize_p > 0 and u.bernoulli(recipe.solarize_p)
    return ColourPlan(jitter, gray, blur, solarize)


def colour_jitter(x: torch.Tensor, plans: list[ColourPlan]) -> torch.Tensor:
    """Apply each view's jitter ops in its own order; views doing the same op at a step share one call."""
    n_views = x.shape[0]
    for step in range(max((len(p.jitter) for p in plans), default=0)):
        groups: dict[str, list[tuple[int, float]]] = {}
        for v, plan in enumerate(plans):
            if step < len(plan.jitter):
                op, factor = plan.jitter[step]
                groups.setdefault(op, []).append((v, factor))
        for op, members in groups.items():
            idx = [v for v, _ in members]
            factors = torch.tensor([f for _, f in members], dtype=x.dtype).reshape(-1, 1, 1, 1)
            if len(idx) == n_views:
                x = _ADJUST[op](x, factors)
            else:
                x[idx] = _ADJUST[op](x[idx], factors)  # x is the caller's fresh stack: safe in place
    return x


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur ``[C, H, W]`` float with a kernel of 2 * ceil(3 sigma) + 1 taps (capped below the image size)."""
    limit = 2 * ((min(x.shape[-2:]) - 1) // 2) + 1
    k = min(2 * math.ceil(3 * sigma) + 1, limit)
    return F.gaussian_blur(x, [k, k], [sigma, sigma]) if k > 1 else x


def apply_colour(x: torch.Tensor, plans: list[ColourPlan]) -> torch.Tensor:
    """``x [V, C, H, W]`` float in [0, 1] -> the same after each view's jitter, grayscale, blur, solarise."""
    x = colour_jitter(x, plans)
    gray = [p.gray for p in plans]
    if any(gray) and x.shape[1] > 1:
        mask = torch.tensor(gray).reshape(-1, 1, 1, 1)
        x = torch.where(mask, grayscale(x).expand_as(x), x)
    if any(p.blur_sigma is not None for p in plans):
        x = torch.stack(
            [x[v] if p.blur_sigma is None else gaussian_blur(x[v], p.blur_sigma) for v, p in enumerate(plans)]
        )
    solar = [p.solarize for p in plans]
    if any(solar):
        mask = torch.tensor(solar).reshape(-1, 1, 1, 1)
        x = torch.where(mask & (x >= 0.5), 1.0 - x, x)
    return x
