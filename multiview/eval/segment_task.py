"""``multiview eval segment``: a label map per image, from a checkpoint's local features or from pixels, and its
scores against a ground-truth mask field where the shards hold one (the scenes builder's ``--masks``).

Methods, each giving every image of the split a map of ``k`` components at the mask's resolution (the image's
without a mask):

- ``mixture``: the argmax over components of a mixture objective's responsibilities (``amdim_mixture``:
  ``responsibilities(global [B, D], local map [B, D, h, w]) -> [B, k, h, w]``) for each image's own global vector
  and local map, in batches of ``--batch-size`` images in stored order (the batch's other images are the
  negatives, as in training). The AMDIM paper's segmentation.
- ``kmeans``: k-means (scikit-learn) on the encoder's local-map vectors, each L2-normalised, fitted on every
  location of every image evaluated, so a cluster means the same in every image; each location takes its
  cluster. ``--weights random`` reads the same architecture as its run initialised it (the recipe rebuilt under
  its seed, no trained weights: the untrained-encoder baseline).
- ``pixels``: per image, k-means on every pixel's CIE L*a*b* colour and (x, y) position (``--xy-weight``), at
  the image's resolution; needs no checkpoint (``--baseline raw`` or no CKPT picks it).

The local-map methods interpolate their soft (mixture) or one-hot (k-means) assignments bilinearly from the map's
cell centres to every mask pixel, then take the argmax (:mod:`multiview.eval.segment_maps`; pixels outside the
eval view's crop are left out of the scores). Scores: :mod:`multiview.eval.segment_metrics` (per-image Hungarian
assignment: foreground IoU, mean IoU, adjusted Rand index; one assignment for the whole split as well where
components mean the same in every image), mean and standard error over images.

Outputs in the out folder: ``segment.json`` / ``segment.md``, ``maps.npz`` (``maps`` uint8 ``[N, H, W]``, 255 =
not seen; ``keys`` ``[N]``) and overlay grids ``segment_<field>_<i>.png``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from multiview.eval.base import (
    EvalContext,
    EvalInputError,
    Evaluation,
    Methods,
    OptionError,
    option_field,
    register_evaluation,
)
from multiview.eval.progress import PhaseTimer
from multiview.eval.report import build_report
from multiview.eval.segment_maps import labels_from, map_geometry, pixel_features
from multiview.eval.segment_metrics import IGNORE, mean_se, score_maps
from multiview.eval.tasks import slug, write_report

log = logging.getLogger(__name__)
DEFAULT_K = 4
MAP_METHODS = ("mixture", "kmeans")  # read a local map; their components mean the same in every image


@dataclass
class Plan:
    """What one run does, resolved from the options and the checkpoint before any image is read."""

    method: str
    k: int
    weights: str
    bundle: Any = None  # EvalBundle of the local-map methods
    objective_name: str | None = None
    local_map: str | None = None  # None: chosen at the first batch (see _pick_map)
    mask_field: str | None = None
    mask_explicit: bool = False
    notes: list[str] = field(default_factory=list)
    boxes: dict = field(default_factory=dict)  # image size -> the eval view's crop box (None: the whole image)

    @property
    def label(self) -> str:
        """The method as the report's rows name it (``kmeans-random`` for untrained weights)."""
        return f"{self.method}-random" if self.weights == "random" and self.method in MAP_METHODS else self.method


