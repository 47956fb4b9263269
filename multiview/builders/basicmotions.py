"""BasicMotions (UEA/UCR archive) through aeon: accelerometer and gyroscope as two sensor modalities.

Each case is 6 channels x 100 steps at 10 Hz from a smartwatch; channels 0-2 are the accelerometer's x/y/z and
3-5 the gyroscope's (the order of the archive file's header). Four activities; the official 40 / 40 split.
Labels are mapped to ints in sorted order of the class names (``CLASSES``).

Examples:
    >>> data = load_split("train")
    >>> data["series"].shape, sorted(set(data["labels"].tolist()))
    ((40, 6, 100), [0, 1, 2, 3])
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CLASSES = ("badminton", "running", "standing", "walking")
SPLITS = ("train", "test")


def load_split(split: str) -> dict[str, np.ndarray]:
    """``{"series": float32 [N, 6, T], "labels": int64 [N]}`` of an official split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    try:
        from aeon.datasets import load_classification
    except ImportError as err:
        raise ImportError("the basicmotions builder needs aeon: pip install 'multiview[data]'") from err
    series, names = load_classification("BasicMotions", split=split)
    unknown = sorted(set(names) - set(CLASSES))
    if unknown:
        raise ValueError(f"BasicMotions {split}: unexpected class names {unknown}, expected {CLASSES}")
    if series.ndim != 3 or series.shape[1] != 6:
        raise ValueError(f"BasicMotions {split}: expected series [N, 6, T], got {series.shape}")
    labels = np.array([CLASSES.index(name) for name in names], dtype=np.int64)
    return {"series": series.astype(np.float32), "labels": labels}


def iter_motion_samples(data: dict[str, np.ndarray]) -> Iterator[dict]:
    """Shard samples: ``acc.npy`` [3, T] (channels 0-2), ``gyro.npy`` [3, T] (channels 3-5), ``label.cls``."""
    for i, (series, label) in enumerate(zip(data["series"], data["labels"])):
        yield {
            "__key__": f"{i:03d}",
            "acc.npy": np.ascontiguousarray(series[:3]),
            "gyro.npy": np.ascontiguousarray(series[3:]),
            "label.cls": int(label),
        }


def build(out_dir, maxcount: int = 1000, show_progress: bool = False) -> dict:
    """Write the official 40 / 40 split; returns the manifest."""
    from multiview.builders._common import write

    data = {split: load_split(split) for split in SPLITS}
    return write(
        out_dir,
        {split: iter_motion_samples(d) for split, d in data.items()},
        {split: len(d["labels"]) for split, d in data.items()},
        builder="basicmotions",
        builder_args={},
        extra={
            "source": "BasicMotions, UEA multivariate time series classification archive, via aeon",
            "classes": {name: i for i, name in enumerate(CLASSES)},
            "channels": {"acc.npy": "accelerometer x/y/z (file channels 0-2)", "gyro.npy": "gyroscope x/y/z (3-5)"},
            "sampling_rate_hz": 10,
            "split": "official train (40) / test (40)",
        },
        maxcount=maxcount,
        show_progress=show_progress,
    )
