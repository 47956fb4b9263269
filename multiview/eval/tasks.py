"""The three evaluations as library calls: retrieval, linear probe, kNN (the CLI and the trainer call these).

Each ``run_*`` function embeds the requested fields of a shard folder's splits with the checkpoint's encoders
(method ``"learned"``) and/or measures the raw-input baseline (method ``"cca"`` for retrieval, ``"raw"`` for the
probes), writes ``<out_dir>/<task>.json``, ``<out_dir>/<task>.md`` and PNGs, and returns the report dict.

Samples come from ``samples_fn(split)``; by default ``multiview.data.iter_samples(data, split)``. Tests pass their
own function, so nothing here needs real shards.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from multiview.eval.baselines import CCARetrieval, RawFeaturizer, raw_input
from multiview.eval.bundle import EvalBundle
from multiview.eval.embed import Embedded, collect_labels, embed_samples, sample_label
from multiview.eval.probes import Standardizer, knn_probe, linear_probe, small_problem_threads
from multiview.eval.report import build_report, write_json, write_markdown
from multiview.eval.retrieval import class_metrics, instance_metrics, top_k

SamplesFn = Callable[[str], Iterable[dict]]
NON_VIEW_MODALITIES = ("label", "meta")
GRID_HITS = 5


# ----------------------------------------------------------------------------------------------- inputs


def default_samples_fn(data: str | Path) -> SamplesFn:
    """``split -> iter_samples(data, split)`` (ordered, decoded; docs/architecture.md section 1)."""

    def samples(split: str) -> Iterable[dict]:
        from multiview.data import iter_samples

        return iter_samples(data, split)

    return samples


def read_manifest(data: str | Path, split: str = "test") -> dict:
    """The source's manifest; for shards without one, a stand-in ``{"fields": ...}`` inferred from the first
    samples of ``split``; ``{}`` for a folder holding neither (tests pass their own ``samples_fn``)."""
    from multiview.data.location import resolve
    from multiview.data.remote import is_local

    folder = Path(data) if is_local(str(data)) else None
    if folder and folder.is_dir() and not (folder / "manifest.json").is_file() and not any(folder.glob("*.tar")):
        return {}
    source = resolve(data, split)
    return source.manifest if source.manifest is not None else {"fields": source.fields()}


def manifest_view_fields(manifest: dict) -> list[str]:
    """Field names (extension dropped) whose modality is a view (not label / meta), in manifest order."""
    fields = manifest.get("fields", {})
    return [name.split(".", 1)[0] for name, info in fields.items() if info.get("modality") not in NON_VIEW_MODALITIES]


def resolve_paired(paired: str | bool, manifest: dict) -> tuple[bool, str]:
    """Instance-level pairing of query and gallery rows, and why.

    ``"auto"``: the rows of both fields come from the same samples, so they pair as instances unless the data set
    says otherwise in its manifest (``extra.pairing: "class"``, e.g. images and spoken digits paired at random
    within a class).
    """
    if isinstance(paired, bool):
        return paired, "set by the caller"
    if paired in ("yes", "true"):
        return True, "--paired yes"
    if paired in ("no", "false"):
        return False, "--paired no"
    if paired != "auto":
        raise ValueError(f"paired must be 'auto', 'yes' or 'no', got {paired!r}")
    declared = (manifest.get("extra") or {}).get("pairing")
    if declared is None:
        return True, "auto: query and gallery rows come from the same samples"
    level = pairing_level(declared)
    return level == "instance", f"auto: the manifest's extra.pairing says {declared!r}"


def pairing_level(declared) -> str:
    """``"instance"`` or ``"class"`` from a manifest's free-text ``extra.pairing``.

    Builders write a sentence: ``"instance: every field ... the same row"`` (mfeat) or ``"random within the
    class: class-level retrieval only"`` (avdigits). Text that starts with "instance" is instance-level; other
    text that mentions "class" is class-level.
    """
    text = str(declared).strip().lower()
    if text.startswith("instance"):
        return "instance"
    if "class" in text:
        return "class"
    raise ValueError(
        f"manifest extra.pairing is {declared!r}; expected text starting with 'instance' or naming 'class'"
    )


@dataclass
class Methods:
    learned: bool
    baseline: bool


def resolve_methods(checkpoint, bundle, baseline: str | None, compare_baseline: bool) -> Methods:
    """Which methods run: the checkpoint's encoders and/or the raw baseline."""
    if baseline not in (None, "raw"):
        raise ValueError(f"baseline must be 'raw' or None, got {baseline!r}")
    has_model = checkpoint is not None or bundle is not None
    if not has_model and baseline is None:
        raise ValueError("give a checkpoint (CKPT) or --baseline raw; got neither")
    if has_model and baseline == "raw":
        raise ValueError("--baseline raw evaluates raw inputs without a checkpoint; drop CKPT or drop --baseline")
    return Methods(learned=has_model, baseline=baseline == "raw" or compare_baseline)


