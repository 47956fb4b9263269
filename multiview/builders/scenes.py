"""Synthetic multi-camera scenes: one main object (plus small distractors) seen from K cameras at known poses.

Each scene is drawn from its own random stream (``seed``, split, scene index), so any scene can be rebuilt alone
and a build does not depend on the batch size. The main object's attributes are the labels: ``label`` is its
shape class and ``colour`` its colour class; size, texture, pose, lighting and the distractors go in ``meta``.
All cameras of a scene see the same objects under the same light: views differ only in viewpoint. With
``masks=True`` each camera also gets a ground-truth label image ``cam{i}_mask.png`` (:data:`MASK_LABELS`).

Examples:
    >>> config = ScenesConfig(n_cameras=2, size=16)
    >>> sample = next(iter_scene_samples(1, split="train", seed=0, config=config))
    >>> sorted(sample)
    ['__key__', 'cam0.png', 'cam1.png', 'cams.json', 'colour.cls', 'label.cls', 'meta.json']
    >>> sample["cam0.png"].shape
    (16, 16, 3)
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch

from multiview.builders.render import (
    HALF_HEIGHT,
    SHAPES,
    TEXTURES,
    SceneBatch,
    camera_pose,
    cameras_to_tensors,
    render,
    rotation_matrices,
)

# linear-RGB base colours of the colour classes (well apart in hue so that textures and light keep them apart)
COLOURS = {
    "red": (0.80, 0.06, 0.05),
    "green": (0.08, 0.55, 0.10),
    "blue": (0.06, 0.16, 0.80),
    "yellow": (0.85, 0.70, 0.05),
    "magenta": (0.70, 0.06, 0.65),
    "cyan": (0.06, 0.60, 0.70),
    "orange": (0.90, 0.30, 0.02),
    "white": (0.85, 0.85, 0.85),
}
SIZES = {"small": 0.45, "medium": 0.6, "large": 0.75}  # scale of the main object (its half-extent)
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
LOOK_AT = (0.0, 0.4, 0.0)
MASK_MODALITY = "mask"  # not "camera": a camera count (evaluation, the cameras view generator) must not see masks
MASK_LABELS = (
    "uint8 label per pixel, the size of the camera image: 0 ground and sky, 1 the main object, 2 + i the i-th "
    "distractor (meta.json objects[1 + i], in the order they were drawn); with supersample > 1 the label most of "
    "the pixel's sub-samples show (ties to the lower label)"
)


@dataclass
class ScenesConfig:
    """How scenes are drawn and seen.

    ``layout="ring"``: cameras evenly spaced in azimuth at ``elevation`` (a random azimuth offset per scene);
    ``layout="sphere"``: each camera at a random azimuth and an elevation drawn from ``elevation_range``.
    ``masks``: also write ``cam{i}_mask.png`` per camera (:data:`MASK_LABELS`); the other fields are unchanged.
    """

    n_cameras: int = 4
    size: int = 64
    layout: str = "ring"
    elevation: float = 25.0
    elevation_range: tuple[float, float] = (10.0, 60.0)
    distance: float = 4.0
    fov: float = 40.0
    max_distractors: int = 2
    shadows: bool = True
    supersample: int = 1
    masks: bool = False

    def __post_init__(self):
        if self.layout not in ("ring", "sphere"):
            raise ValueError(f"layout must be 'ring' or 'sphere', got {self.layout!r}")
        if self.n_cameras < 1:
            raise ValueError(f"n_cameras must be >= 1, got {self.n_cameras}")
        if self.size < 8:
            raise ValueError(f"size must be >= 8 pixels, got {self.size}")
        if not 0 <= self.max_distractors <= 4:
            raise ValueError(f"max_distractors must be in 0..4, got {self.max_distractors}")
        lo, hi = self.elevation_range
        if not -10.0 <= lo <= hi < 90.0:
            raise ValueError(f"elevation_range must satisfy -10 <= lo <= hi < 90, got {self.elevation_range}")


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of one scene."""
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


