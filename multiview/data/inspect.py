"""Summaries of a shard folder (counts, fields, shapes, rates) and a preview grid of its first samples."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multiview.data.manifest import load_manifest, split_entry
from multiview.data.reader import iter_samples


def summarize(root: str | Path) -> dict[str, Any]:
    """The facts of a shard folder as a dict: builder, fields (modality, shape, dtype, rate), splits (count,
    shard counts and bytes). Reads the manifest only.
    """
    manifest = load_manifest(root)
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


def format_summary(summary: dict[str, Any], per_shard: bool = True) -> str:
    """Human-readable text of :func:`summarize`'s dict."""
    lines = [f"{summary['root']}  (builder: {summary['builder']}, args: {summary['builder_args']})", "fields:"]
    for name, info in summary["fields"].items():
        shape = "x".join("?" if d is None else str(d) for d in info.get("shape", [])) if "shape" in info else "-"
        rate = f"  {info['sample_rate']} Hz" if "sample_rate" in info else ""
        group = f"  group {info['camera_group']}" if "camera_group" in info else ""
        lines.append(f"  {name:<20} {info['modality']:<7} {info.get('dtype', '-'):<8} [{shape}]{rate}{group}")
    lines.append("splits:")
    for name, split in summary["splits"].items():
        lines.append(
            f"  {name:<10} {split['count']:>9} samples in {split['shards']} shard(s), {split['bytes']:,} bytes"
        )
        if per_shard:
            lines += [f"    {shard}: {count}" for shard, count in split["per_shard"].items()]
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
    """Draw one field: an image, a log-mel spectrogram, a heatmap of a sensor array or a vector's line."""
    if modality in ("image", "camera"):
        img = value.permute(1, 2, 0).numpy()
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img[..., :3], cmap="gray", vmin=0, vmax=255)
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


def preview(root: str | Path, out: str | Path, split: str | None = None, n: int = 6) -> Path:
    """Draw the first ``n`` samples of ``split`` (default: the first split) as a grid, one row per sample and
    one column per image / camera / audio / sensor / vector field; labels and keys in the row titles.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    manifest = load_manifest(root)
    split = split or next(iter(manifest["splits"]))
    entry = split_entry(manifest, split, root)
    modality = {f.rpartition(".")[0]: info["modality"] for f, info in manifest["fields"].items()}
    drawn = [f.rpartition(".")[0] for f in entry["fields"] if modality[f.rpartition(".")[0]] not in ("label", "meta")]
    labels = [f.rpartition(".")[0] for f in entry["fields"] if modality[f.rpartition(".")[0]] == "label"]
    samples = []
    for sample in iter_samples(root, split):
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
    fig.suptitle(f"{Path(root).name} / {split}: first {len(samples)} of {entry['count']}", fontsize=9)
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
