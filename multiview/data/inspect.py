"""Summaries of a shard folder (counts, fields, shapes, rates) and a preview grid of its first samples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multiview.data.location import SplitSource, resolve
from multiview.data.manifest import MANIFEST_NAME, load_manifest
from multiview.data.reader import iter_samples
from multiview.data.remote import IOOptions, is_local
from multiview.data.tarstream import field_name


def summarize(root: str | Path, split: str | None = None, options: IOOptions | None = None) -> dict[str, Any]:
    """The facts of a shard source as a dict: builder, fields (modality, shape, dtype, rate), splits (count,
    shard counts and bytes). Reads the manifest only; a source without one (foreign shards, URLs) is described
    by its shard list and the fields of its first samples (counts unknown: ``None``).
    """
    source = resolve(root, split, options) if split or not _has_manifest(root) else None
    if source is not None and source.manifest is None:
        return _summarize_foreign(source)
    manifest = source.manifest if source is not None else load_manifest(root)
    splits = {
        name: {
            "count": entry["count"],
            "shards": len(entry["shards"]),
            "bytes": sum(s.get("bytes", 0) for s in entry["shards"]),
            "per_shard": {s["name"]: s["count"] for s in entry["shards"]},
        }
        for name, entry in manifest["splits"].items()
    }
    return {
        "root": str(root),
        "builder": manifest.get("builder"),
        "builder_args": manifest.get("builder_args", {}),
        "fields": manifest["fields"],
        "splits": splits,
        "keys_sanitised": manifest.get("keys_sanitised", 0),
    }


def _has_manifest(root) -> bool:
    return isinstance(root, str | Path) and is_local(str(root)) and (Path(root) / MANIFEST_NAME).is_file()


def _summarize_foreign(source: SplitSource) -> dict[str, Any]:
    """A manifest-less source: its shards (counts unknown) and the fields peeked from its first samples."""
    return {
        "root": source.spec,
        "builder": None,
        "builder_args": {},
        "fields": source.fields(),
        "splits": {
            source.split: {
                "count": None,
                "shards": len(source.urls),
                "bytes": None,
                "per_shard": {url: None for url in source.urls},
            }
        },
        "keys_sanitised": 0,
        "note": "no manifest: fields from the first samples, counts unknown (`multiview shards index` counts them)",
    }


def format_summary(summary: dict[str, Any], per_shard: bool = True) -> str:
    """Human-readable text of :func:`summarize`'s dict."""
    lines = [f"{summary['root']}  (builder: {summary['builder']}, args: {summary['builder_args']})", "fields:"]
    for name, info in summary["fields"].items():
        shape = "x".join("?" if d is None else str(d) for d in info.get("shape", [])) if "shape" in info else "-"
        rate = f"  {info['sample_rate']} Hz" if "sample_rate" in info else ""
        group = f"  group {info['camera_group']}" if "camera_group" in info else ""
        seen = f"  (in {info['in']} samples)" if "in" in info else ""
        lines.append(f"  {name:<20} {info['modality']:<7} {info.get('dtype', '-'):<8} [{shape}]{rate}{group}{seen}")
    lines.append("splits:")
    for name, split in summary["splits"].items():
        count = "?" if split["count"] is None else split["count"]
        size = "" if split["bytes"] is None else f", {split['bytes']:,} bytes"
        lines.append(f"  {name:<10} {count:>9} samples in {split['shards']} shard(s){size}")
        if per_shard:
            lines += [f"    {shard}: {'?' if n is None else n}" for shard, n in split["per_shard"].items()]
    if summary.get("note"):
        lines.append(summary["note"])
    if summary["keys_sanitised"]:
        lines.append(f"keys sanitised at write time: {summary['keys_sanitised']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- preview
def _log_mel(wave: torch.Tensor, rate: int) -> np.ndarray:
    """``[C, T]`` waveform -> log-mel ``[n_mels, frames]`` of its first channel."""
    import torchaudio

    n_fft = 2 ** int(math.log2(max(16, min(1024, wave.shape[-1]))))
    n_mels = min(64, n_fft // 4)
    mel = torchaudio.transforms.MelSpectrogram(rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=n_mels)(wave[:1])
    return torchaudio.transforms.AmplitudeToDB()(mel)[0].numpy()


def _draw(ax, value: Any, modality: str, sample: dict, name: str) -> None:
    """Draw one field: an image, a label mask, a log-mel spectrogram, a heatmap of a sensor array or a vector's line."""
    if modality in ("image", "camera"):
        img = value.permute(1, 2, 0).numpy()
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img[..., :3], cmap="gray", vmin=0, vmax=255)
    elif modality == "mask":  # labels 0..9 in tab10's ten distinct colours
        ax.imshow(value.reshape(value.shape[-2:]).numpy(), cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
    elif modality == "audio":
        rate = sample.get(f"{name}.sample_rate", 16000)
        wave = value if value.ndim == 2 else value.reshape(1, -1)
        ax.imshow(_log_mel(wave.float(), int(rate)), origin="lower", aspect="auto", cmap="magma")
    elif value.ndim == 1:
        ax.plot(value.float().numpy(), lw=0.8)
    else:
        arr = value.float()
        if arr.ndim == 3:  # taxel grid [H, W, T]: mean activity over time
            arr = arr.abs().mean(-1)
        ax.imshow(arr.reshape(arr.shape[0], -1).numpy(), aspect="auto", cmap="viridis")
    ax.set_xticks([])
    ax.set_yticks([])


def preview(
    root: str | Path, out: str | Path, split: str | None = None, n: int = 6, options: IOOptions | None = None
) -> Path:
    """Draw the first ``n`` samples of ``split`` (default: the first split) as a grid, one row per sample and
    one column per image / camera / audio / sensor / vector field; labels and keys in the row titles.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if split is None and _has_manifest(root):
        split = next(iter(load_manifest(root)["splits"]))
    source = resolve(root, split or "train", options)
    infos = source.fields()
    modality = {field_name(f): info["modality"] for f, info in infos.items()}
    drawn = [n for n, m in modality.items() if m not in ("label", "meta")]
    labels = [n for n, m in modality.items() if m == "label"]
    samples = []
    for sample in iter_samples(root, source.split, fields=drawn + labels, options=options):
        samples.append(sample)
        if len(samples) >= n:
            break
    cols = max(1, len(drawn))
    fig, axes = plt.subplots(len(samples) or 1, cols, figsize=(2.2 * cols, 2.0 * max(1, len(samples))), squeeze=False)
    for row, sample in enumerate(samples):
        title = sample["__key__"] + "".join(f" {lab}={sample[lab]}" for lab in labels)
        for col, name in enumerate(drawn):
            _draw(axes[row][col], sample[name], modality[name], sample, name)
            axes[row][col].set_title(f"{name}" if row == 0 else "", fontsize=8)
        axes[row][0].set_ylabel(title, fontsize=7)
    for col in range(cols if not drawn else 0):
        axes[0][col].axis("off")
    total = "?" if source.total is None else source.total
    fig.suptitle(f"{Path(str(root)).name} / {source.split}: first {len(samples)} of {total}", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def field_names(root: str | Path, modalities: Sequence[str]) -> list[str]:
    """Field names (without extension) of the given modalities, e.g. ``field_names(d, ["image", "camera"])``."""
    manifest = load_manifest(root)
    return [f.rpartition(".")[0] for f, info in manifest["fields"].items() if info["modality"] in modalities]
