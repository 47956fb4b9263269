"""AMDIM image views: multiview.views on uint8 tensors vs. the same recipe as classic PIL torchvision transforms.

Real images: Fashion-MNIST (Debian's dataset-fashion-mnist), upscaled to 96x96 and made 3-channel once, before
timing. Per sample, 2 views of 64 px: one shared horizontal flip, then per view RandomResizedCrop(64, scale
0.3-1, ratio 0.7-1.4, bicubic), ColorJitter(0.4, 0.4, 0.4, 0.2) p 0.8, RandomGrayscale p 0.25, normalisation.
Both run single-process, one thread, on the same samples, in one run (alternating chunks of 100).

    python benchmarks/views.py [--n 2000]

Prints both throughputs and the ratio; the last line is JSON: ours_per_s, baseline_per_s, ratio.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torchvision.transforms import InterpolationMode

import multiview.views

FASHION = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_images(n: int, side: int = 96) -> torch.Tensor:
    """``n`` Fashion-MNIST images as uint8 ``[n, 3, side, side]`` (idx format: pixels start at offset 16)."""
    with gzip.open(FASHION, "rb") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    x = torch.from_numpy(raw.copy()).unsqueeze(1).float()
    x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()


def baseline_transform():
    """The AMDIM recipe with torchvision v1 transforms on PIL images (global RNG)."""
    per_view = T.Compose(
        [
            T.RandomResizedCrop(64, scale=(0.3, 1.0), ratio=(0.7, 1.4), interpolation=InterpolationMode.BICUBIC),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.2)], p=0.8),
            T.RandomGrayscale(p=0.25),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )
    flip = T.RandomHorizontalFlip()

    def two_views(img: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        img = flip(img)  # shared by both views
        return per_view(img), per_view(img)

    return two_views


def time_loop(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return time.perf_counter() - start


def time_interleaved(fn_a, items_a, fn_b, items_b, chunk: int = 100) -> tuple[float, float]:
    """Total times of ``fn_a`` over ``items_a`` and ``fn_b`` over ``items_b``, alternating chunks so that a
    change in machine load during the run hits both sides alike."""
    t_a = t_b = 0.0
    for i in range(0, len(items_a), chunk):
        t_a += time_loop(fn_a, items_a[i : i + chunk])
        t_b += time_loop(fn_b, items_b[i : i + chunk])
    return t_a, t_b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="samples (each gives 2 views)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    images = load_images(args.n)
    samples = [{"__key__": f"{i:06d}", "image": img} for i, img in enumerate(images)]
    pils = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
    gen = multiview.views.create("amdim", size=64, n_views=2, seed=0)
    base = baseline_transform()

    # Warm-up (first calls allocate and load kernels), then the timed passes.
    time_loop(gen, samples[:50])
    time_loop(base, pils[:50])
    t_ours, t_base = time_interleaved(gen, samples, base, pils)

    ours, baseline = args.n / t_ours, args.n / t_base
    print(f"samples: {args.n} Fashion-MNIST images at 96x96x3 -> 2 AMDIM views of 64 px each")
    print(f"ours (multiview.views amdim, uint8 tensors): {t_ours:.2f} s, {ours:.0f} samples/s")
    print(f"baseline (torchvision v1 transforms on PIL):  {t_base:.2f} s, {baseline:.0f} samples/s")
    print(f"ratio (ours / baseline): {ours / baseline:.2f}")
    print(
        json.dumps(
            {
                "ours_per_s": round(ours, 1),
                "baseline_per_s": round(baseline, 1),
                "ratio": round(ours / baseline, 3),
                "n_samples": args.n,
                "views_per_sample": 2,
            }
        )
    )


if __name__ == "__main__":
    main()