def embed_learned(bundle: EvalBundle, samples: Iterable[dict], fields: Sequence[str], label_field, batch_size, device):
    """``{field: Embedded}`` from the checkpoint's encoders and eval transforms."""
    for f in fields:
        bundle.check_field(f)
    encoders = {f: (bundle.encoders[f], bundle.transforms[f]) for f in fields}
    return embed_samples(samples, encoders, batch_size=batch_size, device=device, label_field=label_field)


def collect_raw(samples: Iterable[dict], fields: Sequence[str], label_field) -> tuple[dict, np.ndarray | None, list]:
    """One pass: ``({field: [raw tensor]}, labels [N] or None, keys)``."""
    inputs: dict[str, list[torch.Tensor]] = {f: [] for f in fields}
    labels, keys = [], []
    # Per-sample tensors are tiny: one thread (300 avdigits clips: 7.3 s on 2 busy threads, 0.19 s on 1).
    with small_problem_threads(0):
        for sample in samples:
            keys.append(str(sample.get("__key__", len(keys))))
            labels.append(sample_label(sample, label_field))
            for f in fields:
                inputs[f].append(raw_input(sample, f))
    if not keys:
        raise ValueError("the split has no samples")
    return inputs, collect_labels(labels, label_field, keys), keys


def embed_raw(samples_fn: SamplesFn, fields, train_split: str, splits: Sequence[str], label_field):
    """``{split: {field: Embedded}}`` of raw inputs, every split shaped like the train split."""
    collected = {s: collect_raw(samples_fn(s), fields, label_field) for s in dict.fromkeys([train_split, *splits])}
    out = {}
    for split in splits:
        inputs, labels, keys = collected[split]
        out[split] = {}
        for f in fields:
            feat = RawFeaturizer(f).fit(collected[train_split][0][f])
            out[split][f] = Embedded(feat.transform(inputs[f]), labels, keys)
    return out


# ------------------------------------------------------------------------------------------- retrieval


def retrieval_pairs(query, gallery, fields, all_pairs: bool) -> list[tuple[str, str]]:
    if all_pairs:
        if not fields or len(fields) < 2:
            raise ValueError(f"--all-pairs needs at least two fields, got {fields}")
        return list(itertools.combinations(fields, 2))
    if not query or not gallery:
        raise ValueError(f"give --query and --gallery (or --all-pairs), got query={query!r} gallery={gallery!r}")
    if query == gallery:
        raise ValueError(f"query and gallery are the same field {query!r}; expected two different fields")
    return [(query, gallery)]


def _direction_metrics(
    q: torch.Tensor, g: torch.Tensor, labels, paired: bool, ks, chunk_size
) -> tuple[dict, np.ndarray]:
    """Both levels for one direction, and the ranks for its recall curve."""
    block: dict = {}
    ranks = None
    if paired:
        block["instance"] = instance_metrics(q, g, ks, chunk_size, return_ranks=True)
        ranks = block["instance"].pop("ranks")
    if labels is not None:
        block["class"] = class_metrics(q, g, labels, labels, ks, chunk_size, return_ranks=True)
        class_ranks = block["class"].pop("ranks")
        ranks = class_ranks if ranks is None else ranks
    return block, ranks


