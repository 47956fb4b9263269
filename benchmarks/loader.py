"""Loader throughput: our ShardStream over JPEG shards vs torchvision ImageFolder + PIL over the same loose JPEGs.

Real images: Fashion-MNIST (Debian's dataset-fashion-mnist; sklearn digits where it is not installed), resized
to 64 x 64 and JPEG-encoded once. Both pipelines decode to ``uint8 [1, 64, 64]`` tensors, shuffle, and collate
the same batch size, with 0 and 2 DataLoader workers. Each configuration runs one untimed warm-up epoch per
pipeline (page cache), then ``--repeats`` timed epochs alternating the two pipelines; the best epoch of each
counts (the machine is shared, so the best epoch is the least disturbed one).

    python benchmarks/loader.py [--n 10000] [--batch-size 64] [--workers 0 2]

The last line printed is JSON: ``ours_per_s``, ``baseline_per_s``, ``ratio`` (for the largest worker count) and
the figures of every configuration under ``by_workers``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from multiview.data import ShardStream, make_loader, write_dataset

FASHION = Path("/usr/share/datasets/fashion-mnist")


def load_images(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``uint8 [N, H, W]`` grey images and ``int64 [N]`` labels -> (images, labels, source name)."""
    if (FASHION / "train-images-idx3-ubyte.gz").exists():
        with gzip.open(FASHION / "train-images-idx3-ubyte.gz") as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(FASHION / "train-labels-idx1-ubyte.gz") as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
        return images[:n], labels[:n], "fashion-mnist"
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255 / 16)).astype(np.uint8)
    reps = -(-n // len(images))
    return np.tile(images, (reps, 1, 1))[:n], np.tile(digits.target, reps)[:n], "sklearn-digits"


def jpeg_64(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).resize((64, 64), Image.BILINEAR).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def prepare(root: Path, n: int) -> str:
    """Write the same JPEGs as shards (``root/shards``) and as an ImageFolder tree (``root/folder``)."""
    images, labels, source = load_images(n)
    jpegs = [jpeg_64(img) for img in images]
    samples = (
        {"__key__": f"{i:06d}", "image.jpg": j, "label.cls": int(y)} for i, (j, y) in enumerate(zip(jpegs, labels))
    )
    write_dataset(root / "shards", {"train": samples}, builder="benchmark-loader", maxcount=2000)
    for i, (j, y) in enumerate(zip(jpegs, labels)):
        folder = root / "folder" / f"{y:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:06d}.jpg").write_bytes(j)
    return source


def pil_grey(path: str) -> Image.Image:
    with open(path, "rb") as f:
        return Image.open(f).convert("L")


def ours(root: Path, batch_size: int, workers: int) -> DataLoader:
    stream = ShardStream(root / "shards", "train", fields=["image", "label"], batch_size=batch_size, seed=0)
    return make_loader(stream, num_workers=workers)


def baseline(root: Path, batch_size: int, workers: int) -> DataLoader:
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import PILToTensor

    dataset = ImageFolder(str(root / "folder"), loader=pil_grey, transform=PILToTensor())
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)


def epoch_rate(loader: DataLoader, key: str | int) -> float:
    """Images per second over one epoch; checks the batches are uint8 [B, 1, 64, 64]."""
    count, start = 0, time.perf_counter()
    for batch in loader:
        images = batch[key]
        assert images.dtype == torch.uint8 and tuple(images.shape[1:]) == (1, 64, 64), images.shape
        count += images.shape[0]
    return count / (time.perf_counter() - start)


def compare(root: Path, batch_size: int, workers: int, repeats: int) -> tuple[float, float]:
    """Best epoch rate of each pipeline over ``repeats`` epochs, alternating ours / baseline after one
    untimed warm-up epoch each (the machine is shared: alternating exposes both to the same load).
    """
    ours_loader, base_loader = ours(root, batch_size, workers), baseline(root, batch_size, workers)
    for loader in (ours_loader, base_loader):
        for _ in loader:
            pass
    ours_rates, base_rates = [], []
    for _ in range(repeats):
        ours_rates.append(epoch_rate(ours_loader, "image"))
        base_rates.append(epoch_rate(base_loader, 0))
    return max(ours_rates), max(base_rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images (default 10000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per pipeline; the best counts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="mv-bench-loader-"))
    try:
        source = prepare(root, args.n)
        print(f"{args.n} {source} images at 64x64 JPEG, batch {args.batch_size}")
        results = {}
        for workers in args.workers:
            ours_rate, base_rate = compare(root, args.batch_size, workers, args.repeats)
            results[str(workers)] = {
                "ours_per_s": round(ours_rate, 1),
                "baseline_per_s": round(base_rate, 1),
                "ratio": round(ours_rate / base_rate, 3),
            }
            print(
                f"workers={workers}: ShardStream {ours_rate:,.0f} img/s | ImageFolder+PIL {base_rate:,.0f} img/s"
                f" | ratio {ours_rate / base_rate:.2f}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    headline = results[str(max(args.workers))]
    print(json.dumps({**headline, "workers": max(args.workers), "n": args.n, "source": source, "by_workers": results}))


if __name__ == "__main__":
    main()
