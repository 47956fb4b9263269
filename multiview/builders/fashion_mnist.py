"""Fashion-MNIST, the full official 60k / 10k split, from Debian's ``dataset-fashion-mnist`` package.

The package installs the original gzipped idx files in ``/usr/share/datasets/fashion-mnist``: images (magic
2051, 16-byte header, then rows of 28 x 28 uint8) and labels (magic 2049, 8-byte header, then uint8 labels).

Examples:
    >>> data = load_split("test", limit=3)  # doctest: +SKIP
    >>> data["images"].shape, data["labels"].shape  # doctest: +SKIP
    ((3, 28, 28), (3,))
"""

from __future__ import annotations

import argparse
import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
APT_PACKAGE = "dataset-fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
SIZES = {"train": 60000, "test": 10000}


def _read_idx(path: Path, magic: int, header: int, limit: int | None) -> tuple[np.ndarray, tuple[int, ...]]:
    """The first ``limit`` items (all when None) of an idx file and the dimensions its header declares."""
    with gzip.open(path, "rb") as f:
        head = f.read(header)
        seen = int.from_bytes(head[:4], "big")
        if seen != magic:
            raise ValueError(f"{path}: idx magic number {seen}, expected {magic}")
        dims = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range((header - 4) // 4))
        item = int(np.prod(dims[1:], dtype=np.int64))
        n = dims[0] if limit is None else min(dims[0], limit)
        payload = f.read(n * item)  # a slice only decompresses what it needs
    if len(payload) != n * item:
        raise ValueError(f"{path}: truncated: {len(payload)} bytes of data, the header promises {n * item}")
    return np.frombuffer(payload, dtype=np.uint8), dims


def load_split(split: str, root: str | Path = DEFAULT_ROOT, limit: int | None = None) -> dict[str, np.ndarray]:
    """``{"images": uint8 [N, 28, 28], "labels": int64 [N]}`` of one official split (the first ``limit``)."""
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
    root = Path(root)
    image_file, label_file = (root / name for name in FILES[split])
    for path in (image_file, label_file):
        if not path.is_file():
            raise FileNotFoundError(
                f"Fashion-MNIST file missing: {path}. Install the Debian package: apt-get install -y {APT_PACKAGE}"
            )
    pixels, (n, h, w) = _read_idx(image_file, 2051, 16, limit)
    labels, (n_labels,) = _read_idx(label_file, 2049, 8, limit)
    if n != n_labels:
        raise ValueError(f"{image_file} holds {n} images but {label_file} {n_labels} labels")
    return {"images": pixels.reshape(-1, h, w).copy(), "labels": labels.astype(np.int64)}


def iter_fashion_samples(data: dict[str, np.ndarray]) -> Iterator[dict]:
    """Shard samples: ``image.png`` (uint8 [28, 28]) and ``label.cls``; the key is the index in the split."""
    for i, (image, label) in enumerate(zip(data["images"], data["labels"])):
        yield {"__key__": f"{i:05d}", "image.png": image, "label.cls": int(label)}


def build(
    out_dir: str | Path,
    root: str | Path = DEFAULT_ROOT,
    limit: int | None = None,
    maxcount: int = 10000,
    show_progress: bool = False,
) -> dict:
    """Write the official train (60k) / test (10k) split, or the first ``limit`` of each; returns the manifest."""
    from multiview.builders._common import write

    data = {split: load_split(split, root, limit) for split in FILES}
    return write(
        out_dir,
        {split: iter_fashion_samples(d) for split, d in data.items()},
        {split: len(d["labels"]) for split, d in data.items()},
        builder="fashion_mnist",
        builder_args={"root": str(root), "limit": limit},
        extra={
            "source": f"Fashion-MNIST (Zalando Research, MIT licence) from the Debian package {APT_PACKAGE}",
            "classes": list(CLASSES),
            "split": "official train (60,000) / t10k (10,000)" + (f", first {limit} of each" if limit else ""),
        },
        maxcount=maxcount,
        show_progress=show_progress,
    )


# -- command line: multiview.builders._common.run_builder adds --out, --maxcount, --quiet and runs these
CLI_ERRORS = (FileNotFoundError,)  # the Debian package is missing: "error: ... apt-get install ...", exit 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="folder of the idx .gz files")
    parser.add_argument("--limit", type=int, default=None, help="keep the first N samples of each split")


def build_from_args(args: argparse.Namespace) -> dict:
    return build(args.out, root=args.root, limit=args.limit, maxcount=args.maxcount, show_progress=not args.quiet)
