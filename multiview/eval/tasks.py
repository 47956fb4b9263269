"""What the evaluations share -- the manifest, pairing, embedding a split with the checkpoint's encoders or as raw
inputs, writing a report -- and the built-in evaluations as library calls.

``run_retrieval``, ``run_linear`` and ``run_knn`` run the registered evaluations (:mod:`multiview.eval.base`):
each embeds the requested fields of the source's splits with the checkpoint's encoders (method ``"learned"``)
and/or measures the raw-input baseline (method ``"cca"`` for retrieval, ``"raw"`` for the probes), writes
``<out_dir>/<task>.json``, ``<out_dir>/<task>.md`` and PNGs, and returns the report dict. Their keyword
arguments are :class:`~multiview.eval.base.EvalContext` fields (``data``, ``split``, ``samples_fn``, ...) and the
evaluation's options (``query``, ``features``, ...). Tests pass their own ``samples_fn``, so nothing here needs
real shards.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from multiview.eval.baselines import RawFeaturizer, raw_input
from multiview.eval.bundle import EvalBundle
from multiview.eval.embed import Embedded, collect_labels, embed_samples, sample_label
from multiview.eval.probes import small_problem_threads
from multiview.eval.report import write_json, write_markdown
from multiview.eval.retrieval import hit_grades  # noqa: F401 (part of this module's API)

SamplesFn = Callable[[str], Iterable[dict]]
NON_VIEW_MODALITIES = ("label", "meta", "mask")  # a mask is ground truth for `eval segment`, not a view
GRID_HITS = 5


# ----------------------------------------------------------------------------------------------- inputs


def default_samples_fn(data, rename: dict | None = None) -> SamplesFn:
    """``split -> iter_samples(data, split)`` (ordered, decoded; fields renamed as the recipe's ``data.rename``)."""

    def samples(split: str) -> Iterable[dict]:
        from multiview.data import iter_samples

        return iter_samples(data, split, rename=rename)

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
    """Field names (extension dropped) whose modality is a view (not label / meta / mask), in manifest order."""
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


def slug(text: str) -> str:
    """A file-name-safe form of a field or pair name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def write_report(report: dict, out_dir: Path, task: str) -> None:
    """``<out_dir>/<task>.json`` and ``<task>.md``."""
    write_json(report, out_dir / f"{task}.json")
    write_markdown(report, out_dir / f"{task}.md")


# ------------------------------------------------------------------------------------- library calls
def run_retrieval(checkpoint: str | None = None, **kwargs) -> dict:
    """Cross-view retrieval (:class:`multiview.eval.retrieval_task.Retrieval`); kwargs: context and options."""
    from multiview.eval.base import run_evaluation

    return run_evaluation("retrieval", checkpoint, **kwargs)


def run_linear(checkpoint: str | None = None, **kwargs) -> dict:
    """Linear probe (:class:`multiview.eval.probe_tasks.Linear`); kwargs: context and options."""
    from multiview.eval.base import run_evaluation

    return run_evaluation("linear", checkpoint, **kwargs)


def run_knn(checkpoint: str | None = None, **kwargs) -> dict:
    """Cosine kNN (:class:`multiview.eval.probe_tasks.KNN`); kwargs: context and options."""
    from multiview.eval.base import run_evaluation

    return run_evaluation("knn", checkpoint, **kwargs)
