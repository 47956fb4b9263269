"""View generators: one sample (a dict of fields) -> named views ``{name: tensor, "__meta__": {...}}``.

Standalone on purpose: this package imports only torch, torchvision, torchaudio (lazily, by the audio
generator), einops and numpy -- never accelerate or webdataset -- so a generator can be lifted into a plain
DataLoader, a webdataset ``.map`` stage or a torchvision ``Compose``.

Examples:
    >>> import torch, multiview.views as mv
    >>> gen = mv.create("amdim", size=32, n_views=2, seed=0)
    >>> sample = {"__key__": "s0", "image": torch.zeros(3, 48, 48, dtype=torch.uint8)}
    >>> views = gen(sample, generator=mv.derive_generator(0, 1, "s0"))   # parts: (epoch, key)
    >>> sorted(views), tuple(views["view0"].shape)
    (['__meta__', 'view0', 'view1'], (3, 32, 32))

Register your own generator with ``@multiview.views.register("name")`` on a ``ViewGenerator`` subclass
(or any factory returning a callable ``gen(sample, *, generator=None)``).
"""

from __future__ import annotations

from typing import Any

from multiview.views import audio, cameras, image, modalities, sensor, vector  # noqa: F401  (registers generators)
from multiview.views.audio import AudioViews
from multiview.views.base import META, VIEWS, ViewGenerator, derive_generator, register, stable_hash
from multiview.views.cameras import CameraViews
from multiview.views.image import AMDIMViews, ColorSplitViews, MultiCropViews, SimCLRViews
from multiview.views.modalities import FieldViews, ModalityViews
from multiview.views.sensor import SensorViews
from multiview.views.vector import VectorViews


def create(name: str, **kwargs: Any) -> ViewGenerator:
    """Build the view generator registered as ``name`` with ``kwargs`` (e.g. ``train=False`` for eval mode)."""
    return VIEWS.create(name, **kwargs)


def names() -> list[str]:
    """The registered generator names."""
    return VIEWS.names()


__all__ = [
    "META",
    "VIEWS",
    "AMDIMViews",
    "AudioViews",
    "CameraViews",
    "ColorSplitViews",
    "FieldViews",
    "ModalityViews",
    "MultiCropViews",
    "SensorViews",
    "SimCLRViews",
    "VectorViews",
    "ViewGenerator",
    "create",
    "derive_generator",
    "names",
    "register",
    "stable_hash",
]
