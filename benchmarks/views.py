"""AMDIM image views: multiview.views on uint8 tensors vs. the same recipe as classic PIL torchvision transforms.

Real images: Fashion-MNIST (Debian's dataset-fashion-mnist), upscaled to 96x96 and made 3-channel once, before
timing. Per sample, 2 views of 64 px: one shared horizontal flip, then per view RandomResizedCrop(64, scale
0.3-1, ratio 0.7-1.4, bicubic), ColorJitter(0.4, 0.4, 0.4, 0.2) p 0.8, RandomGrayscale p 0.25, normalisation.
All run single-process, one thread, on the same samples, in one run (alternating chunks of --batch samples).

Ours is timed two ways: ``gen.batch(samples)`` on batches of ``--batch`` samples -- the path the training stream
runs (``ShardStream`` maps each batch through its view generator's ``batch``; same views as one call per sample)
-- and one ``gen(sample)`` call per sample (a plain per-sample DataLoader / webdataset ``.map``). The headline
ratio is the batched one; both are printed.

    python benchmarks/views.py [--n 4000] [--batch 64]

The last line is JSON: ours_per_s, baseline_per_s, ratio (batched), and ours_per_sample_per_s, ratio_per_sample.
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


def time_interleaved(fns, chunks: list[list]) -> list[float]:
    """Total time of each ``fn`` over every chunk, the functions alternating chunk by chunk so that a change in
    machine load during the run hits every side alike."""
    totals = [0.0] * len(fns)
    for chunk in chunks:
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn(chunk)
            totals[i] += time.perf_counter() - start
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="samples (each gives 2 views)")
    parser.add_argument("--batch", type=int, default=64, help="samples per gen.batch call (the loader's batch)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    images = load_images(args.n)
    samples = [{"__key__": f"{i:06d}", "image": img} for i, img in enumerate(images)]
    pils = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
    gen = multiview.views.create("amdim", size=64, n_views=2, seed=0)
    base = baseline_transform()

    def ours_batched(chunk):
        return gen.batch([samples[i] for i in chunk])

    def ours_single(chunk):
        return [gen(samples[i]) for i in chunk]

    def baseline_pil(chunk):
        return [base(pils[i]) for i in chunk]

    # Warm-up (first calls allocate and load kernels), then the timed passes over chunks of --batch samples.
    chunks = [list(range(i, min(i + args.batch, args.n))) for i in range(0, args.n, args.batch)]
    time_interleaved([ours_batched, ours_single, baseline_pil], chunks[:2])
    t_batched, t_single, t_base = time_interleaved([ours_batched, ours_single, baseline_pil], chunks)

    batched, single, per_s_base = args.n / t_batched, args.n / t_single, args.n / t_base
    print(f"samples: {args.n} Fashion-MNIST images at 96x96x3 -> 2 AMDIM views of 64 px each")
    print(f"ours, gen.batch of {args.batch} (the training stream's path): {t_batched:.2f} s, {batched:.0f} samples/s")
    print(f"ours, one gen(sample) call per sample:             {t_single:.2f} s, {single:.0f} samples/s")
    print(f"baseline (torchvision v1 transforms on PIL):        {t_base:.2f} s, {per_s_base:.0f} samples/s")
    print(f"ratio (ours / baseline): batched {batched / per_s_base:.2f}, per sample {single / per_s_base:.2f}")
    print(
        json.dumps(
            {
                "ours_per_s": round(batched, 1),
                "baseline_per_s": round(per_s_base, 1),
                "ratio": round(batched / per_s_base, 3),
                "ours_per_sample_per_s": round(single, 1),
                "ratio_per_sample": round(single / per_s_base, 3),
                "batch": args.batch,
                "n_samples": args.n,
                "views_per_sample": 2,
            }
        )
    )


if __name__ == "__main__":
    main()