def _valid_ks(ks: Sequence[int], n: int) -> tuple[int, ...]:
    kept = tuple(k for k in ks if 1 <= k <= n)
    if not kept:
        raise ValueError(f"no k in {list(ks)} fits a gallery of {n} items")
    return kept


def run_retrieval(
    checkpoint: str | None = None,
    *,
    data: str | Path,
    split: str = "test",
    query: str | None = None,
    gallery: str | None = None,
    fields: Sequence[str] | None = None,
    all_pairs: bool = False,
    baseline: str | None = None,
    compare_baseline: bool = True,
    train_split: str = "train",
    paired: str | bool = "auto",
    label_field: str | None = "label",
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    cca_components: int = 10,
    out_dir: str | Path = "runs/eval/retrieval",
    plots: bool = True,
    map_method: str = "pca",
    grid_queries: int = 6,
    command: Sequence[str] | str = "",
    bundle: EvalBundle | None = None,
    samples_fn: SamplesFn | None = None,
) -> dict:
    """Cross-view retrieval in both directions for one pair of fields (or all pairs); see the module docstring.

    Returns the report dict (also written to ``out_dir/retrieval.json`` and ``retrieval.md``).
    """
    methods = resolve_methods(checkpoint, bundle, baseline, compare_baseline)
    manifest = read_manifest(data, split)
    samples_fn = samples_fn or default_samples_fn(data)
    if all_pairs and not fields:
        fields = sorted(bundle.encoders) if bundle is not None else manifest_view_fields(manifest)
    pairs = retrieval_pairs(query, gallery, fields, all_pairs)
    used = list(dict.fromkeys(f for pair in pairs for f in pair))
    is_paired, why = resolve_paired(paired, manifest)
    if methods.learned and bundle is None:
        from multiview.eval.bundle import load_bundle

        bundle = load_bundle(checkpoint)

    spaces: dict[str, dict] = {}  # method -> {pair: (q_emb, g_emb)}
    labels = None
    if methods.learned:
        emb = embed_learned(bundle, samples_fn(split), used, label_field, batch_size, device)
        labels = emb[used[0]].labels
        # Pair heads (CMC pair_heads) put the two fields in the space trained for that pair; else encoder outputs.
        spaces["learned"] = {(a, b): bundle.project_pair(a, b, emb[a].embeddings, emb[b].embeddings) for a, b in pairs}
        maps = {f: emb[f] for f in used}
    if methods.baseline:
        raw = embed_raw(samples_fn, used, train_split, [train_split, split], label_field)
        labels = raw[split][used[0]].labels if labels is None else labels
        spaces["cca"] = {}
        for a, b in pairs:
            cca = CCARetrieval(n_components=cca_components).fit(
                raw[train_split][a].embeddings, raw[train_split][b].embeddings
            )
            spaces["cca"][(a, b)] = cca.transform(raw[split][a].embeddings, raw[split][b].embeddings)
        if not methods.learned:
            maps = {f: raw[split][f] for f in used}
    if not is_paired and labels is None:
        raise ValueError(f"rows are not instance-paired ({why}) and the samples have no {label_field!r} labels")

    n = next(iter(maps.values())).embeddings.shape[0]
    ks = _valid_ks(ks, n)
    results: dict = {}
    curves: dict[tuple, dict[str, np.ndarray]] = {}
    for method, by_pair in spaces.items():
        results[method] = {}
        for (a, b), (qa, gb) in by_pair.items():
            pair_res = {}
            for src, dst, x, y in ((a, b, qa, gb), (b, a, gb, qa)):
                pair_res[f"{src}->{dst}"], ranks = _direction_metrics(x, y, labels, is_paired, ks, chunk_size)
                curves.setdefault((a, b), {})[f"{src}->{dst} ({method})"] = ranks
            results[method][f"{a}<->{b}"] = pair_res

    out_dir = Path(out_dir)
    figures = {}
    if plots:
        main = "learned" if methods.learned else "cca"  # the maps of the baseline show raw inputs, not CCA
        figures = _retrieval_figures(
            out_dir, spaces[main], curves, maps, labels, is_paired, samples_fn, split, map_method, grid_queries, main
        )
    report = build_report(
        "retrieval",
        results,
        checkpoint=checkpoint,
        data=str(data),
        split=split,
        command=command,
        settings={
            "pairs": [f"{a}<->{b}" for a, b in pairs],
            "paired": is_paired,
            "paired_reason": why,
            "label_field": label_field,
            "ks": list(ks),
            "train_split": train_split,
            "baseline": "cca" if methods.baseline else None,
            "pair_heads": [f"{a}<->{b}" for a, b in pairs if bundle is not None and bundle.has_pair_heads(a, b)],
            "cca_components": cca_components,
            "n_test": n,
            "similarity": "cosine",
            "ties": "against the query",
        },
        figures=figures,
        recipe=bundle.recipe if bundle is not None else None,
    )
    _write(report, out_dir, "retrieval")
    return report


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _grid_rows(n: int, count: int) -> np.ndarray:
    """``count`` evenly spread row indices (deterministic, so reruns show the same queries)."""
    return np.unique(np.linspace(0, n - 1, num=min(count, n)).round().astype(int))


