"""Image view generators: ``amdim``, ``simclr``, ``multicrop`` and ``colorsplit`` (CMC).

Each works on uint8 ``[C, H, W]`` tensors (PIL images and uint8 numpy arrays are converted at the edge) and
emits float32 normalised ``[C, size, size]`` views (uint8 with ``normalize=False``; raw colour coordinates for
``colorsplit``). lightly's transforms draw from the global RNG, so they cannot give seeded, shared randomness;
``simclr`` and ``multicrop`` therefore keep lightly's default parameters (SimCLRTransform, DINOTransform) and
draw everything from the sample's ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from multiview.views.base import (
    META,
    Uniforms,
    ViewGenerator,
    check_positive,
    check_probability,
    check_range,
    describe_sample,
    get_field,
    register,
)
from multiview.views.photometric import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Box,
    ColourPlan,
    Photometric,
    apply_colour,
    eval_crop,
    resized_crop,
    sample_colour_plan,
    sample_crop_box,
    translate_box,
)


# -- input ------------------------------------------------------------------------------------------------
def to_uint8_image(value: Any, *, where: str = "image") -> torch.Tensor:
    """A uint8 ``[C, H, W]`` tensor from a tensor (``[C, H, W]`` or ``[H, W]``), a PIL image or a numpy array
    (``[H, W]`` or ``[H, W, C]``); ValueError naming ``where`` otherwise."""
    if hasattr(value, "mode") and hasattr(value, "convert"):  # PIL, without importing it
        if value.mode not in ("L", "RGB"):
            value = value.convert("RGB")
        return F.pil_to_tensor(value)
    if isinstance(value, np.ndarray):
        if value.dtype != np.uint8 or value.ndim not in (2, 3):
            raise ValueError(f"{where}: expected a uint8 array [H, W] or [H, W, C], got {value.dtype} {value.shape}")
        t = torch.from_numpy(np.ascontiguousarray(value))
        return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{where}: expected a uint8 tensor [C, H, W] or a PIL image, got {type(value).__name__}")
    if value.dtype != torch.uint8:
        raise ValueError(f"{where}: expected dtype torch.uint8, got {value.dtype} (convert floats to uint8 first)")
    if value.ndim == 2:
        return value.unsqueeze(0)
    if value.ndim != 3:
        raise ValueError(f"{where}: expected rank 3 [C, H, W], got rank {value.ndim} with shape {tuple(value.shape)}")
    return value


def channel_stats(values: Sequence[float] | None, default: Sequence[float], channels: int, name: str) -> torch.Tensor:
    """Per-channel mean or std as ``[C, 1, 1]``; a 3-value default collapses to its mean for one channel."""
    if values is None:
        values = default if channels == 3 else [sum(default) / len(default)] * channels
    values = [float(v) for v in values]
    if len(values) != channels:
        raise ValueError(f"{name} has {len(values)} values, expected {channels} (one per image channel)")
    return torch.tensor(values).reshape(channels, 1, 1)


@dataclass(frozen=True)
class CropSpec:
    """How one view is cut: output ``size``, RandomResizedCrop ``scale``/``ratio``, colour recipe, flip."""

    size: int
    scale: tuple[float, float]
    ratio: tuple[float, float]
    colour: Photometric
    flip_p: float = 0.5


class ImageViews(ViewGenerator):
    """Shared machinery of the image generators: field lookup, channel checks, normalisation.

    Args:
        field: the sample field holding the image.
        normalize: float32 views normalised by ``mean``/``std`` when True; uint8 views when False.
        mean, std: per-channel statistics (default ImageNet's; their average for one channel).
        channels: the channel count views must have: ``None`` keeps the input's (1 or 3); 3 also accepts
            grey input and repeats it.
    """

    modality = "image"
    expand_grey = True  # channels=3 accepts grey input by repeating it

    def __init__(
        self,
        *,
        field: str = "image",
        normalize: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        channels: int | None = None,
        seed: int = 0,
        train: bool = True,
    ):
        super().__init__(seed=seed, train=train)
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
        self.field = field
        self.normalize = bool(normalize)
        self.channels = channels
        self._mean_std = {
            c: (channel_stats(mean, IMAGENET_MEAN, c, "mean"), channel_stats(std, IMAGENET_STD, c, "std"))
            for c in ((channels,) if channels else (1, 3))
        }

    def load(self, sample: Any) -> torch.Tensor:
        """The sample's image as uint8 ``[C, H, W]`` with C as configured."""
        img = to_uint8_image(get_field(sample, self.field), where=f"{describe_sample(sample)} field {self.field!r}")
        c = img.shape[0]
        if self.channels == 3 and c == 1 and self.expand_grey:
            return img.expand(3, -1, -1)
        if c != (self.channels or c) or c not in (1, 3):
            expected = self.channels or "1 or 3"
            raise ValueError(
                f"{describe_sample(sample)} field {self.field!r}: expected {expected} channels, got {c} "
                f"(shape {tuple(img.shape)})"
            )
        return img

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """``x [V, C, H, W]`` float in [0, 1] -> normalised float32, or uint8 when ``normalize=False``."""
        if not self.normalize:
            return x.mul(255.0).round_().to(torch.uint8)
        mean, std = self._mean_std[x.shape[1]]
        return x.sub_(mean).div_(std)


# -- the crop engine shared by amdim, simclr and multicrop ---------------------------------------------------
@dataclass
class DrawnView:
    """One view's random draw: its uint8 crop ``[C, size, size]``, flip, colour plan and box."""

    crop: torch.Tensor
    flip: bool
    plan: ColourPlan
    box: Box


def draw_crops(
    img: torch.Tensor,
    specs: Sequence[CropSpec],
    u: Uniforms,
    *,
    shared_flip_p: float | None = None,
    boxes: Sequence[Box] | None = None,
) -> list[DrawnView]:
    """Draw and cut ``len(specs)`` views of ``img [C, H, W]`` uint8 (colour is applied by ``finish_crops``).

    ``shared_flip_p``: one flip drawn for all views (AMDIM, CMC) instead of one per view. ``boxes`` replaces
    the RandomResizedCrop draw (translation crops).
    """
    _, height, width = img.shape
    shared = u.bernoulli(shared_flip_p) if shared_flip_p is not None else None
    drawn = []
    for i, spec in enumerate(specs):
        flip = shared if shared is not None else u.bernoulli(spec.flip_p)
        box = boxes[i] if boxes is not None else sample_crop_box(u, height, width, spec.scale, spec.ratio)
        plan = sample_colour_plan(u, spec.colour)
        if box[2:] == (spec.size, spec.size):  # translation crops need no resampling
            crop = img[:, box[0] : box[0] + box[2], box[1] : box[1] + box[3]]
        else:
            crop = resized_crop(img, box, (spec.size, spec.size))
        drawn.append(DrawnView(crop, flip, plan, box))
    return drawn


def finish_crops(gen: ImageViews, drawn: Sequence[DrawnView]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Flip, colour and normalise drawn views; views of equal size share each tensor operation.

    Returns the views ``[C, size, size]`` and their metadata: ``box`` = (top, left, height, width) in source
    pixels (a tuple of ints), ``flip`` (bool).
    """
    metas = [{"box": d.box, "flip": d.flip} for d in drawn]
    views: list[torch.Tensor] = [torch.empty(0)] * len(drawn)
    for size in dict.fromkeys(d.crop.shape[-1] for d in drawn):
        idx = [i for i, d in enumerate(drawn) if d.crop.shape[-1] == size]
        # Flip the small uint8 crops: every colour op is per pixel or uses the image mean, so it commutes with
        # the flip, and a masked flip of the float batch cost several full-batch copies.
        crops = [drawn[i].crop.flip(-1) if drawn[i].flip else drawn[i].crop for i in idx]
        x = apply_colour(torch.stack(crops).float().div_(255.0), [drawn[i].plan for i in idx])
        for i, view in zip(idx, gen.finish(x)):
            views[i] = view
    return views, metas


def render_crops(gen: ImageViews, img: torch.Tensor, specs: Sequence[CropSpec], u: Uniforms, **kwargs: Any):
    """``draw_crops`` then ``finish_crops``: the views of one sample."""
    return finish_crops(gen, draw_crops(img, specs, u, **kwargs))


def _eval_views(gen: ImageViews, img: torch.Tensor, sizes: Sequence[int], crop_fraction: float):
    """Deterministic views: one centre crop per distinct size, shared by views of that size."""
    cache: dict[int, tuple[torch.Tensor, Box]] = {}
    for size in sizes:
        if size not in cache:
            view, box = eval_crop(img, size, crop_fraction)
            cache[size] = (gen.finish(view.unsqueeze(0).float().div_(255.0))[0], box)
    return [cache[s][0] for s in sizes], [{"box": cache[s][1], "flip": False} for s in sizes]


def _pack(names: Sequence[str], views: Sequence[torch.Tensor], metas: Sequence[dict]) -> dict[str, Any]:
    out: dict[str, Any] = dict(zip(names, views))
    out[META] = dict(zip(names, metas))
    return out


def _jitter_strengths(value: Sequence[float]) -> tuple[float, float, float, float]:
    b, c, s, h = (float(v) for v in value)
    if min(b, c, s) < 0 or not 0 <= h <= 0.5:
        raise ValueError(f"jitter must be (brightness, contrast, saturation >= 0, hue in [0, 0.5]), got {value!r}")
    return b, c, s, h


@dataclass(frozen=True)
class CropRecipe:
    """The crop and colour parameters amdim, simclr, multicrop and colorsplit share, validated in one place
    (ValueError naming the argument and the value seen); :meth:`spec` builds a view's :class:`CropSpec`.

    Args:
        ratio: RandomResizedCrop aspect-ratio range (the scale range is per spec: multicrop has two).
        flip_p: horizontal flip probability.
        jitter: ColorJitter (brightness, contrast, saturation >= 0, hue in [0, 0.5]), applied with ``jitter_p``.
        gray_p: grayscale probability; ``sigma`` the Gaussian blur's range (its probability is per spec).
        eval_crop_fraction: evaluation views resize the shorter side to ``size / fraction`` and centre-crop.
    """

    ratio: Sequence[float]
    flip_p: float = 0.5
    jitter: Sequence[float] = (0.0, 0.0, 0.0, 0.0)
    jitter_p: float = 0.0
    gray_p: float = 0.0
    sigma: Sequence[float] = (0.1, 2.0)
    eval_crop_fraction: float = 0.875

    def __post_init__(self) -> None:
        for name in ("flip_p", "jitter_p", "gray_p"):
            check_probability(name, getattr(self, name))
        check_range("eval_crop_fraction", (self.eval_crop_fraction, 1.0), low=1e-3, high=1.0)
        object.__setattr__(self, "jitter", _jitter_strengths(self.jitter))
        object.__setattr__(self, "sigma", check_range("sigma", self.sigma, low=1e-3))
        object.__setattr__(self, "ratio", check_range("ratio", self.ratio, low=1e-3))

    def colour(self, blur_p: float = 0.0, solarize_p: float = 0.0) -> Photometric:
        """The per-view colour recipe: this jitter and grayscale, with a blur and solarisation probability."""
        return Photometric(*self.jitter, self.jitter_p, self.gray_p, blur_p, self.sigma, solarize_p)

    def spec(self, size: int, scale: Sequence[float], blur_p: float = 0.0, solarize_p: float = 0.0) -> CropSpec:
        """One view's CropSpec: ``size`` px, RandomResizedCrop ``scale`` (checked in [0, 1]), this recipe."""
        scale = check_range("scale", scale, low=0.0, high=1.0)
        return CropSpec(size, scale, self.ratio, self.colour(blur_p, solarize_p), self.flip_p)


class CropViews(ImageViews):
    """Base of the generators built on the crop engine (amdim, simclr, multicrop): subclasses give
    ``draw(img, generator) -> [DrawnView]`` and ``eval_views(img) -> (views, metas)``; this class adds
    ``generate`` and a batched ``batch`` (same views as one call per sample, one tensor op per step for
    the whole batch)."""

    def draw(self, img: torch.Tensor, generator: torch.Generator) -> list[DrawnView]:
        raise NotImplementedError

    def eval_views(self, img: torch.Tensor) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
        raise NotImplementedError

    def generate(self, sample: Any, generator: torch.Generator) -> dict[str, Any]:
        img = self.load(sample)
        if not self.train:
            return _pack(self.view_names, *self.eval_views(img))
        return _pack(self.view_names, *finish_crops(self, self.draw(img, generator)))

    # Samples whose views share each colour op in ``batch``: chunks of 32 samples (2 views at 64 px: 3 MB of
    # float32, in a 2 MB-L2 core's reach) ran faster than 16 or 64 (benchmarks/views.py on this project's CPUs).
    batch_chunk = 32

    def batch(self, samples: Sequence[Any], *, generators: Sequence[torch.Generator] | None = None) -> list[dict]:
        if not self.train:
            return super().batch(samples, generators=generators)
        generators = self._generators(samples, generators)
        out: list[dict] = []
        for start in range(0, len(samples), self.batch_chunk):
            chunk = zip(samples[start : start + self.batch_chunk], generators[start : start + self.batch_chunk])
            drawn = [self.draw(self.load(s), g) for s, g in chunk]
            views, metas = finish_crops(self, [d for ds in drawn for d in ds])
            n = len(self.view_names)
            out += [_pack(self.view_names, views[i : i + n], metas[i : i + n]) for i in range(0, len(views), n)]
        return out


# -- amdim ------------------------------------------------------------------------------------------------
@register("amdim")
class AMDIMViews(CropViews):
    """AMDIM's views (Bachman et al. 2019): one horizontal flip shared by all views, then per view a
    RandomResizedCrop (scale 0.3-1, ratio 0.7-1.4, bicubic) -- or, with ``crop="translate"``, the CIFAR
    recipe: a +-4 px translation with reflection padding, with probability 0.8 -- then ColorJitter(0.4, 0.4,
    0.4, 0.2) with p 0.8, grayscale with p 0.25 and normalisation.

    Args:
        size: output side (64 for STL-10, 128 for ImageNet); ``None`` in translate mode keeps the input size.
        n_views: how many views (``view0`` ...).
        crop: ``"resized"`` (RandomResizedCrop) or ``"translate"`` (CIFAR).
        eval_crop_fraction: evaluation views resize the shorter side to ``size / fraction`` and centre-crop.
        See ``ImageViews`` for ``field``, ``normalize``, ``mean``, ``std``, ``channels``.

    Examples:
        >>> gen = AMDIMViews(size=32, n_views=2)
        >>> views = gen(torch.zeros(3, 48, 48, dtype=torch.uint8), generator=torch.Generator().manual_seed(0))
        >>> views["view0"].shape, views["__meta__"]["view0"]["flip"] == views["__meta__"]["view1"]["flip"]
        (torch.Size([3, 32, 32]), True)
    """

    def __init__(
        self,
        size: int | None = 64,
        n_views: int = 2,
        *,
        crop: str = "resized",
        scale: Sequence[float] = (0.3, 1.0),
        ratio: Sequence[float] = (0.7, 1.4),
        translate_pad: int = 4,
        translate_p: float = 0.8,
        flip_p: float = 0.5,
        jitter: Sequence[float] = (0.4, 0.4, 0.4, 0.2),
        jitter_p: float = 0.8,
        gray_p: float = 0.25,
        eval_crop_fraction: float = 0.875,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if crop not in ("resized", "translate"):
            raise ValueError(f"crop must be 'resized' or 'translate', got {crop!r}")
        if size is None and crop == "resized":
            raise ValueError("size=None is only allowed with crop='translate'; got crop='resized'")
        if size is not None:
            check_positive("size", size, integer=True)
        check_positive("n_views", n_views, integer=True)
        check_positive("translate_pad", translate_pad, integer=True, allow_zero=True)
        check_probability("translate_p", translate_p)
        recipe = CropRecipe(ratio, flip_p, jitter, jitter_p, gray_p, eval_crop_fraction=eval_crop_fraction)
        self.size, self.n_views, self.crop = size, n_views, crop
        self.scale = check_range("scale", scale, low=0.0, high=1.0)
        self.ratio, self.colour = recipe.ratio, recipe.colour()  # the flip is drawn once for all views
        self.translate = (translate_pad, translate_p)
        self.flip_p, self.eval_crop_fraction = flip_p, eval_crop_fraction

    @property
    def view_names(self) -> tuple[str, ...]:
        return tuple(f"view{i}" for i in range(self.n_views))

    def _size(self, img: torch.Tensor) -> int:
        if self.crop == "translate" and self.size is None and img.shape[-1] != img.shape[-2]:
            raise ValueError(f"translate mode with size=None needs a square image, got {tuple(img.shape)}")
        return self.size or img.shape[-1]

    def eval_views(self, img: torch.Tensor):
        # CIFAR evaluation sees the whole image; resized-crop evaluation a centre crop.
        fraction = 1.0 if self.crop == "translate" else self.eval_crop_fraction
        return _eval_views(self, img, [self._size(img)] * self.n_views, fraction)

    def draw(self, img: torch.Tensor, generator: torch.Generator) -> list[DrawnView]:
        u = Uniforms(generator)
        spec = CropSpec(self._size(img), self.scale, self.ratio, self.colour)
        boxes = None
        if self.crop == "translate":
            pad, p = self.translate
            boxes = [translate_box(u, img.shape[1], img.shape[2], pad, p) for _ in range(self.n_views)]
            img = F.pad(img, [pad] * 4, padding_mode="reflect") if pad else img
        return draw_crops(img, [spec] * self.n_views, u, shared_flip_p=self.flip_p, boxes=boxes)


# -- simclr and multicrop ---------------------------------------------------------------------------------
@register("simclr")
class SimCLRViews(CropViews):
    """SimCLR's views (Chen et al. 2020), with lightly's ``SimCLRTransform`` defaults: RandomResizedCrop
    (scale 0.08-1, ratio 3/4-4/3), a flip per view, ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s) with p 0.8
    (s = ``jitter_strength``), grayscale p 0.2, Gaussian blur p 0.5 (sigma 0.1-2), normalisation.

    Examples:
        >>> views = SimCLRViews(size=32)(torch.zeros(3, 40, 40, dtype=torch.uint8))
        >>> sorted(views)
        ['__meta__', 'view0', 'view1']
    """

    def __init__(
        self,
        size: int = 224,
        n_views: int = 2,
        *,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        jitter_strength: float = 1.0,
        jitter: Sequence[float] = (0.8, 0.8, 0.8, 0.2),
        jitter_p: float = 0.8,
        gray_p: float = 0.2,
        blur_p: float = 0.5,
        sigma: Sequence[float] = (0.1, 2.0),
        eval_crop_fraction: float = 0.875,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        check_positive("size", size, integer=True)
        check_positive("n_views", n_views, integer=True)
        check_positive("jitter_strength", jitter_strength, allow_zero=True)
        check_probability("blur_p", blur_p)
        jitter = [v * jitter_strength for v in jitter]
        recipe = CropRecipe(ratio, flip_p, jitter, jitter_p, gray_p, sigma, eval_crop_fraction)
        self.spec = recipe.spec(size, scale, blur_p)
        self.n_views, self.eval_crop_fraction = n_views, eval_crop_fraction

    @property
    def view_names(self) -> tuple[str, ...]:
        return tuple(f"view{i}" for i in range(self.n_views))

    def eval_views(self, img: torch.Tensor):
        return _eval_views(self, img, [self.spec.size] * self.n_views, self.eval_crop_fraction)

    def draw(self, img: torch.Tensor, generator: torch.Generator) -> list[DrawnView]:
        return draw_crops(img, [self.spec] * self.n_views, Uniforms(generator))


@register("multicrop")
class MultiCropViews(CropViews):
    """Multi-crop views (SwAV / DINO): ``n_global`` large crops and ``n_local`` small ones, with lightly's
    ``DINOTransform`` defaults: global 224 px (scale 0.4-1), local 96 px (scale 0.05-0.4), flip per view,
    ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8, grayscale p 0.2, blur p 1.0 / 0.1 on the two global views and 0.5
    on the local ones, solarisation p 0.2 on the second global view.

    Views are named ``global0 ..`` then ``local0 ..``.
    """

    def __init__(
        self,
        n_global: int = 2,
        n_local: int = 6,
        *,
        global_size: int = 224,
        local_size: int = 96,
        global_scale: Sequence[float] = (0.4, 1.0),
        local_scale: Sequence[float] = (0.05, 0.4),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        jitter: Sequence[float] = (0.4, 0.4, 0.2, 0.1),
        jitter_p: float = 0.8,
        gray_p: float = 0.2,
        blur_p: Sequence[float] = (1.0, 0.1, 0.5),
        sigma: Sequence[float] = (0.1, 2.0),
        solarize_p: float = 0.2,
        eval_crop_fraction: float = 0.875,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        check_positive("n_global", n_global, integer=True)
        check_positive("n_local", n_local, integer=True, allow_zero=True)
        check_positive("global_size", global_size, integer=True)
        check_positive("local_size", local_size, integer=True)
        if len(blur_p) != 3:
            raise ValueError(f"blur_p must be (first global, other globals, locals), got {blur_p!r}")
        for name, p in (("solarize_p", solarize_p), *(("blur_p", b) for b in blur_p)):
            check_probability(name, p)
        recipe = CropRecipe(ratio, flip_p, jitter, jitter_p, gray_p, sigma, eval_crop_fraction)
        self.specs = [
            recipe.spec(global_size, global_scale, blur_p[min(i, 1)], solarize_p if i == 1 else 0.0)
            for i in range(n_global)
        ]
        self.specs += [recipe.spec(local_size, local_scale, blur_p[2]) for _ in range(n_local)]
        self.n_global, self.n_local, self.eval_crop_fraction = n_global, n_local, eval_crop_fraction

    @property
    def view_names(self) -> tuple[str, ...]:
        return tuple(f"global{i}" for i in range(self.n_global)) + tuple(f"local{i}" for i in range(self.n_local))

    def eval_views(self, img: torch.Tensor):
        return _eval_views(self, img, [s.size for s in self.specs], self.eval_crop_fraction)

    def draw(self, img: torch.Tensor, generator: torch.Generator) -> list[DrawnView]:
        return draw_crops(img, self.specs, Uniforms(generator))


# -- colorsplit (CMC) -------------------------------------------------------------------------------------
# sRGB (D65) -> XYZ, and the D65 white point.
_RGB_TO_XYZ = torch.tensor(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883]).reshape(3, 1, 1)
_DELTA = 6.0 / 29.0
# Full-range ITU-R BT.601 YCbCr (JPEG), on [0, 255] values.
_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCBCR_OFFSET = torch.tensor([0.0, 128.0, 128.0]).reshape(3, 1, 1)


def _mix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 colour matrix to ``x [..., 3, H, W]``."""
    return torch.einsum("ij,...jhw->...ihw", matrix, x)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB ``[..., 3, H, W]`` in [0, 1] -> CIE Lab (D65): L in [0, 100], a and b in about [-110, 110]."""
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    t = _mix(_RGB_TO_XYZ, linear) / _WHITE
    f = torch.where(t > _DELTA**3, t.clamp(min=1e-12) ** (1.0 / 3.0), t / (3 * _DELTA**2) + 4.0 / 29.0)
    fx, fy, fz = f[..., 0:1, :, :], f[..., 1:2, :, :], f[..., 2:3, :, :]
    return torch.cat([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """The inverse of ``rgb_to_lab`` (clamped to [0, 1])."""
    fy = (lab[..., 0:1, :, :] + 16.0) / 116.0
    f = torch.cat([fy + lab[..., 1:2, :, :] / 500.0, fy, fy - lab[..., 2:3, :, :] / 200.0], dim=-3)
    t = torch.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4.0 / 29.0)) * _WHITE
    linear = _mix(torch.linalg.inv(_RGB_TO_XYZ), t).clamp(0.0, 1.0)
    return torch.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055).clamp(0.0, 1.0)


def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """RGB ``[..., 3, H, W]`` in [0, 1] -> full-range YCbCr in [0, 255]."""
    return _mix(_RGB_TO_YCBCR, rgb * 255.0) + _YCBCR_OFFSET


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """The inverse of ``rgb_to_ycbcr`` (clamped to [0, 1])."""
    return (_mix(torch.linalg.inv(_RGB_TO_YCBCR), ycbcr - _YCBCR_OFFSET) / 255.0).clamp(0.0, 1.0)


# Per colour space: converter, the two view names, and (offset, scale) mapping each channel to about [-1, 1].
_SPACES = {
    "lab": (rgb_to_lab, ("L", "ab"), ([50.0, 0.0, 0.0], [50.0, 110.0, 110.0])),
    "ycbcr": (rgb_to_ycbcr, ("Y", "CbCr"), ([127.5, 128.0, 128.0], [127.5, 127.5, 127.5])),
}


@register("colorsplit")
class ColorSplitViews(ImageViews):
    """CMC's co-registered colour split (Tian et al. 2019): ONE RandomResizedCrop and ONE flip shared by both
    views, then the crop is converted to Lab (views ``L`` [1, H, W] and ``ab`` [2, H, W]) or YCbCr (``Y`` and
    ``CbCr``). No colour jitter: it would break the co-registration of the channels.

    With ``normalize=True`` each channel is mapped to about [-1, 1] (L / 50 - 1, ab / 110; YCbCr (v - 128) /
    127.5); with ``normalize=False`` the raw coordinates come out as float32 (L in [0, 100], ab in about
    [-110, 110]; YCbCr in [0, 255]).

    Args:
        space: ``"lab"`` or ``"ycbcr"``.
        names: the two view names (default ``("L", "ab")`` / ``("Y", "CbCr")``).
    """

    expand_grey = False  # a colour split of a grey image is degenerate: refuse it

    def __init__(
        self,
        size: int = 224,
        *,
        space: str = "lab",
        scale: Sequence[float] = (0.2, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        names: Sequence[str] | None = None,
        eval_crop_fraction: float = 0.875,
        **kwargs: Any,
    ):
        if kwargs.get("channels") not in (None, 3):
            raise ValueError(f"colorsplit needs 3-channel images, got channels={kwargs['channels']!r}")
        super().__init__(**{**kwargs, "channels": 3})
        if space not in _SPACES:
            raise ValueError(f"space must be one of {sorted(_SPACES)}, got {space!r}")
        check_positive("size", size, integer=True)
        recipe = CropRecipe(ratio, flip_p, eval_crop_fraction=eval_crop_fraction)  # no colour: co-registration
        self.space = space
        self.names = tuple(names) if names is not None else _SPACES[space][1]
        if len(self.names) != 2 or len(set(self.names)) != 2:
            raise ValueError(f"names must be two distinct view names, got {names!r}")
        self.spec = recipe.spec(size, scale)
        self.eval_crop_fraction = eval_crop_fraction
        offset, scale_ = _SPACES[space][2]
        self._affine = (torch.tensor(offset).reshape(3, 1, 1), torch.tensor(scale_).reshape(3, 1, 1))

    @property
    def view_names(self) -> tuple[str, ...]:
        return self.names

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """``x [V, 3, H, W]`` RGB in [0, 1] -> colour coordinates (normalised or raw float32)."""
        coords = _SPACES[self.space][0](x)
        if self.normalize:
            offset, scale = self._affine
            coords = (coords - offset) / scale
        return coords

    def generate(self, sample: Any, generator: torch.Generator) -> dict[str, Any]:
        img = self.load(sample)
        if self.train:
            (view,), (meta,) = render_crops(self, img, [self.spec], Uniforms(generator), shared_flip_p=self.spec.flip_p)
        else:
            (view,), (meta,) = _eval_views(self, img, [self.spec.size], self.eval_crop_fraction)
        return _pack(self.names, [view[:1], view[1:]], [meta, dict(meta)])