@register_evaluation("segment")
class Segment(Evaluation):
    help = "segmentation maps (mixture responsibilities, k-means on local features or pixels) scored against masks"
    description = (
        "A label map of k components per image of --field: a mixture objective's responsibilities (mixture), k-means "
        "on the encoder's local map (kmeans; --weights random for the untrained encoder) or on pixel colour and "
        "position (pixels, no checkpoint). Where the shards hold a mask field (FIELD_mask, or --mask-field), the "
        "maps are scored against it: foreground IoU and mean IoU after the best (Hungarian) assignment of components "
        "to mask labels, per image and for the whole split, and the adjusted Rand index."
    )

    @dataclass
    class Options:
        field: str | None = option_field(None, "image field to segment, e.g. cam0 (required)")
        mask_field: str | None = option_field(
            None, "ground-truth mask field (default: FIELD_mask when the shards have it; without one: maps only)"
        )
        method: Literal["auto", "mixture", "kmeans", "pixels"] = option_field(
            "auto",
            "mixture: a mixture objective's responsibilities; kmeans: k-means on the encoder's local map; pixels: "
            "k-means on pixel Lab colour + position (no checkpoint). auto: pixels without a checkpoint, mixture when "
            "the checkpoint has a mixture objective, else kmeans (default: auto)",
        )
        k: int | None = option_field(None, "components (default: the checkpoint's mixture n_components, else 4)")
        local_map: str | None = option_field(
            None, "the encoder's local map to read (default: the mixture's mixture_map, else r7, else the largest)"
        )
        weights: Literal["trained", "random"] = option_field(
            "trained", "random: the checkpoint's architecture as its run initialised it, untrained (default: trained)"
        )
        objective: str | None = option_field(
            None, "the mixture objective's name in the checkpoint (default: the only one with responsibilities)"
        )
        limit: int | None = option_field(None, "segment the first N images of the split (default: all)")
        xy_weight: float = option_field(
            0.25, "pixels: weight of position against Lab colour; crossing the image = 100 x this, like L* 0..100"
        )
        seed: int = option_field(0, "k-means seed (default: 0)")
        grid_images: int = option_field(8, "images per overlay grid (default: 8)")
        grids: int = option_field(3, "overlay grids drawn, images spread over the split (default: 3)")

    def check(self, options) -> None:
        if options.k is not None and options.k < 2:
            raise OptionError("k", f"expected at least 2 components, got {options.k}")
        for key in ("limit", "grid_images"):
            value = getattr(options, key)
            if value is not None and value < 1:
                raise OptionError(key, f"expected a positive integer, got {value}")
        if options.grids < 0:
            raise OptionError("grids", f"expected 0 or more, got {options.grids}")
        if options.xy_weight < 0:
            raise OptionError("xy_weight", f"expected a weight >= 0, got {options.xy_weight}")

    def run(self, ctx: EvalContext, options) -> dict:
        """Maps of every image of ``ctx.split`` (or the first ``limit``), scored where there is a mask; the report
        is also written to ``<out>/segment.json`` and ``segment.md``."""
        if not options.field:
            raise EvalInputError("give the image field to segment: --field FIELD (e.g. --field cam0)")
        timer = PhaseTimer()
        plan = _plan(ctx, options)
        ctx.check_splits("segmentation", learned_fits=False)  # before any image is read
        _check_fields(ctx, options, plan)
        with timer.phase("embed"):
            read = _read(ctx, options, plan)
        if plan.method == "kmeans":
            with timer.phase("fit"):
                read["maps"] = _kmeans_maps(ctx, options, plan, read)
        maps, masks = read["maps"], read["masks"]
        scores = None
        if masks is not None:
            with timer.phase("score"):
                scores = score_maps(maps, masks, plan.k, dataset_level=plan.method in MAP_METHODS)
        else:
            plan.notes.append(
                f"no ground truth: the shards have no mask field for {options.field!r} (FIELD_mask, or --mask-field); "
                "maps and grids only, no scores"
            )
        out_dir = ctx.output("segment")
        out_dir.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out_dir / "maps.npz", maps=maps, keys=np.array(read["keys"]), k=plan.k,
                            method=plan.label)  # fmt: skip
        figures = {}
        if ctx.plots and options.grids:
            with timer.phase("plots"):
                figures = _grids(ctx, options, plan, read, out_dir)
        log.info("%s", timer.line("segment"))
        results, rows = _results(scores, plan, options.field, len(maps))
        report = build_report("segment", results, rows=rows, checkpoint=ctx.checkpoint, data=str(ctx.data),
                              split=ctx.split, command=ctx.command, settings=_settings(ctx, options, plan, read),
                              figures=figures, recipe=plan.bundle.recipe if plan.bundle is not None else None,
                              seconds=timer.rounded())  # fmt: skip
        write_report(report, out_dir, "segment")
        return report