def sample_scene(rng: np.random.Generator, config: ScenesConfig) -> dict:
    """Draw one scene description (JSON-ready): objects, light, ground, sky and cameras."""
    objects = [_main_object(rng)]
    n_distractors = int(rng.integers(0, config.max_distractors + 1))
    angles = rng.permutation(6)[:n_distractors] * 60.0 + rng.uniform(-15, 15, n_distractors)
    for angle in angles:  # 60 degree sectors keep distractors apart from each other
        objects.append(_distractor(rng, float(angle)))
    light_az, light_el = rng.uniform(0, 360), rng.uniform(25, 70)
    tone = rng.uniform(0.35, 0.65)
    tint = rng.uniform(-0.06, 0.06, 3)
    return {
        "objects": objects,
        "light": {
            "azimuth": float(light_az),
            "elevation": float(light_el),
            "direction": _direction(light_az, light_el),
            "ambient": float(rng.uniform(0.2, 0.45)),
        },
        "ground": [list(np.clip(tone + tint, 0, 1)), list(np.clip(0.8 * tone + tint, 0, 1))],
        "ground_tile": float(rng.uniform(0.35, 0.8)),
        "sky": [list(rng.uniform(0.65, 0.85, 3)), list(rng.uniform(0.4, 0.7, 3))],
        "cameras": _cameras(rng, config),
    }


def _main_object(rng: np.random.Generator) -> dict:
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    size = list(SIZES)[int(rng.integers(len(SIZES)))]
    scale = SIZES[size] * rng.uniform(0.95, 1.05)
    xz = rng.uniform(-0.15, 0.15, 2)
    return _object(rng, shape, colour, scale, xz) | {"size": size, "size_id": list(SIZES).index(size)}


def _distractor(rng: np.random.Generator, angle_deg: float) -> dict:
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    radius = rng.uniform(1.5, 2.0)
    xz = radius * np.array([math.sin(math.radians(angle_deg)), math.cos(math.radians(angle_deg))])
    return _object(rng, shape, colour, rng.uniform(0.22, 0.35), xz)


def _object(rng: np.random.Generator, shape: str, colour: str, scale: float, xz: np.ndarray) -> dict:
    """One object resting on the ground; a torus stands upright (tilt 90) or lies flat (tilt 0)."""
    tilt = 90.0 * int(rng.integers(2)) if shape == "torus" else 0.0
    half_height = 1.0 if tilt else HALF_HEIGHT[shape]
    texture = TEXTURES[int(rng.integers(len(TEXTURES)))]
    base = np.array(COLOURS[colour]) * rng.uniform(0.9, 1.1, 3)
    return {
        "shape": shape,
        "shape_id": SHAPES.index(shape),
        "colour": colour,
        "colour_id": list(COLOURS).index(colour),
        "rgb": [float(c) for c in np.clip(base, 0, 1)],
        "texture": texture,
        "texture_id": TEXTURES.index(texture),
        "texture_freq": float(rng.uniform(2.0, 4.0)),
        "scale": float(scale),
        "yaw": float(rng.uniform(0, 360)),
        "tilt": tilt,
        "position": [float(xz[0]), float(scale * half_height), float(xz[1])],
    }


def _cameras(rng: np.random.Generator, config: ScenesConfig) -> list[dict]:
    k = config.n_cameras
    if config.layout == "ring":
        offset = rng.uniform(0, 360)
        azimuths = [(offset + 360.0 * i / k) % 360.0 for i in range(k)]
        elevations = [config.elevation] * k
    else:
        azimuths = list(rng.uniform(0, 360, k))
        elevations = list(rng.uniform(*config.elevation_range, k))
    return [
        camera_pose(az, el, config.distance, config.fov, LOOK_AT) | {"image_size": config.size}
        for az, el in zip(azimuths, elevations)
    ]


def _direction(azimuth: float, elevation: float) -> list[float]:
    az, el = math.radians(azimuth), math.radians(elevation)
    return [math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)]