def _retrieval_figures(
    out_dir, space, curves, maps, labels, paired, samples_fn, split, map_method, grid_queries, method
) -> dict[str, str]:
    from multiview.eval.plots import plot_embedding_map, plot_recall_curves, plot_retrieval_grid

    figures: dict[str, str] = {}
    n = next(iter(maps.values())).embeddings.shape[0]
    for (a, b), named in curves.items():
        name = f"recall_{_slug(a)}-{_slug(b)}.png"
        plot_recall_curves(named, out_dir / name, max_k=min(50, n), title=f"recall@k, {a} <-> {b}")
        figures[f"recall@k {a}<->{b}"] = name
    grids = []  # (title, file, query rows, hit rows [Q, k], query field, gallery field)
    k = min(GRID_HITS, n)
    rows = _grid_rows(n, grid_queries)
    for (a, b), (qa, gb) in space.items():
        for src, dst, x, y in ((a, b, qa, gb), (b, a, gb, qa)):
            hits = top_k(x[rows], y, k).numpy()
            grids.append((f"{src} -> {dst} ({method})", f"grid_{_slug(src)}-{_slug(dst)}.png", rows, hits, src, dst))
    wanted = {int(i) for _, _, r, h, _, _ in grids for i in (*r, *h.reshape(-1))}
    values = _pick_samples(samples_fn(split), wanted)
    keys = next(iter(maps.values())).keys
    for title, name, rows_, hits, src, dst in grids:
        correct = hit_grades(rows_, hits, labels, paired)
        queries = [_thumb(values[i], src) for i in rows_]
        hit_vals = [[_thumb(values[j], dst) for j in row] for row in hits]
        captions = [f"{keys[i]}" + ("" if labels is None else f" y={labels[i]}") for i in rows_]
        legend = "green: the paired item, amber: same class, red: other" if paired else "green: same class, red: other"
        plot_retrieval_grid(
            queries, hit_vals, correct, out_dir / name, title=f"{title}\n{legend}", query_titles=captions
        )
        figures[f"top-{k} hits {title}"] = name
    for f, emb in maps.items():
        name = f"map_{_slug(f)}.png"
        space = "learned" if method == "learned" else "raw inputs"
        plot_embedding_map(emb.embeddings, emb.labels, out_dir / name, method=map_method, title=f"{f} ({space})")
        figures[f"{map_method} map {f}"] = name
    return figures


def hit_grades(rows: np.ndarray, hits: np.ndarray, labels: np.ndarray | None, paired: bool) -> np.ndarray:
    """``[Q, k]`` grades of the hits of query rows: 2 the paired item (paired) or any same-label item (unpaired),
    1 a same-label item that is not the paired one (paired, with labels), 0 wrong."""
    same_class = labels[hits] == labels[rows][:, None] if labels is not None else np.zeros(hits.shape, dtype=bool)
    if not paired:
        return same_class.astype(np.int64) * 2
    same_item = hits == rows[:, None]
    return np.where(same_item, 2, np.where(same_class, 1, 0))


