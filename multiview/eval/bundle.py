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
        pair_heads: ``{(a, b): head}``: ``head(x [B, D]) -> [B, E]`` maps field a's encoder output into the space
            it shares with field b (CMC with ``pair_heads``); retrieval between a and b compares there.
    """

    encoders: dict[str, nn.Module]
    transforms: dict[str, Callable[[dict], torch.Tensor]]
    recipe: dict = field(default_factory=dict)
    pair_heads: dict[tuple[str, str], nn.Module] = field(default_factory=dict)

    def has_pair_heads(self, a: str, b: str) -> bool:
        """Whether fields a and b are compared through pair heads (both directions must be present)."""
        return (a, b) in self.pair_heads and (b, a) in self.pair_heads

    def project_pair(self, a: str, b: str, xa: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``xa [N, D]``, ``xb [M, D]`` (encoder outputs of fields a, b) -> the pair's space ``([N, E], [M, E])``;
        unchanged when the pair has no heads."""
        if not self.has_pair_heads(a, b):
            return xa, xb
        return _apply_head(self.pair_heads[(a, b)], xa), _apply_head(self.pair_heads[(b, a)], xb)

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


def _apply_head(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``head(x)`` on the head's device, returned as float32 on CPU like the embeddings."""
    device = next(iter(head.parameters()), torch.empty(0)).device
    with torch.inference_mode():
        return head.eval()(x.to(device)).float().cpu()


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