def scenes_to_batch(scenes: list[dict]) -> SceneBatch:
    """Stack scene descriptions into a ``SceneBatch`` (empty slots pad scenes with fewer objects)."""
    m = max(len(s["objects"]) for s in scenes)
    pad = {"shape_id": -1, "position": [0.0, -100.0, 0.0], "yaw": 0.0, "tilt": 0.0, "scale": 1.0}
    pad |= {"rgb": [0.0, 0.0, 0.0], "texture_id": 0, "texture_freq": 1.0}
    rows = [s["objects"] + [pad] * (m - len(s["objects"])) for s in scenes]

    def field(name, dtype=torch.float32):
        return torch.tensor([[o[name] for o in row] for row in rows], dtype=dtype)

    return SceneBatch(
        shape=field("shape_id", torch.long),
        centre=field("position"),
        rotation=rotation_matrices(field("yaw"), field("tilt")),
        scale=field("scale"),
        colour=field("rgb"),
        texture=field("texture_id", torch.long),
        texture_freq=field("texture_freq"),
        light_dir=torch.tensor([s["light"]["direction"] for s in scenes], dtype=torch.float32),
        ambient=torch.tensor([s["light"]["ambient"] for s in scenes], dtype=torch.float32),
        ground=torch.tensor([s["ground"] for s in scenes], dtype=torch.float32),
        ground_tile=torch.tensor([s["ground_tile"] for s in scenes], dtype=torch.float32),
        sky=torch.tensor([s["sky"] for s in scenes], dtype=torch.float32),
    )


def render_scenes(scenes: list[dict], config: ScenesConfig) -> dict[str, torch.Tensor]:
    """Render scene descriptions: ``rgb`` uint8 ``[S, K, H, W, 3]``, ``object`` ``[S, K, H, W]`` (slot or -1)."""
    cams = cameras_to_tensors([s["cameras"] for s in scenes])
    return render(
        scenes_to_batch(scenes),
        cams,
        size=config.size,
        shadows=config.shadows,
        supersample=config.supersample,
    )


def iter_scene_samples(
    n: int,
    split: str,
    seed: int = 0,
    config: ScenesConfig | None = None,
    batch_size: int = 32,
    start: int = 0,
) -> Iterator[dict]:
    """Yield ``n`` shard samples (scenes ``start .. start + n - 1`` of ``split``), rendering in batches.

    A sample: ``cam{i}.png`` uint8 ``[H, W, 3]`` for each camera, ``cams.json`` (a list of per-camera pose
    dicts), ``label.cls`` (shape class), ``colour.cls`` (colour class), ``meta.json`` (every attribute); with
    ``config.masks`` also ``cam{i}_mask.png`` uint8 ``[H, W]`` (:data:`MASK_LABELS`).
    """
    config = config or ScenesConfig()
    for first in range(start, start + n, batch_size):
        indices = range(first, min(first + batch_size, start + n))
        scenes = [sample_scene(scene_rng(seed, split, i), config) for i in indices]
        out = render_scenes(scenes, config)
        rgb = out["rgb"].numpy()
        masks = out["mask"].numpy() if config.masks else [None] * len(scenes)
        for j, (index, scene) in enumerate(zip(indices, scenes)):
            yield _sample(index, scene, rgb[j], seed, split, masks[j])


def _sample(index: int, scene: dict, rgb: np.ndarray, seed: int, split: str, masks: np.ndarray | None) -> dict:
    main = scene["objects"][0]
    sample = {"__key__": f"scene{index:06d}"}
    for k in range(rgb.shape[0]):
        sample[f"cam{k}.png"] = np.ascontiguousarray(rgb[k])
        if masks is not None:
            sample[f"cam{k}_mask.png"] = np.ascontiguousarray(masks[k])
    cams = scene["cameras"]
    meta = {key: value for key, value in scene.items() if key != "cameras"}
    meta |= {"index": index, "seed": seed, "split": split, "main": main, "n_objects": len(scene["objects"])}
    sample |= {"cams.json": cams, "label.cls": main["shape_id"], "colour.cls": main["colour_id"]}
    sample["meta.json"] = meta
    return sample