# ------------------------------------------------------------------------------------------------ plan
def _plan(ctx: EvalContext, options) -> Plan:
    """The method, k, bundle and objective of this run; EvalInputError naming the flag when they do not fit."""
    has_model = ctx.checkpoint is not None or ctx.bundle is not None
    method = _method(ctx, options, has_model)
    ctx.methods = Methods(learned=method != "pixels", baseline=False)  # nothing is fitted on --train-split
    plan = Plan(method=method, k=options.k or DEFAULT_K, weights=options.weights, local_map=options.local_map)
    if method == "pixels":
        if has_model:
            plan.notes.append("--method pixels reads no checkpoint: CKPT is not used")
        return plan
    plan.bundle = _bundle(ctx, options)
    mixtures = _mixtures(plan.bundle, options.objective)
    if method == "auto":
        plan.method = "mixture" if mixtures else "kmeans"
    if plan.method == "mixture" and len(mixtures) != 1:
        raise EvalInputError(
            f"the checkpoint has several mixture objectives {sorted(mixtures)}: pick one with --objective"
            if mixtures
            else f"--method mixture needs an objective with responsibilities (amdim_mixture); the checkpoint's "
            f"objectives: {sorted(plan.bundle.objectives) or 'none'}. Use --method kmeans (or pixels)"
        )
    if len(mixtures) == 1:
        _bind_mixture(plan, *next(iter(mixtures.items())), options)
    return plan


def _method(ctx: EvalContext, options, has_model: bool) -> str:
    """``pixels`` without a checkpoint (or with ``--baseline raw``), else ``--method`` (``auto`` resolved later)."""
    if ctx.baseline == "raw" and has_model:
        raise EvalInputError("--baseline raw segments pixels without a checkpoint; drop CKPT or drop --baseline")
    method = "pixels" if ctx.baseline == "raw" or not has_model else options.method
    if method == "pixels" and options.method in MAP_METHODS:
        raise EvalInputError(
            f"--method {options.method} reads a checkpoint's encoder: give CKPT, or --method pixels (no checkpoint)"
        )
    if options.weights == "random" and method == "pixels":
        raise EvalInputError("--weights random re-initialises the checkpoint's encoder; --method pixels reads none")
    return method


def _bind_mixture(plan: Plan, name: str, objective: torch.nn.Module, options) -> None:
    """k and the local map from the checkpoint's mixture objective (what the k-means baselines also default to)."""
    n_components = int(objective.n_components)
    if plan.method == "mixture" and options.k is not None and options.k != n_components:
        raise EvalInputError(f"--k {options.k}: the mixture objective {name!r} has {n_components} components")
    plan.objective_name, plan.k = name, options.k or n_components
    plan.local_map = options.local_map or getattr(objective, "mixture_map", None)


def _bundle(ctx: EvalContext, options):
    """The checkpoint's encoders (and objectives), trained or as initialised (``--weights random``)."""
    if options.weights == "trained":
        return ctx.encoders()
    if ctx.checkpoint is None:
        raise EvalInputError("--weights random rebuilds the model from a checkpoint's recipe: give CKPT (a folder)")
    from multiview.eval.load import load_for_eval

    bundle = load_for_eval(ctx.checkpoint, weights="random")
    if ctx.rename is None and ctx.bundle is None:  # read the shards as the run did, without loading trained weights
        ctx.rename = dict((bundle.recipe.get("data") or {}).get("rename") or {})
    return bundle


