"""``cameras``: choose V of the K camera images of a scene as views.

Accepted samples: fields ``cam0 .. cam{K-1}`` (the prefix is configurable), each a uint8 ``[C, H, W]`` image
(PIL / numpy accepted), and optionally a poses field (``cams``, decoded JSON) in one of these forms:

- a list with one entry per camera, in camera order;
- a dict ``{"cameras": [...]}`` (same list), or a dict keyed by the camera fields (``{"cam0": {...}, ...}``).

Each camera entry gives its viewing direction as ``{"azimuth": deg, "elevation": deg}`` (direction from the
scene centre to the camera: ``(cos e cos a, cos e sin a, sin e)``) or ``{"position": [x, y, z]}`` (optionally
with ``"target": [x, y, z]``, the point looked at, default the origin). Other keys are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from multiview.views.base import (
    META,
    Uniforms,
    ViewGenerator,
    build_generator,
    check_positive,
    child_generator,
    describe_sample,
    register,
)
from multiview.views.image import channel_stats, to_uint8_image
from multiview.views.photometric import IMAGENET_MEAN, IMAGENET_STD, resized_crop

_MODES = ("random", "adjacent", "fixed")


def _direction(entry: Any, where: str) -> torch.Tensor:
    """A unit viewing direction ``[3]`` from one camera's pose entry."""
    if isinstance(entry, Mapping) and "azimuth" in entry and "elevation" in entry:
        az, el = math.radians(float(entry["azimuth"])), math.radians(float(entry["elevation"]))
        return torch.tensor([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    if isinstance(entry, Mapping) and "position" in entry:
        pos = torch.tensor([float(v) for v in entry["position"]])
        target = torch.tensor([float(v) for v in entry.get("target", (0.0, 0.0, 0.0))])
        if pos.shape != (3,) or target.shape != (3,) or torch.equal(pos, target):
            raise ValueError(f"{where}: position/target must be distinct [x, y, z], got {entry!r}")
        d = pos - target
        return d / d.norm()
    raise ValueError(
        f"{where}: expected {{'azimuth', 'elevation'}} in degrees or {{'position': [x, y, z]}}, got {entry!r}"
    )


def parse_poses(poses: Any, n_cameras: int, prefix: str, where: str) -> torch.Tensor:
    """Camera poses (see the module docstring) -> unit directions ``[K, 3]``."""
    if isinstance(poses, Mapping) and "cameras" in poses:
        poses = poses["cameras"]
    if isinstance(poses, Mapping):
        missing = [f"{prefix}{i}" for i in range(n_cameras) if f"{prefix}{i}" not in poses]
        if missing:
            raise ValueError(
                f"{where}: no pose for cameras {missing}; expected keys {prefix}0..{prefix}{n_cameras - 1}"
            )
        poses = [poses[f"{prefix}{i}"] for i in range(n_cameras)]
    if not isinstance(poses, Sequence) or len(poses) != n_cameras:
        got = len(poses) if isinstance(poses, Sequence) else type(poses).__name__
        raise ValueError(f"{where}: expected poses for {n_cameras} cameras, got {got}")
    return torch.stack([_direction(p, f"{where}[{i}]") for i, p in enumerate(poses)])


def angles_deg(directions: torch.Tensor) -> torch.Tensor:
    """Pairwise angles in degrees ``[K, K]`` between unit directions ``[K, 3]``."""
    return torch.rad2deg(torch.arccos((directions @ directions.T).clamp(-1.0, 1.0)))


@register("cameras")
class CameraViews(ViewGenerator):
    """Choose ``n_views`` cameras of a multi-camera sample and emit their images as views.

    Modes:
        ``random``: distinct cameras uniformly at random.
        ``adjacent``: an anchor camera (view0) and others within ``max_angle`` degrees of it, using poses when
            the sample has them, else index neighbours within ``max_step`` (wrapping round a ring if ``ring``).
        ``fixed``: one of the camera tuples in ``pairs`` (each of length ``n_views``), uniformly.

    Args:
        augment: optional per-view augmentation: a single-view image generator or its spec (e.g.
            ``{"name": "amdim", "size": 64}``); it gets independent randomness per view. Without it, views
            are the camera images, resized to ``size`` when given, normalised unless ``normalize=False``.
        n_cameras: K; ``None`` counts the ``cam0, cam1, ..`` fields of each sample.
        eval_cameras: cameras used in eval mode (default: the first pair, the anchor 0 and its nearest
            neighbours, or cameras 0..V-1).

    ``__meta__[view]`` holds ``camera`` (int) and ``direction`` (unit ``[3]``, NaN without poses).
    """

    modality = "image"

    def __init__(
        self,
        n_views: int = 2,
        *,
        mode: str = "random",
        prefix: str = "cam",
        poses_field: str = "cams",
        n_cameras: int | None = None,
        max_angle: float = 45.0,
        max_step: int = 1,
        ring: bool = True,
        pairs: Sequence[Sequence[int]] | None = None,
        augment: Any = None,
        size: int | None = None,
        normalize: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        eval_cameras: Sequence[int] | None = None,
        seed: int = 0,
        train: bool = True,
    ):
        super().__init__(seed=seed, train=train)
        check_positive("n_views", n_views, integer=True)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        check_positive("max_angle", max_angle)
        check_positive("max_step", max_step, integer=True)
        if n_cameras is not None:
            check_positive("n_cameras", n_cameras, integer=True)
        if size is not None:
            check_positive("size", size, integer=True)
        if mode == "fixed":
            if not pairs:
                raise ValueError("mode='fixed' needs pairs, a list of camera tuples; got none")
            bad = [p for p in pairs if len(p) != n_views or any(not isinstance(i, int) or i < 0 for i in p)]
            if bad:
                raise ValueError(f"pairs must be tuples of {n_views} camera indices >= 0, got {bad}")
        self.n_views, self.mode, self.prefix, self.poses_field = n_views, mode, prefix, poses_field
        self.n_cameras, self.max_angle, self.max_step, self.ring = n_cameras, float(max_angle), max_step, ring
        self.pairs = [tuple(p) for p in pairs] if pairs else None
        self.eval_cameras = tuple(eval_cameras) if eval_cameras is not None else None
        if self.eval_cameras is not None and len(self.eval_cameras) != n_views:
            raise ValueError(f"eval_cameras must list {n_views} cameras, got {eval_cameras!r}")
        self.size, self.normalize = size, bool(normalize)
        self.augment = None
        if augment is not None:
            self.augment = build_generator(augment, where="cameras augment", n_views=1, train=train, seed=seed)
            if not train and hasattr(self.augment, "eval_transform") and getattr(self.augment, "train", False):
                self.augment = self.augment.eval_transform()
        self._mean_std = {
            c: (channel_stats(mean, IMAGENET_MEAN, c, "mean"), channel_stats(std, IMAGENET_STD, c, "std"))
            for c in (1, 3)
        }

    @property
    def view_names(self) -> tuple[str, ...]:
        return tuple(f"view{i}" for i in range(self.n_views))

    # -- input --------------------------------------------------------------------------------------------
    def _count(self, sample: Mapping) -> int:
        if self.n_cameras is not None:
            missing = [f"{self.prefix}{i}" for i in range(self.n_cameras) if f"{self.prefix}{i}" not in sample]
            if missing:
                raise ValueError(
                    f"{describe_sample(sample)}: missing camera fields {missing} "
                    f"(expected {self.prefix}0..{self.prefix}{self.n_cameras - 1})"
                )
            return self.n_cameras
        k = 0
        while f"{self.prefix}{k}" in sample:
            k += 1
        if k == 0:
            fields = sorted(f for f in sample if not str(f).startswith("__"))
            raise ValueError(f"{describe_sample(sample)}: no camera field {self.prefix}0; fields are {fields}")
        return k

    def _check_dtypes(self, sample: Mapping, k: int) -> None:
        """Refuse a bad camera image even when this draw does not pick it (a cheap dtype look, no decode)."""
        for i in range(k):
            value = sample[f"{self.prefix}{i}"]
            dtype = getattr(value, "dtype", None)
            if dtype is not None and str(dtype) not in ("torch.uint8", "uint8"):
                raise ValueError(
                    f"{describe_sample(sample)} field '{self.prefix}{i}': expected dtype torch.uint8, got {dtype}"
                )

    def _directions(self, sample: Mapping, k: int) -> torch.Tensor | None:
        poses = sample.get(self.poses_field)
        if poses is None:
            return None
        return parse_poses(poses, k, self.prefix, f"{describe_sample(sample)} field {self.poses_field!r}")

    # -- selection ----------------------------------------------------------------------------------------
    def _neighbours(self, k: int, directions: torch.Tensor | None) -> list[list[int]]:
        """For each camera, the other cameras adjacent to it (pose angle or index step)."""
        if directions is not None:
            ang = angles_deg(directions)
            return [[j for j in range(k) if j != i and ang[i, j] <= self.max_angle + 1e-6] for i in range(k)]

        def step(i: int, j: int) -> int:
            d = abs(i - j)
            return min(d, k - d) if self.ring else d

        return [[j for j in range(k) if j != i and step(i, j) <= self.max_step] for i in range(k)]

    def _check_indices(self, cams: Sequence[int], k: int, sample: Any) -> None:
        bad = [c for c in cams if c >= k]
        if bad:
            raise ValueError(
                f"{describe_sample(sample)}: camera index {bad[0]} out of range; the sample has {k} "
                f"cameras ({self.prefix}0..{self.prefix}{k - 1})"
            )

    def _need(self, k: int, sample: Any) -> None:
        if k < self.n_views:
            raise ValueError(f"{describe_sample(sample)}: {k} cameras, expected at least n_views={self.n_views}")

    def choose(self, sample: Any, k: int, directions: torch.Tensor | None, u: Uniforms | None) -> list[int]:
        """The camera indices of the views (deterministic when ``u`` is None: eval mode)."""
        if u is None and self.eval_cameras is not None:
            cams = list(self.eval_cameras)
        elif self.mode == "fixed":
            cams = list(self.pairs[u.randint(0, len(self.pairs)) if u else 0])
        elif self.mode == "random":
            self._need(k, sample)
            cams = u.permutation(k)[: self.n_views] if u else list(range(self.n_views))
        else:
            cams = self._choose_adjacent(sample, k, directions, u)
        self._check_indices(cams, k, sample)
        return cams

    def _choose_adjacent(self, sample: Any, k: int, directions: torch.Tensor | None, u: Uniforms | None):
        self._need(k, sample)
        neighbours = self._neighbours(k, directions)
        anchors = [i for i in range(k) if len(neighbours[i]) >= self.n_views - 1]
        if not anchors:
            limit = f"max_angle={self.max_angle}" if directions is not None else f"max_step={self.max_step}"
            raise ValueError(
                f"{describe_sample(sample)}: no camera has {self.n_views - 1} neighbours within "
                f"{limit}; raise it or lower n_views"
            )
        if u is None:  # eval: the first anchor and its nearest neighbours
            anchor = anchors[0]
            if directions is not None:
                ang = angles_deg(directions)[anchor]
                others = sorted(neighbours[anchor], key=lambda j: (float(ang[j]), j))
            else:
                others = sorted(neighbours[anchor], key=lambda j: (min(abs(j - anchor), k - abs(j - anchor)), j))
            return [anchor, *others[: self.n_views - 1]]
        anchor = anchors[u.randint(0, len(anchors))]
        order = u.permutation(len(neighbours[anchor]))
        return [anchor, *(neighbours[anchor][i] for i in order[: self.n_views - 1])]

    # -- views --------------------------------------------------------------------------------------------
    def _plain_view(self, img: torch.Tensor) -> torch.Tensor:
        if self.size is not None:
            img = resized_crop(img, (0, 0, img.shape[1], img.shape[2]), (self.size, self.size))
        if not self.normalize:
            return img
        mean, std = self._mean_std[img.shape[0]]
        return (img.float() / 255.0 - mean) / std

    def camera_view(self, sample: Mapping, cam: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The view of camera ``cam`` of ``sample``: resized and normalised, through ``augment`` when set (with
        ``generator``; the generator's seed when None, which makes it deterministic)."""
        field = f"{self.prefix}{cam}"
        img = to_uint8_image(sample[field], where=f"{describe_sample(sample)} field {field!r}")
        if img.shape[0] not in (1, 3):
            raise ValueError(f"{describe_sample(sample)} field {field!r}: expected 1 or 3 channels, got {img.shape[0]}")
        if self.augment is None:
            return self._plain_view(img)
        out = self.augment(img, generator=generator or torch.Generator().manual_seed(self.seed))
        return out[next(k for k in out if k != META)]

    def generate(self, sample: Any, generator: torch.Generator) -> dict[str, Any]:
        if not isinstance(sample, Mapping):
            raise ValueError(f"cameras needs a sample dict with {self.prefix}0.. fields, got {type(sample).__name__}")
        k = self._count(sample)
        self._check_dtypes(sample, k)
        directions = self._directions(sample, k)
        u = Uniforms(generator) if self.train else None
        cams = self.choose(sample, k, directions, u)
        out: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        for name, cam in zip(self.view_names, cams):
            out[name] = self.camera_view(sample, cam, child_generator(generator) if self.train else None)
            direction = directions[cam] if directions is not None else torch.full((3,), float("nan"))
            meta[name] = {"camera": cam, "direction": direction}
        out[META] = meta
        return out
