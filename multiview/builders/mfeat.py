"""UCI mfeat: six instance-paired views of 2,000 handwritten digits (bundled in ``multiview/resources/mfeat``).

``pix`` becomes a 1 x 16 x 15 grey image (``pix.png``, values 0..6 stored as ``round(v * 255 / 6)``); the other
five views are float32 vectors (``fac.npy`` [216], ``fou.npy`` [76], ``kar.npy`` [64], ``zer.npy`` [47],
``mor.npy`` [6]). The split is the fixed stratified 50/50 split of sklearn's
``train_test_split(test_size=0.5, stratify=labels, random_state=0)``, the one DATA.md's baselines use.
The original row (the same digit in every view) is in the key (``row0042``) and in ``meta.json``.

Examples:
    >>> data = load_mfeat()
    >>> data["views"]["pix"].shape, data["labels"].shape
    ((2000, 240), (2000,))
    >>> split = split_indices(data["labels"])
    >>> len(split["train"]), len(split["test"])
    (1000, 1000)
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np

VIEWS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
PIX_SHAPE = (16, 15)
PIX_MAX = 6
N_ROWS = 2000
PIX_ENCODING = "pix.png uint8 = round(value * 255 / 6) of the 0..6 pixel averages; value = png * 6 / 255"


def resource_dir() -> Path:
    """The folder of the bundled CSVs (inside the installed package)."""
    return Path(str(resources.files("multiview") / "resources" / "mfeat"))


def load_mfeat(folder: str | Path | None = None) -> dict:
    """Read the six CSVs: ``{"views": {name: float64 [2000, D]}, "labels": int64 [2000]}``.

    Raises ValueError naming the file when a file has the wrong shape or its labels disagree with the others.
    """
    folder = Path(folder) if folder is not None else resource_dir()
    views, labels = {}, None
    for name, dim in VIEWS.items():
        path = folder / f"mfeat-{name}.csv.gz"
        if not path.is_file():
            raise FileNotFoundError(f"mfeat view file missing: {path}")
        with gzip.open(path, "rt") as f:
            table = np.genfromtxt(f, delimiter=",", skip_header=1)
        if table.shape != (N_ROWS, dim + 1):
            raise ValueError(f"{path}: expected {N_ROWS} rows x {dim + 1} columns, got {table.shape}")
        rows_labels = table[:, -1].astype(np.int64)
        if labels is not None and not np.array_equal(labels, rows_labels):
            raise ValueError(f"{path}: its label column disagrees with the other views (rows are not paired)")
        labels, views[name] = rows_labels, table[:, :-1]
    return {"views": views, "labels": labels}


def split_indices(labels: np.ndarray, test_size: float = 0.5, random_state: int = 0) -> dict[str, np.ndarray]:
    """The stratified train/test row indices (sorted), as in DATA.md's reference numbers."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=random_state
    )
    return {"train": np.sort(train), "test": np.sort(test)}


def pix_image(row: np.ndarray) -> np.ndarray:
    """The 240 pixel averages (0..6) of one row -> uint8 ``[16, 15]`` scaled to 0..255."""
    if row.min() < 0 or row.max() > PIX_MAX:
        raise ValueError(f"mfeat pix values must lie in 0..{PIX_MAX}, got {row.min()}..{row.max()}")
    return np.round(row.reshape(PIX_SHAPE) * 255.0 / PIX_MAX).astype(np.uint8)


def iter_mfeat_samples(data: dict, rows: np.ndarray) -> Iterator[dict]:
    """Shard samples of the given rows: ``pix.png``, ``<view>.npy`` (float32), ``label.cls``, ``meta.json``."""
    for row in rows:
        row = int(row)
        label = int(data["labels"][row])
        sample = {"__key__": f"row{row:04d}", "pix.png": pix_image(data["views"]["pix"][row])}
        for name in VIEWS:
            if name != "pix":
                sample[f"{name}.npy"] = data["views"][name][row].astype(np.float32)
        sample |= {"label.cls": label, "meta.json": {"row": row, "digit": label}}
        yield sample


def manifest_extra(split: dict[str, np.ndarray]) -> dict:
    """What the manifest records about the split and the encodings."""
    return {
        "source": "UCI Multiple Features (mfeat), CC BY 4.0; see multiview/resources/mfeat/README.md",
        "pix_encoding": PIX_ENCODING,
        "views": {name: ([1, *PIX_SHAPE] if name == "pix" else [dim]) for name, dim in VIEWS.items()},
        "split": "sklearn train_test_split(test_size=0.5, stratify=labels, random_state=0) over rows 0..1999",
        "rows": {name: [int(i) for i in idx] for name, idx in split.items()},
        "pairing": "instance: every field of a sample comes from the same row (the same physical digit)",
    }


def build(out_dir: str | Path, maxcount: int = 1000, show_progress: bool = False) -> dict:
    """Write the bundled mfeat as shards (train 1,000 / test 1,000 rows); returns the manifest."""
    from multiview.builders._common import write

    data = load_mfeat()
    split = split_indices(data["labels"])
    return write(
        out_dir,
        {name: iter_mfeat_samples(data, rows) for name, rows in split.items()},
        {name: len(rows) for name, rows in split.items()},
        builder="mfeat",
        builder_args={},
        extra=manifest_extra(split),
        maxcount=maxcount,
        show_progress=show_progress,
    )