def _mixtures(bundle, name: str | None) -> dict[str, torch.nn.Module]:
    """The bundle's objectives that give responsibilities (``--objective``: that one, which must)."""
    found = {n: o for n, o in bundle.objectives.items() if callable(getattr(o, "responsibilities", None))}
    if name is None:
        return found
    if name not in bundle.objectives:
        raise EvalInputError(f"--objective {name!r}: the checkpoint's objectives are {sorted(bundle.objectives)}")
    if name not in found:
        raise EvalInputError(f"--objective {name!r} has no responsibilities (not a mixture objective)")
    return {name: found[name]}


def _check_fields(ctx: EvalContext, options, plan: Plan) -> None:
    """``--field`` (and ``--mask-field``) against the manifest's fields, before reading; the default mask field is
    ``FIELD_mask`` when present. Without a manifest the first sample is checked instead (:func:`_first_checks`)."""
    if plan.bundle is not None and options.field not in plan.bundle.transforms:
        raise EvalInputError(
            f"--field {options.field!r}: the checkpoint has no encoder input for it; fields with one: "
            f"{sorted(plan.bundle.transforms)}"
        )
    names = _manifest_fields(ctx)
    plan.mask_explicit = options.mask_field is not None
    plan.mask_field = options.mask_field or f"{options.field}_mask"
    if names is None:
        return
    _require(options.field, names, "--field", ctx, kinds=("image", "camera"))
    if plan.mask_explicit:
        _require(plan.mask_field, names, "--mask-field", ctx, kinds=("mask",))
    elif plan.mask_field not in names:
        plan.mask_field = None


def _manifest_fields(ctx: EvalContext) -> dict[str, str] | None:
    """``{name as the samples call it: modality}`` from the manifest (None when there is none)."""
    fields = ctx.manifest.get("fields") if ctx.samples_fn is None else None
    if not fields:
        return None
    shard_to_name = {shard: name for name, shard in ctx.field_names().items()}
    out = {}
    for full, info in fields.items():
        shard = full.rpartition(".")[0] if "." in full else full
        out[shard_to_name.get(shard, shard)] = info.get("modality", "")
    return out


def _require(name: str, names: dict[str, str], flag: str, ctx: EvalContext, kinds: tuple[str, ...]) -> None:
    if name not in names:
        hint = sorted(n for n, m in names.items() if m in kinds) or sorted(names)
        raise EvalInputError(
            f"{flag} {name!r}: the shards of {ctx.data} have no such field; {'/'.join(kinds)} fields: {hint}"
        )


# ------------------------------------------------------------------------------------------------ read
def _read(ctx: EvalContext, options, plan: Plan) -> dict:
    """One pass over the split: keys, masks, and the maps (mixture, pixels) or the normalised local maps
    (kmeans)."""
    state: dict[str, Any] = {"keys": [], "masks": [], "maps": [], "features": [], "geometry": [], "shapes": {}}
    encoder = None
    if plan.bundle is not None:
        encoder = plan.bundle.encoders[options.field].to(ctx.device).eval()
        if plan.method == "mixture":
            plan.bundle.objectives[plan.objective_name].to(ctx.device).eval()
    batch: list[tuple[torch.Tensor, dict]] = []
    samples = ctx.samples(ctx.split)
    total = min(filter(None, (ctx.split_size(ctx.split), options.limit)), default=None)
    with torch.inference_mode(), ctx.progress_bar(total=total, desc=f"read {ctx.split}", unit="image") as bar:
        for sample in samples:
            if options.limit is not None and len(state["keys"]) >= options.limit:
                break
            if not state["keys"]:
                _first_checks(sample, options, plan, ctx)
            image, target = _take(sample, options.field, plan, state)
            if plan.method == "pixels":
                state["maps"].append(_pixel_map(image, target, plan.k, options))
            else:
                batch.append((plan.bundle.transforms[options.field](sample), _geometry_key(sample, image, target,
                                                                                          options, plan)))  # fmt: skip
                if len(batch) == ctx.batch_size:
                    _encode(batch, encoder, ctx, options, plan, state)
                    batch = []
            bar.update(1)
        if batch:
            _encode(batch, encoder, ctx, options, plan, state)
    if not state["keys"]:
        raise EvalInputError(f"split {ctx.split!r} of {ctx.data} has no samples to segment")
    masks = np.stack(state["masks"]) if plan.mask_field else None
    maps = np.stack(state["maps"]) if state["maps"] else None
    return {**state, "masks": masks, "maps": maps}


