"""Loader throughput: our ShardStream over JPEG shards vs torchvision ImageFolder + PIL over the same loose JPEGs.

Real images: Fashion-MNIST (Debian's dataset-fashion-mnist; sklearn digits where it is not installed), resized
to 64 x 64 and JPEG-encoded once. Both pipelines decode to ``uint8 [1, 64, 64]`` tensors, shuffle, and collate
the same batch size, with 0 and 2 DataLoader workers. Each configuration runs one untimed warm-up epoch per
pipeline (page cache), then ``--repeats`` timed epochs alternating the two pipelines; the best epoch of each
counts (the machine is shared, so the best epoch is the least disturbed one).

    python benchmarks/loader.py [--n 10000] [--batch-size 64] [--workers 0 2] [--png-n 1000] [--png-only]

PNG decode cost, safe vs. unsafe (``--png-n`` images, 0 skips it): the same data-set images as PNG at 64 x 64 grey
and 224 x 224 RGB, decoded by the library (``decode_value("png", ...)``: PIL, which raises on corrupt bytes) and by
``torchvision.io.decode_png`` (the former fast path, which segfaults on some corrupt PNGs: issue 14), alternating,
best of ``--repeats`` passes. ``--png-only`` skips the loader comparison.

The last line printed is JSON: ``ours_per_s``, ``baseline_per_s``, ``ratio`` (for the largest worker count), the
figures of every configuration under ``by_workers``, and under ``png`` per image size ``safe_us`` and ``unsafe_us``
(microseconds per image) and ``ratio`` (safe / unsafe: the cost of safety).
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
from multiview.data.fields import decode_value

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


def png_corpus(images: np.ndarray, size: int, rgb: bool) -> list[bytes]:
    """The images resized to ``size`` px as PNG: grey, or RGB with three different channels (image, its transpose,
    its mirror) so the encoder cannot collapse them."""
    out = []
    for image in images:
        grey = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
        arr = np.stack([grey, grey.T, grey[:, ::-1]], axis=-1) if rgb else grey
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def png_decode_cost(images: np.ndarray, repeats: int) -> dict[str, dict[str, float]]:
    """Microseconds per image of ``decode_value("png")`` (safe) vs. ``torchvision.io.decode_png`` (unsafe) on the
    same PNGs; the two alternate pass by pass and the best pass of each counts. Checks both decode alike."""
    from torchvision.io import ImageReadMode, decode_png

    def unsafe(data: bytes) -> torch.Tensor:
        return decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED)

    def safe(data: bytes) -> torch.Tensor:
        return decode_value("png", data)

    results = {}
    for size, rgb, count in ((64, False, len(images)), (224, True, max(1, len(images) // 5))):
        pngs = png_corpus(images[:count], size, rgb)
        assert all(torch.equal(safe(p), unsafe(p)) for p in pngs[:20])
        best = {"safe": float("inf"), "unsafe": float("inf")}
        for _ in range(repeats + 1):  # the first pass of each is a warm-up like any other: best-of absorbs it
            for name, decode in (("safe", safe), ("unsafe", unsafe)):
                start = time.perf_counter()
                for p in pngs:
                    decode(p)
                best[name] = min(best[name], (time.perf_counter() - start) / len(pngs))
        results[f"{size}x{size}x{3 if rgb else 1}"] = {
            "safe_us": round(best["safe"] * 1e6, 1),
            "unsafe_us": round(best["unsafe"] * 1e6, 1),
            "ratio": round(best["safe"] / best["unsafe"], 3),
            "images": count,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images (default 10000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per pipeline; the best counts")
    parser.add_argument("--png-n", type=int, default=1000, help="images for the PNG decode cost (0: skip it)")
    parser.add_argument("--png-only", action="store_true", help="only the PNG decode cost, not the loaders")
    args = parser.parse_args()
    torch.set_num_threads(1)
    png = {}
    if args.png_n > 0:
        images, _, png_source = load_images(args.png_n)
        png = png_decode_cost(images, args.repeats)
        for size, r in png.items():
            print(
                f"PNG {size} ({r['images']} {png_source} images): safe (PIL) {r['safe_us']:.0f} us/img | "
                f"unsafe (torchvision decode_png) {r['unsafe_us']:.0f} us/img | safe / unsafe {r['ratio']:.2f}"
            )
    if args.png_only:
        print(json.dumps({"png": png, "png_n": args.png_n}))
        return
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
    summary = {**headline, "workers": max(args.workers), "n": args.n, "source": source, "by_workers": results}
    print(json.dumps({**summary, "png": png}))


if __name__ == "__main__":
    main()