def _pick_samples(samples: Iterable[dict], wanted: set[int]) -> dict[int, dict]:
    """The samples at the given row indices (one ordered pass, stops after the last one)."""
    picked, last = {}, max(wanted) if wanted else -1
    for i, sample in enumerate(samples):
        if i in wanted:
            picked[i] = sample
        if i >= last:
            break
    return picked


def _thumb(sample: dict, field: str) -> tuple:
    return sample[field], sample.get(f"{field}.sample_rate")


# ----------------------------------------------------------------------------------------------- probes


def _probe_inputs(methods, bundle, samples_fn, fields, train_split, split, label_field, batch_size, device):
    """``{method: {split: {field: Embedded}}}`` for the probes (raw features standardised for kNN later)."""
    out = {}
    if methods.learned:
        out["learned"] = {
            s: embed_learned(bundle, samples_fn(s), fields, label_field, batch_size, device)
            for s in (train_split, split)
        }
    if methods.baseline:
        out["raw"] = embed_raw(samples_fn, fields, train_split, [train_split, split], label_field)
    for method, by_split in out.items():
        for s, embs in by_split.items():
            if embs[fields[0]].labels is None:
                raise ValueError(f"split {s!r} has no {label_field!r} labels; probes need labels ({method})")
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


def _run_probe(
    task: str,
    probe: Callable[[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray, str], dict],
    checkpoint,
    *,
    data,
    fields,
    split,
    train_split,
    fuse,
    baseline,
    compare_baseline,
    label_field,
    batch_size,
    device,
    out_dir,
    plots,
    map_method,
    command,
    bundle,
    samples_fn,
    settings,
    features: str = "global",
    grid: int = 2,
) -> dict:
    methods = resolve_methods(checkpoint, bundle, baseline, compare_baseline)
    manifest = read_manifest(data, split)
    samples_fn = samples_fn or default_samples_fn(data)
    if methods.learned and bundle is None:
        from multiview.eval.bundle import load_bundle

        bundle = load_bundle(checkpoint)
    if bundle is not None:
        bundle = bundle.with_probe_features(features, grid)
    if not fields:
        fields = sorted(bundle.encoders) if bundle is not None else manifest_view_fields(manifest)
    if not fields:
        raise ValueError(f"no fields to probe in {data}; pass --fields")
    fields = list(fields)
    inputs = _probe_inputs(methods, bundle, samples_fn, fields, train_split, split, label_field, batch_size, device)
    results: dict = {}
    for method, by_split in inputs.items():
        unit = task == "knn" and method == "learned"  # raw kNN inputs are standardised as a whole instead
        train_sets = _feature_sets(by_split[train_split], fields, fuse, unit)
        test_sets = _feature_sets(by_split[split], fields, fuse, unit)
        ytr, yte = by_split[train_split][fields[0]].labels, by_split[split][fields[0]].labels
        results[method] = {name: probe(train_sets[name], ytr, test_sets[name], yte, method) for name in train_sets}
    out_dir = Path(out_dir)
    figures = {}
    if plots:
        from multiview.eval.plots import plot_embedding_map

        main = "learned" if methods.learned else "raw"
        for f in fields:
            emb = inputs[main][split][f]
            name = f"map_{_slug(f)}.png"
            plot_embedding_map(emb.embeddings, emb.labels, out_dir / name, method=map_method, title=f"{f} ({main})")
            figures[f"{map_method} map {f}"] = name
    report = build_report(
        task,
        results,
        checkpoint=checkpoint,
        data=str(data),
        split=split,
        command=command,
        settings={
            "fields": fields,
            "fused": fuse and len(fields) > 1,
            "train_split": train_split,
            "label_field": label_field,
            "baseline": "raw" if methods.baseline else None,
            "features": features,
            **({"grid": grid} if features == "maps" else {}),
            **settings,
        },
        figures=figures,
        recipe=bundle.recipe if bundle is not None else None,
    )
    _write(report, out_dir, task)
    return report