def _first_checks(sample: dict, options, plan: Plan, ctx: EvalContext) -> None:
    """Fields checked on the first sample when no manifest told (foreign shards, samples in memory)."""
    fields = sorted(k for k in sample if not k.startswith("__") and not k.endswith(".sample_rate"))
    if options.field not in sample:
        raise EvalInputError(
            f"--field {options.field!r}: the samples of {ctx.data} have no such field; fields: {fields}"
        )
    if plan.mask_field and plan.mask_field not in sample:
        if plan.mask_explicit:
            raise EvalInputError(
                f"--mask-field {plan.mask_field!r}: the samples of {ctx.data} have no such field; fields: {fields}"
            )
        plan.mask_field = None


def _take(sample: dict, name: str, plan: Plan, state: dict) -> tuple[torch.Tensor, tuple[int, int]]:
    """The sample's image uint8 ``[C, H, W]`` and the target shape (its mask's, else its own); records the key
    and the mask."""
    from multiview.views.image import to_uint8_image

    key = str(sample.get("__key__", len(state["keys"])))
    image = to_uint8_image(sample[name], where=f"sample {key!r} field {name!r}")
    target = tuple(image.shape[-2:])
    if plan.mask_field:
        mask = np.asarray(sample[plan.mask_field])
        mask = mask.reshape(mask.shape[-2:]) if mask.ndim == 3 and mask.shape[0] == 1 else mask
        if mask.ndim != 2 or mask.dtype != np.uint8:
            raise ValueError(
                f"sample {key!r} field {plan.mask_field!r}: expected a uint8 label image [H, W] or [1, H, W], got "
                f"{mask.dtype} {list(np.asarray(sample[plan.mask_field]).shape)}"
            )
        state["masks"].append(mask)
        target = mask.shape
    first = state["shapes"].setdefault("target", target)
    if target != first:
        raise ValueError(f"sample {key!r}: target size {target} differs from the first sample's {first}; maps stack")
    state["keys"].append(key)
    return image, target


def _geometry_key(sample: dict, image: torch.Tensor, target: tuple[int, int], options, plan: Plan) -> tuple:
    """What fixes where the map's cells land: image and target size and the eval view's crop box (computed once
    per image size: the eval crop is deterministic)."""
    image_shape = tuple(image.shape[-2:])
    if image_shape not in plan.boxes:
        transform = plan.bundle.transforms[options.field]
        plan.boxes[image_shape] = transform.input_box(sample) if hasattr(transform, "input_box") else None
    return image_shape, plan.boxes[image_shape], target


def _encode(batch: list, encoder, ctx: EvalContext, options, plan: Plan, state: dict) -> None:
    """Encode one batch: maps (mixture) or normalised local maps (kmeans) with each image's geometry."""
    x = torch.stack([b[0] for b in batch]).to(ctx.device)
    features = encoder(x)
    local = _pick_map(features.local, plan, options.field)
    if plan.method == "mixture":
        objective = plan.bundle.objectives[plan.objective_name]
        soft = objective.responsibilities(features.global_, local).float().cpu()  # [B, k, h, w]
    else:
        soft = torch.nn.functional.normalize(local.float(), dim=1).cpu()  # [B, D, h, w]
    for i, (_, key) in enumerate(batch):
        geometry = _matrices(encoder, plan.local_map, soft.shape[-2:], x.shape[-2:], key, state)
        if plan.method == "mixture":
            state["maps"].append(labels_from(soft[i], *geometry).numpy())
        else:
            state["features"].append(soft[i])
            state["geometry"].append(geometry)


