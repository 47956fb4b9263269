"""``tactile`` / ``sensor``: views of a sensor array: ``[C, T]`` (channels x time) or ``[H, W, T]`` (a taxel grid).

Per view: a random window of ``window`` samples, a smooth time warp, a smooth per-channel magnitude warp, a
per-channel scaling, additive jitter and channel dropout (the usual time-series augmentations: Um et al.
2017, "Data augmentation of wearable sensor data"). Everything is drawn from the sample's generator.

Output: float32 ``[C, T]`` (a taxel grid is flattened to ``[H * W, T]``), or with ``layout="image"`` an
image-like form for 2-D encoders: ``[1, C, T]`` for ``[C, T]`` input, ``[T, H, W]`` for a taxel grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf
from einops import rearrange

from multiview.views.base import (
    META,
    Uniforms,
    ViewGenerator,
    check_positive,
    check_probability,
    describe_sample,
    get_field,
    register,
)


def _smooth_curve(n_curves: int, length: int, knots: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``[n_curves, length]`` smooth random curves around 1: N(1, sigma) at ``knots + 2`` evenly spaced
    points, cubic interpolation in between."""
    points = 1.0 + sigma * torch.randn(1, n_curves, 1, knots + 2, generator=generator)
    curve = nnf.interpolate(points, size=(1, length), mode="bicubic", align_corners=True)
    return curve[0, :, 0, :]


def time_warp(x: torch.Tensor, sigma: float, knots: int, generator: torch.Generator) -> torch.Tensor:
    """Resample ``x [C, T]`` along a random smooth monotone time axis (speed N(1, sigma), >= 0.1)."""
    length = x.shape[1]
    if length < 2:
        return x
    speed = _smooth_curve(1, length, knots, sigma, generator)[0].clamp_min(0.1)
    t = torch.cumsum(speed, 0)
    t = (t - t[0]) / (t[-1] - t[0]) * (length - 1)  # map the warped clock back onto [0, T - 1]
    lo = t.floor().long().clamp(0, length - 2)
    frac = (t - lo).unsqueeze(0)
    return x[:, lo] * (1.0 - frac) + x[:, lo + 1] * frac


def _as_float_array(value: Any, where: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{where}: expected a tensor [C, T] or [H, W, T], got {type(value).__name__}")
    if value.dtype == torch.bool or value.is_complex():
        raise ValueError(f"{where}: expected a real-valued array, got dtype {value.dtype}")
    if value.ndim not in (2, 3) or value.shape[-1] == 0 or value.numel() == 0:
        raise ValueError(f"{where}: expected shape [C, T] or [H, W, T] with T > 0, got {tuple(value.shape)}")
    return value.float()


@register("tactile")
@register("sensor")
class SensorViews(ViewGenerator):
    """Views of a ``[C, T]`` or ``[H, W, T]`` sensor array (tactile, inertial, ...).

    Args:
        n_views: views per sample (``view0`` ..).
        field: the sample field holding the array.
        window: view length in samples (``None``: the whole sequence; shorter input is zero-padded).
        jitter: additive Gaussian noise, in units of each channel's standard deviation over the window.
        scale: sigma of a per-channel gain N(1, scale).
        magnitude_warp: sigma of a smooth per-channel gain curve (``knots`` interior knots).
        time_warp: sigma of a smooth speed curve that resamples the time axis.
        channel_dropout: probability of zeroing each channel (at least one channel is always kept).
        layout: ``"sequence"`` (``[C, T]``) or ``"image"`` (``[1, C, T]`` / ``[T, H, W]``).

    Eval mode: the centre window, no augmentation.

    Examples:
        >>> views = SensorViews(window=50)({"__key__": "k", "tactile": torch.zeros(6, 100)})
        >>> tuple(views["view0"].shape)
        (6, 50)
    """

    modality = "sensor"

    def __init__(
        self,
        n_views: int = 2,
        *,
        field: str = "tactile",
        window: int | None = None,
        jitter: float = 0.03,
        scale: float = 0.1,
        magnitude_warp: float = 0.2,
        time_warp: float = 0.2,
        knots: int = 4,
        channel_dropout: float = 0.1,
        layout: str = "sequence",
        seed: int = 0,
        train: bool = True,
    ):
        super().__init__(seed=seed, train=train)
        check_positive("n_views", n_views, integer=True)
        if window is not None:
            check_positive("window", window, integer=True)
        for name, value in (
            ("jitter", jitter),
            ("scale", scale),
            ("magnitude_warp", magnitude_warp),
            ("time_warp", time_warp),
        ):
            check_positive(name, value, allow_zero=True)
        check_positive("knots", knots, integer=True)
        check_probability("channel_dropout", channel_dropout)
        if layout not in ("sequence", "image"):
            raise ValueError(f"layout must be 'sequence' or 'image', got {layout!r}")
        self.n_views, self.field, self.window, self.layout = n_views, field, window, layout
        self.strengths = (float(jitter), float(scale), float(magnitude_warp), float(time_warp))
        self.knots, self.channel_dropout = knots, channel_dropout

    @property
    def view_names(self) -> tuple[str, ...]:
        return tuple(f"view{i}" for i in range(self.n_views))

    def _crop(self, x: torch.Tensor, start: int) -> torch.Tensor:
        if self.window is None:
            return x
        out = x[:, start : start + self.window]
        return nnf.pad(out, (0, self.window - out.shape[1])) if out.shape[1] < self.window else out

    def augment(self, x: torch.Tensor, u: Uniforms, generator: torch.Generator) -> torch.Tensor:
        """One random view of ``x [C, T]`` (already windowed)."""
        jitter, scale, mag, warp = self.strengths
        n_ch, length = x.shape
        if warp > 0:
            x = time_warp(x, warp, self.knots, generator)
        if mag > 0:
            x = x * _smooth_curve(n_ch, length, self.knots, mag, generator)
        if scale > 0:
            x = x * (1.0 + scale * torch.randn(n_ch, 1, generator=generator))
        if jitter > 0:
            std = x.std(dim=1, keepdim=True) if length > 1 else torch.zeros(n_ch, 1)
            x = x + jitter * std * torch.randn(x.shape, generator=generator)
        if self.channel_dropout > 0 and n_ch > 1:
            keep = [not u.bernoulli(self.channel_dropout) for _ in range(n_ch)]
            if not any(keep):
                keep[u.randint(0, n_ch)] = True
            x = x * torch.tensor(keep, dtype=x.dtype).unsqueeze(1)
        return x

    def _layout(self, x: torch.Tensor, grid: tuple[int, ...] | None) -> torch.Tensor:
        if self.layout == "sequence":
            return x
        if grid is None:
            return x.unsqueeze(0)
        return rearrange(x, "(h w) t -> t h w", h=grid[0], w=grid[1])

    def generate(self, sample: Any, generator: torch.Generator) -> dict[str, Any]:
        where = f"{describe_sample(sample)} field {self.field!r}"
        x = _as_float_array(get_field(sample, self.field), where)
        grid = tuple(x.shape[:2]) if x.ndim == 3 else None
        x = rearrange(x, "h w t -> (h w) t") if grid else x
        length = x.shape[1]
        out: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        u = Uniforms(generator)
        for name in self.view_names:
            span = max(1, length - (self.window or length) + 1)
            start = u.randint(0, span) if self.train else (span - 1) // 2
            view = self._crop(x, start)
            if self.train:
                view = self.augment(view, u, generator)
            out[name] = self._layout(view.contiguous(), grid)
            meta[name] = {"start": start}
        out[META] = meta
        return out