def vocabulary(config: ScenesConfig) -> dict:
    """The class names of every label field and the camera set-up, for the manifest's ``extra``."""
    return {
        "label": "shape of the main object",
        "shapes": list(SHAPES),
        "colours": list(COLOURS),
        "sizes": list(SIZES),
        "textures": list(TEXTURES),
        **({"mask": MASK_LABELS} if config.masks else {}),
        "config": asdict(config),
        "camera_convention": (
            "position = look_at + distance * (cos(el) sin(az), sin(el), cos(el) cos(az)); y up; fov vertical, "
            "degrees; image row 0 at the top"
        ),
    }


def build(
    out_dir,
    n_train: int = 3000,
    n_test: int = 500,
    seed: int = 0,
    config: ScenesConfig | None = None,
    batch_size: int = 32,
    maxcount: int = 1000,
    show_progress: bool = False,
) -> dict:
    """Render ``n_train`` / ``n_test`` scenes (disjoint random streams per split) as shards; returns the manifest."""
    from multiview.builders._common import write

    config = config or ScenesConfig()
    counts = {"train": n_train, "test": n_test}
    for split, n in counts.items():
        if n < 1:
            raise ValueError(f"n_{split} must be >= 1, got {n}")
    masks = {f"cam{k}_mask.png": MASK_MODALITY for k in range(config.n_cameras)} if config.masks else {}
    return write(
        out_dir,
        {split: iter_scene_samples(n, split, seed, config, batch_size) for split, n in counts.items()},
        counts,
        builder="scenes",
        builder_args={"n_train": n_train, "n_test": n_test, "seed": seed, **asdict(config)},
        extra=vocabulary(config),
        maxcount=maxcount,
        show_progress=show_progress,
        modalities=masks,
    )


# -- command line: multiview.builders._common.run_builder adds --out, --maxcount, --quiet and runs these
def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ScenesConfig()
    parser.add_argument("--train", type=int, default=3000, help="training scenes (default: 3000)")
    parser.add_argument("--test", type=int, default=500, help="test scenes (default: 500)")
    parser.add_argument("--cameras", type=int, default=d.n_cameras, help=f"cameras per scene (default: {d.n_cameras})")
    parser.add_argument("--size", type=int, default=d.size, help=f"image side in pixels (default: {d.size})")
    parser.add_argument("--layout", choices=("ring", "sphere"), default=d.layout, help="camera placement")
    parser.add_argument("--elevation", type=float, default=d.elevation, help="ring elevation in degrees")
    parser.add_argument(
        "--elevation-range", type=float, nargs=2, default=d.elevation_range, help="sphere elevations (degrees)"
    )
    parser.add_argument("--distance", type=float, default=d.distance, help="camera distance to the scene centre")
    parser.add_argument("--fov", type=float, default=d.fov, help="vertical field of view in degrees")
    parser.add_argument("--max-distractors", type=int, default=d.max_distractors)
    parser.add_argument("--no-shadows", action="store_true", help="skip the shadow pass (faster)")
    parser.add_argument("--supersample", type=int, default=d.supersample, help="anti-aliasing factor (1 = off)")
    parser.add_argument(
        "--masks",
        action="store_true",
        help="also write cam{i}_mask.png per camera: 0 ground/sky, 1 the main object, 2.. the distractors",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32, help="scenes rendered at once")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for rendering (default: 1; on a busy 2-core machine 2 threads measured ~6x slower)",
    )


def build_from_args(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    config = ScenesConfig(
        n_cameras=args.cameras,
        size=args.size,
        layout=args.layout,
        elevation=args.elevation,
        elevation_range=tuple(args.elevation_range),
        distance=args.distance,
        fov=args.fov,
        max_distractors=args.max_distractors,
        shadows=not args.no_shadows,
        supersample=args.supersample,
        masks=args.masks,
    )
    return build(
        args.out,
        n_train=args.train,
        n_test=args.test,
        seed=args.seed,
        config=config,
        batch_size=args.batch_size,
        maxcount=args.maxcount,
        show_progress=not args.quiet,
    )