def _pick_map(local: dict[str, torch.Tensor], plan: Plan, name: str) -> torch.Tensor:
    """The local map read: ``--local-map`` / the mixture's, else r7, else the one with the most cells."""
    if not local:
        raise EvalInputError(
            f"--field {name!r}: its encoder gives no local maps to segment (an MLP, or no local_scales)"
        )
    if plan.local_map is None:
        plan.local_map = "r7" if "r7" in local else max(local, key=lambda m: local[m].shape[-2] * local[m].shape[-1])
    if plan.local_map not in local:
        raise EvalInputError(f"--local-map {plan.local_map!r}: the encoder of {name!r} gives maps {sorted(local)}")
    feature_map = local[plan.local_map]
    if feature_map.dim() != 4:
        raise EvalInputError(
            f"--local-map {plan.local_map!r} is {feature_map.dim() - 2}-D; segmentation needs [B, D, H, W]"
        )
    return feature_map


def _matrices(encoder, name: str, map_shape, input_shape, key: tuple, state: dict) -> tuple:
    """Interpolation matrices for one geometry (cached: every image of a size shares them)."""
    image_shape, box, target = key
    cache = state["shapes"].setdefault("matrices", {})
    full = (tuple(map_shape), tuple(input_shape), image_shape, box, target)
    if full not in cache:
        cache[full] = map_geometry(encoder, name, tuple(map_shape), tuple(input_shape), image_shape, box, target)
        state["shapes"]["box"], state["shapes"]["map"] = box, tuple(map_shape)
    return cache[full]


def _pixel_map(image: torch.Tensor, target: tuple[int, int], k: int, options) -> np.ndarray:
    """Per-image k-means on Lab colour + position at the image's resolution -> labels at the target's (nearest)."""
    from sklearn.cluster import KMeans

    features = pixel_features(image, options.xy_weight)
    with warnings.catch_warnings():  # a flat image has fewer distinct colours than k: fewer clusters, fine
        warnings.simplefilter("ignore")
        labels = KMeans(k, n_init=3, random_state=options.seed).fit_predict(features)
    labels = labels.reshape(image.shape[-2:]).astype(np.uint8)
    rows = np.arange(target[0]) * labels.shape[0] // target[0]
    cols = np.arange(target[1]) * labels.shape[1] // target[1]
    return labels[rows][:, cols]


def _kmeans_maps(ctx: EvalContext, options, plan: Plan, read: dict) -> np.ndarray:
    """k-means on every location of every image (L2-normalised vectors), then each image's map."""
    from sklearn.cluster import KMeans

    features = read["features"]  # [D, h, w] each
    vectors = np.concatenate([f.flatten(1).T.numpy() for f in features])  # [sum of h*w, D]
    with ctx.progress_bar(total=1, desc=f"fit k-means on {len(vectors)} locations", unit="fit") as bar:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assigned = KMeans(plan.k, n_init=4, random_state=options.seed).fit_predict(vectors)
        bar.update(1)
    maps, start = [], 0
    for f, geometry in zip(features, read["geometry"]):
        h, w = f.shape[-2:]
        one_hot = torch.nn.functional.one_hot(torch.from_numpy(assigned[start : start + h * w]).long(), plan.k)
        start += h * w
        maps.append(labels_from(one_hot.T.reshape(plan.k, h, w), *geometry).numpy())
    read["features"] = []  # the vectors are no longer needed
    return np.stack(maps)


