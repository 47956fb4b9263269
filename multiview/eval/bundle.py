"""What evaluation needs from a trained checkpoint: encoders and their deterministic input transforms.

``multiview.train.checkpoint.load_for_eval(path)`` returns an :class:`EvalBundle`; tests and users can build one
directly from their own modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class EvalBundle:
    """Trained encoders keyed by shard field name, with their eval transforms.

    Attributes:
        encoders: ``{field: nn.Module}``; ``encoder(x) -> Features``, of which evaluation uses ``.global_`` ``[B, D]``.
        transforms: ``{field: transform}``; ``transform(sample) -> Tensor`` turns a decoded sample (a dict, see
            docs/architecture.md section 1) into one encoder input (no batch axis), deterministically.
        recipe: the resolved recipe the checkpoint was trained with (recorded in reports).
    """

    encoders: dict[str, nn.Module]
    transforms: dict[str, Callable[[dict], torch.Tensor]]
    recipe: dict = field(default_factory=dict)

    def check_field(self, name: str) -> None:
        """Raise ValueError when ``name`` has no encoder or no transform."""
        missing = [
            kind for kind, table in (("encoder", self.encoders), ("transform", self.transforms)) if name not in table
        ]
        if missing:
            raise ValueError(
                f"the checkpoint has no {' or '.join(missing)} for field {name!r}; "
                f"fields with encoders: {sorted(self.encoders)}, with transforms: {sorted(self.transforms)}"
            )


def load_bundle(checkpoint: str) -> EvalBundle:
    """Load a checkpoint through the trainer's ``load_for_eval`` (imported here: eval never imports train eagerly)."""
    try:
        from multiview.train.checkpoint import load_for_eval
    except ImportError as err:
        raise RuntimeError(
            f"cannot load checkpoint {checkpoint!r}: multiview.train.checkpoint.load_for_eval is not available "
            f"({err}); use --baseline raw to evaluate raw inputs without a checkpoint"
        ) from err
    return load_for_eval(checkpoint)