def run_linear(
    checkpoint: str | None = None,
    *,
    data: str | Path,
    fields: Sequence[str] | None = None,
    split: str = "test",
    train_split: str = "train",
    fuse: bool = True,
    baseline: str | None = None,
    compare_baseline: bool = True,
    label_field: str = "label",
    weight_decays: Sequence[float] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    batch_size: int = 256,
    device: str = "cpu",
    out_dir: str | Path = "runs/eval/linear",
    plots: bool = True,
    map_method: str = "pca",
    command: Sequence[str] | str = "",
    bundle: EvalBundle | None = None,
    samples_fn: SamplesFn | None = None,
    features: str = "global",
    grid: int = 2,
) -> dict:
    """Linear probe (standardised, weight decay chosen on a validation split carved from train), per field and
    fused; see :func:`multiview.eval.probes.linear_probe`. ``features``: ``"global"`` (the encoders' vectors) or
    ``"maps"`` (plus their local maps pooled to ``grid x grid``) or ``"trunk"`` (before the projection head); see
    :meth:`EvalBundle.with_probe_features`."""
    from multiview.eval.probes import DEFAULT_WEIGHT_DECAYS

    wds = tuple(weight_decays) if weight_decays else DEFAULT_WEIGHT_DECAYS

    def probe(xtr, ytr, xte, yte, method):
        return linear_probe(xtr, ytr, xte, yte, wds, val_fraction, seed).to_dict()

    return _run_probe(
        "linear",
        probe,
        checkpoint,
        data=data,
        fields=fields,
        split=split,
        train_split=train_split,
        fuse=fuse,
        baseline=baseline,
        compare_baseline=compare_baseline,
        label_field=label_field,
        batch_size=batch_size,
        device=device,
        out_dir=out_dir,
        plots=plots,
        map_method=map_method,
        command=command,
        bundle=bundle,
        samples_fn=samples_fn,
        settings={"weight_decays": list(wds), "val_fraction": val_fraction, "seed": seed},
        features=features,
        grid=grid,
    )


def run_knn(
    checkpoint: str | None = None,
    *,
    data: str | Path,
    fields: Sequence[str] | None = None,
    split: str = "test",
    train_split: str = "train",
    fuse: bool = True,
    k: int = 20,
    temperature: float = 0.07,
    baseline: str | None = None,
    compare_baseline: bool = True,
    label_field: str = "label",
    chunk_size: int | None = None,
    batch_size: int = 256,
    device: str = "cpu",
    out_dir: str | Path = "runs/eval/knn",
    plots: bool = True,
    map_method: str = "pca",
    command: Sequence[str] | str = "",
    bundle: EvalBundle | None = None,
    samples_fn: SamplesFn | None = None,
    features: str = "global",
    grid: int = 2,
) -> dict:
    """Cosine kNN (k neighbours, ``exp(sim / temperature)`` votes) on frozen features, per field and fused
    (``features`` / ``grid`` as in :func:`run_linear`).

    Raw inputs are standardised with the train statistics first (their units differ per dimension); learned
    embeddings are used as they are, as in InstDisc.
    """

    def probe(xtr, ytr, xte, yte, method):
        if method == "raw":
            scale = Standardizer.fit(xtr)
            xtr, xte = scale(xtr), scale(xte)
        return knn_probe(xtr, ytr, xte, yte, k, temperature, chunk_size).to_dict()

    return _run_probe(
        "knn",
        probe,
        checkpoint,
        data=data,
        fields=fields,
        split=split,
        train_split=train_split,
        fuse=fuse,
        baseline=baseline,
        compare_baseline=compare_baseline,
        label_field=label_field,
        batch_size=batch_size,
        device=device,
        out_dir=out_dir,
        plots=plots,
        map_method=map_method,
        command=command,
        bundle=bundle,
        samples_fn=samples_fn,
        settings={"k": k, "temperature": temperature},
        features=features,
        grid=grid,
    )


def _write(report: dict, out_dir: Path, task: str) -> None:
    write_json(report, out_dir / f"{task}.json")
    write_markdown(report, out_dir / f"{task}.md")