# ------------------------------------------------------------------------------------------------ report
def _results(scores: dict | None, plan: Plan, name: str, n: int) -> tuple[dict, list[dict]]:
    """Nested results ``{method: {field: {level: {metric: {mean, se, n}}}}}`` and the flat rows (a mean row and
    an ``_se`` row per metric; every row carries ``k`` and ``n``)."""
    if scores is None:
        return {plan.label: {name: {"n_images": n}}}, []
    nested: dict[str, dict] = {}
    rows = []
    for level, metrics in scores.items():
        for metric, values in metrics.items():
            if metric == "assignment":
                continue
            mean, se, count = mean_se(values)
            nested.setdefault(level, {})[metric] = {"mean": mean, "se": se, "n": count}
            for suffix, value in (("", mean), ("_se", se)):
                rows.append({"task": "segment", "method": plan.label, "subject": name, "level": level,
                             "metric": metric + suffix, "value": value, "k": plan.k, "n": count})  # fmt: skip
    if "dataset" in scores:
        nested["dataset"]["assignment"] = {
            f"label {label}": int(c) for label, c in enumerate(scores["dataset"]["assignment"]) if c >= 0
        }
    return {plan.label: {name: nested}}, rows


def _settings(ctx: EvalContext, options, plan: Plan, read: dict) -> dict:
    maps = read["maps"]
    seen = float((maps != IGNORE).mean())
    settings = {
        "field": options.field,
        "mask_field": plan.mask_field,
        "ground_truth": "mask labels 0 background, 1 main object (foreground), 2.. others" if plan.mask_field else None,
        "method": plan.method,
        "k": plan.k,
        "weights": plan.weights if plan.method in MAP_METHODS else None,
        "n_images": len(maps),
        "map_size": list(maps.shape[1:]),
        "seed": options.seed,
    }
    if plan.method in MAP_METHODS:
        settings |= {
            "local_map": plan.local_map,
            "local_map_size": list(read["shapes"].get("map", ())),
            "eval_crop_box": read["shapes"].get("box"),
            "share_of_pixels_seen": round(seen, 4),
            "upsampling": "bilinear between map cell centres on the soft assignments, then argmax",
        }
    if plan.method == "mixture":
        settings |= {"objective": plan.objective_name, "batch_size": ctx.batch_size,
                     "negatives": "the batch's other images, in stored order"}  # fmt: skip
    if plan.method == "kmeans":
        settings["kmeans"] = "scikit-learn KMeans, n_init 4, on every location of the split's images, L2-normalised"
    if plan.method == "pixels":
        settings |= {"colour": "CIE L*a*b* (D65)", "xy_weight": options.xy_weight,
                     "kmeans": "scikit-learn KMeans per image, n_init 3, on (L*, a*, b*, x, y)"}  # fmt: skip
    notes = [*ctx.notes, *plan.notes]
    if seen < 1.0:
        notes.append(f"the eval view covers {seen:.1%} of the pixels (a centre crop); the rest is left out of scores")
    if notes:
        settings["notes"] = notes
    return settings


def _grids(ctx: EvalContext, options, plan: Plan, read: dict, out_dir) -> dict[str, str]:
    """A few overlay grids, their images spread evenly over the split (a second pass picks them)."""
    from multiview.eval.segment_plots import plot_segment_grid
    from multiview.views.image import to_uint8_image

    n = len(read["maps"])
    count = min(options.grids * options.grid_images, n)
    rows = np.unique(np.linspace(0, n - 1, num=count).round().astype(int))
    wanted = set(rows.tolist())
    images = {}
    for i, sample in enumerate(ctx.samples(ctx.split)):
        if i in wanted:
            images[i] = to_uint8_image(sample[options.field]).numpy()
        if i >= rows[-1]:
            break
    figures = {}
    chunks = [rows[i : i + options.grid_images] for i in range(0, len(rows), options.grid_images)]
    with ctx.progress_bar(chunks, desc="plots", unit="figure") as bar:
        for g, chunk in enumerate(bar):
            name = f"segment_{slug(options.field)}_{g}.png"
            masks = read["masks"][chunk] if read["masks"] is not None else None
            plot_segment_grid([images[i] for i in chunk], read["maps"][chunk], out_dir / name, plan.k, masks=masks,
                              titles=[read["keys"][i] for i in chunk], method=plan.label,
                              title=f"{options.field}: {plan.label}, k={plan.k}")  # fmt: skip
            figures[f"maps {options.field} {g + 1}"] = name
    return figures
