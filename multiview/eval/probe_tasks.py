"""Linear probe and kNN as evaluations: frozen features per field (and the fields fused), fitted on the train
split and scored on the evaluated split, next to the same probe on standardised raw inputs.

What a probe reads is ``features`` (see :meth:`multiview.eval.bundle.EvalBundle.with_probe_features`):
``global`` (the encoders' vectors), ``maps`` (plus every local map pooled to ``grid``), ``trunk`` (before the
projection head), ``trunk_maps`` (the trunk's intermediate maps, each pooled to its own grid) and the preset
``maps7`` (``trunk_maps`` with grid 7, 2, 1: for an AMDIM trunk r7 whole, r5 2x2, r1 -- the peer benchmark's
headline probe).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from multiview.eval.base import EvalContext, Evaluation, OptionError, option_field, register_evaluation
from multiview.eval.bundle import MAPS7_GRID, parse_grid
from multiview.eval.embed import Embedded
from multiview.eval.probes import DEFAULT_WEIGHT_DECAYS, Standardizer, knn_probe, linear_probe
from multiview.eval.progress import PhaseTimer
from multiview.eval.report import build_report, mark_same_split, probe_rows
from multiview.eval.tasks import manifest_view_fields, slug, write_report

# probe(train x, train y, test x, test y, method, progress) -> result; progress(n) counts the probe's fits
log = logging.getLogger(__name__)
Probe = Callable[[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray, str, Callable[[int], object]], dict]


@dataclass
class ProbeOptions:
    """The options every probe shares."""

    fields: list[str] | None = option_field(None, "fields to probe (default: every field with an encoder / view)")
    fuse: bool = option_field(True, "do not add the fields' concatenated features")
    features: Literal["global", "maps", "trunk", "trunk_maps", "maps7"] = option_field(
        "global",
        "what the probe reads: the encoders' global vectors (default); those plus every local conv map "
        "average-pooled to --grid (maps: the DIM / AMDIM papers' conv-map probes); the pooled trunk output "
        "before the projection head (trunk: timm encoders); the trunk's intermediate maps pooled to one grid "
        "each (trunk_maps, e.g. --grid 7,2,1); maps7 = trunk_maps with grid 7,2,1 (AMDIM: r7 whole, r5 2x2, r1)",
    )
    grid: int | list[int] = option_field(
        2, "pooling grid of maps / trunk_maps: one size, or one per map in order, e.g. 7,2,1", parse=parse_grid
    )


class ProbeEvaluation(Evaluation):
    """A probe fitted per feature set; subclasses give ``probe`` and the settings they record."""

    def check(self, options) -> None:
        grids = options.grid if isinstance(options.grid, list) else [options.grid]
        if not grids or any(isinstance(g, bool) or g < 1 for g in grids):
            raise OptionError("grid", f"expected a positive integer, got {options.grid}")

    def probe(self, options) -> Probe:
        raise NotImplementedError

    def fits_per_probe(self, options) -> int:
        """How many fits one probe makes (the unit of its progress bar)."""
        return 1

    def settings(self, options) -> dict:
        return {}

    def run(self, ctx: EvalContext, options) -> dict:
        ctx.check_splits(f"the {self.name} probe", learned_fits=True)  # before any embedding
        timer = PhaseTimer()
        bundle = ctx.encoders()
        maps7 = options.features == "maps7"
        features, grid = ("trunk_maps", MAPS7_GRID) if maps7 else (options.features, options.grid)
        if bundle is not None:
            bundle = bundle.with_probe_features(features, grid)
        fields = options.fields or (
            sorted(bundle.encoders) if bundle is not None else manifest_view_fields(ctx.manifest)
        )
        if not fields:
            raise ValueError(f"no fields to probe in {ctx.data}; pass --fields")
        fields = list(fields)
        with timer.phase("embed"):
            inputs = _probe_inputs(ctx, bundle, fields, _features_key(features, grid))
        probe, results = self.probe(options), {}
        n_sets = len(fields) + (1 if options.fuse and len(fields) > 1 else 0)
        total = len(inputs) * n_sets * self.fits_per_probe(options)
        with timer.phase("fit"), ctx.progress_bar(total=total, desc=f"{self.name} probes", unit="fit") as bar:
            for method, by_split in inputs.items():
                unit = self.name == "knn" and method == "learned"  # raw kNN inputs are standardised as a whole instead
                train_sets = _feature_sets(by_split[ctx.train_split], fields, options.fuse, unit)
                test_sets = _feature_sets(by_split[ctx.split], fields, options.fuse, unit)
                ytr, yte = by_split[ctx.train_split][fields[0]].labels, by_split[ctx.split][fields[0]].labels
                results[method] = {}
                for name in train_sets:
                    bar.set_postfix_str(f"{method} {name}", refresh=False)
                    results[method][name] = probe(train_sets[name], ytr, test_sets[name], yte, method, bar.update)
        out_dir = ctx.output(self.name)
        figures = {}
        if ctx.plots:
            with timer.phase("plots"):
                figures = _maps(ctx, inputs, fields, out_dir)
        log.info("%s", timer.line(self.name))
        settings = {
            "fields": fields,
            "fused": options.fuse and len(fields) > 1,
            "train_split": ctx.train_split,
            "label_field": ctx.label_field,
            "baseline": "raw" if ctx.methods.baseline else None,
            "features": options.features,
            **({"grid": grid} if features in ("maps", "trunk_maps") else {}),
            **self.settings(options),
            **({"fitted_on_scored_split": list(results)} if ctx.same_split else {}),
            **({"notes": list(ctx.notes)} if ctx.notes else {}),
        }
        rows = probe_rows(self.name, results)
        if ctx.same_split:
            mark_same_split(rows, results)  # every probe, learned or raw, is fitted on train_split
        report = build_report(self.name, results, rows=rows, checkpoint=ctx.checkpoint,
                              data=str(ctx.data), split=ctx.split, command=ctx.command, settings=settings,
                              figures=figures, recipe=bundle.recipe if bundle is not None else None,
                              seconds=timer.rounded())  # fmt: skip
        write_report(report, out_dir, self.name)
        return report


@register_evaluation("linear")
class Linear(ProbeEvaluation):
    """Logistic regression on frozen, standardised features; see :func:`multiview.eval.probes.linear_probe`."""

    help = "linear probe on frozen features: standardise, weight-decay search on a validation split, top-1"
    description = (
        "Logistic regression on frozen, standardised features per field (and fused); the weight decay is chosen "
        "on a stratified validation split carved from the train split."
    )

    @dataclass
    class Options(ProbeOptions):
        weight_decays: list[float] | None = option_field(
            None, "grid of weight decays (default: 1e-6 .. 1e-1, one per decade)"
        )
        val_fraction: float = option_field(0.2, "share of train held out (default: 0.2)")
        seed: int = option_field(0, "seed of the validation split (default: 0)")

    def check(self, options) -> None:
        super().check(options)
        if not 0 < options.val_fraction < 1:
            raise OptionError("val_fraction", f"expected a fraction in (0, 1), got {options.val_fraction}")

    def probe(self, options) -> Probe:
        decays = tuple(options.weight_decays) if options.weight_decays else DEFAULT_WEIGHT_DECAYS

        def fit(xtr, ytr, xte, yte, method, progress):
            return linear_probe(
                xtr, ytr, xte, yte, decays, options.val_fraction, options.seed, progress=progress
            ).to_dict()

        return fit

    def fits_per_probe(self, options) -> int:
        """The weight-decay search (one fit per decay) and the final fit on all of train."""
        return len(options.weight_decays or DEFAULT_WEIGHT_DECAYS) + 1

    def settings(self, options) -> dict:
        decays = options.weight_decays or DEFAULT_WEIGHT_DECAYS
        return {"weight_decays": list(decays), "val_fraction": options.val_fraction, "seed": options.seed}


@register_evaluation("knn")
class KNN(ProbeEvaluation):
    """Cosine kNN (k neighbours, ``exp(sim / temperature)`` votes) on frozen features, as in InstDisc. Raw inputs
    are standardised with the train statistics first (their units differ per dimension); learned embeddings are
    used as they are."""

    help = "cosine kNN on frozen features (k=20, exp(sim/0.07) weighted votes)"
    description = "Weighted cosine kNN as in InstDisc: the k nearest train items vote with exp(sim / tau)."

    @dataclass
    class Options(ProbeOptions):
        k: int = option_field(20, "neighbours (default: 20)")
        temperature: float = option_field(0.07, "vote temperature tau (default: 0.07)")
        chunk_size: int | None = option_field(None, "test rows per similarity block")

    def check(self, options) -> None:
        super().check(options)
        if options.k < 1:
            raise OptionError("k", f"expected a positive integer, got {options.k}")
        if options.temperature <= 0:
            raise OptionError("temperature", f"expected a positive number, got {options.temperature}")

    def probe(self, options) -> Probe:
        def fit(xtr, ytr, xte, yte, method, progress):
            if method == "raw":
                scale = Standardizer.fit(xtr)
                xtr, xte = scale(xtr), scale(xte)
            result = knn_probe(xtr, ytr, xte, yte, options.k, options.temperature, options.chunk_size).to_dict()
            progress(1)
            return result

        return fit

    def settings(self, options) -> dict:
        return {"k": options.k, "temperature": options.temperature}


def _features_key(features: str, grid) -> tuple:
    """What the probe reads, as a cache key part (``("global",)``; ``("maps", 2)``; ``("trunk_maps", (7, 2, 1))``)."""
    if features in ("global", "trunk"):
        return (features,)
    return (features, tuple(grid) if isinstance(grid, list | tuple) else grid)


def _probe_inputs(
    ctx: EvalContext, bundle, fields: Sequence[str], features: tuple = ("global",)
) -> dict[str, dict[str, dict[str, Embedded]]]:
    """``{method: {split: {field: Embedded}}}`` for the probes (raw features standardised for kNN later): each
    split read once for both methods, and nothing read again that the context's cache holds (retrieval's test
    embeddings, its raw inputs)."""
    out = {}
    splits = (ctx.train_split, ctx.split)
    learned, baseline = ctx.methods.learned, ctx.methods.baseline
    for s in dict.fromkeys(splits):
        ctx.cache.read(ctx, s, learned=fields if learned else (), raw=fields if baseline else (), bundle=bundle,
                       features=features)  # fmt: skip
    if learned:
        out["learned"] = {s: ctx.cache.learned(ctx, s, fields, bundle=bundle, features=features) for s in splits}
    if baseline:
        out["raw"] = ctx.cache.raw(ctx, fields, ctx.train_split, list(splits))
    for method, by_split in out.items():
        for s, embs in by_split.items():
            if embs[fields[0]].labels is None:
                raise ValueError(f"split {s!r} has no {ctx.label_field!r} labels; probes need labels ({method})")
    return out


def _feature_sets(
    embs: dict[str, Embedded], fields: Sequence[str], fuse: bool, unit_parts: bool = False
) -> dict[str, torch.Tensor]:
    """Per field, plus ``"fused"`` (the fields' features concatenated) when asked and there are several.

    ``unit_parts``: L2-normalise each field before concatenating, so each field weighs the same in a cosine.
    """
    sets = {f: embs[f].embeddings for f in fields}
    if fuse and len(fields) > 1:
        parts = [torch.nn.functional.normalize(sets[f], dim=1) if unit_parts else sets[f] for f in fields]
        sets["fused"] = torch.cat(parts, dim=1)
    return sets


def _maps(ctx: EvalContext, inputs: dict, fields: Sequence[str], out_dir) -> dict[str, str]:
    """A 2-D map of each field's evaluated-split embedding, coloured by label."""
    from multiview.eval.plots import plot_embedding_map

    main = "learned" if ctx.methods.learned else "raw"
    figures = {}
    for f in fields:
        emb = inputs[main][ctx.split][f]
        name = f"map_{slug(f)}.png"
        plot_embedding_map(emb.embeddings, emb.labels, out_dir / name, method=ctx.map_method, title=f"{f} ({main})")
        figures[f"{ctx.map_method} map {f}"] = name
    return figures
