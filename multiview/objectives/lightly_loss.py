"""Any two-embedding loss of lightly (Susmelj et al. 2020, https://github.com/lightly-ai/lightly) over a view pair.

``L = loss_fn(z_a, z_b)`` with ``z_a = features[views[0]].global_ [B, D]`` and ``z_b = features[views[1]].global_
[B, D]``: the two views may be two augmentations of one image or two modalities (each with its own encoder; both
must end in the same D). The lightly class does all the math, in float32 (autocast off); the adapter only picks the
vectors, checks their shapes and reports ``cos_<a>_<b>``, the mean cosine similarity of the positive pairs.

The losses (:data:`PAIR_LOSSES`, those the installed lightly has) and what they do across processes with
``gather_distributed=True``, the adapter's default wherever the class takes it (lightly's own default is False;
the papers use the global batch, and so do CMC's in-batch negatives here):

================================  ==========================================================================
``NTXentLoss`` (SimCLR, Chen et   negatives gathered with gradients (``lightly.utils.dist.gather``): the mean of
al. 2020), ``DCLLoss`` (Yeh et    the per-process losses equals the one-process loss on the global batch, and so
al. 2022), ``DirectCLRLoss``      do the gradients after DDP's averaging (lightly >= 1.5.4; older versions drop
(Jing et al. 2022)                the other processes' gradient).
``DCLWLoss`` (Yeh et al. 2022)    negatives gathered as DCL's, but the positives' von Mises-Fisher weights are a
                                  softmax over each process's own rows: close to, not equal to, the global loss.
``VICRegLoss`` (Bardes et al.     variance and covariance terms on the gathered batch, invariance on the local
2022)                             rows: the mean equals the global-batch loss (lightly >= 1.5.4).
``BarlowTwinsLoss`` (Zbontar et   the cross-correlation matrix is averaged over processes, but each process
al. 2021)                         standardises its OWN rows: the loss is the global-batch loss with per-process
                                  batch statistics, not the one-process loss. Gradients are right from lightly
                                  1.5.26 (older versions scale them by 1/world_size, lightly issue #1977).
``NegativeCosineSimilarity``      no gathering needed: a mean over samples (SimSiam's loss; without SimSiam's
(Chen and He 2021)                predictor and stop-gradient, two free encoders collapse).
``MACLLoss`` (Huang et al. 2023)  no gathering: each process scores its own rows.
================================  ==========================================================================

Left out on purpose: stateful losses and options whose state would not survive a checkpoint (a resumed run must
continue exactly): lightly's memory banks (``memory_bank_size``, kept in non-persistent buffers; use
``cmc`` with ``negatives: bank``) and ``TiCoLoss`` (its covariance estimate is a plain attribute). Losses over
more or other inputs (DINO, SwaV, MSN, VICRegL, ...) need heads, teachers or grids this adapter does not have.

lightly is imported when the objective is built, not when :mod:`multiview.objectives` is imported.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from multiview.objectives import register
from multiview.objectives.base import FeatureDict, Objective, ObjectiveOutput
from multiview.objectives.distributed import is_distributed

#: lightly.loss classes whose ``forward(z_a [B, D], z_b [B, D])`` returns a scalar and that keep no state.
PAIR_LOSSES = (
    "BarlowTwinsLoss",
    "DCLLoss",
    "DCLWLoss",
    "DirectCLRLoss",
    "MACLLoss",
    "NTXentLoss",
    "NegativeCosineSimilarity",
    "VICRegLoss",
)

#: The oldest lightly whose ``gather_distributed=True`` gives the one-process gradients (see the module docstring).
GATHER_FIXED_IN = {"BarlowTwinsLoss": (1, 5, 26)}
GATHER_FIXED_DEFAULT = (1, 5, 4)


def available_pair_losses() -> list[str]:
    """The names in :data:`PAIR_LOSSES` that the installed lightly has (DirectCLR and MACL came after 1.5.0)."""
    import lightly.loss

    return [name for name in PAIR_LOSSES if hasattr(lightly.loss, name)]


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


@register("lightly")
class LightlyLoss(Objective):
    """A lightly loss over two views.

    Args:
        loss: the class name in ``lightly.loss`` (one of :data:`PAIR_LOSSES`), e.g. ``"NTXentLoss"``.
        loss_args: keyword arguments of that class (``temperature``, ``lambda_param``, ``gather_distributed``...).
            ``gather_distributed`` defaults to True where the class takes it.
        views: two view names; ``views[0]`` is the loss's first argument.

    Shapes: ``features[v].global_`` ``[B, D]`` for both views (same B and D).

    Examples:
        >>> from multiview.encoders.features import Features
        >>> obj = LightlyLoss("NTXentLoss", {"temperature": 0.2}, views=("image", "audio"))
        >>> out = obj({"image": Features(torch.randn(8, 32)), "audio": Features(torch.randn(8, 32))})
        >>> out.loss.shape, sorted(out.metrics)
        (torch.Size([]), ['cos_image_audio'])
    """

    name = "lightly"

    def __init__(
        self,
        loss: str = "NTXentLoss",
        loss_args: Mapping[str, Any] | None = None,
        views: Sequence[str] = ("view0", "view1"),
    ):
        super().__init__()
        if isinstance(views, str) or len(views) != 2 or len(set(views)) != 2:
            raise ValueError(f"lightly views: expected two distinct view names, got {views!r}")
        if loss_args is not None and not isinstance(loss_args, Mapping):
            raise ValueError(f"lightly loss_args: expected a mapping of the loss's arguments, got {loss_args!r}")
        import lightly
        import lightly.loss

        available = available_pair_losses()
        if loss not in available:
            if isinstance(loss, str) and hasattr(lightly.loss, loss):
                raise ValueError(
                    f"lightly loss: {loss!r} is a lightly loss but not a stateless loss of two [B, D] embeddings; "
                    f"expected one of {available}"
                )
            raise ValueError(f"lightly loss: expected one of {available} (lightly {lightly.__version__}), got {loss!r}")
        cls = getattr(lightly.loss, loss)
        accepted = [p for p in inspect.signature(cls).parameters if p not in ("self", "args", "kwargs")]
        args = dict(loss_args or {})
        unknown = sorted(set(args) - set(accepted))
        if unknown:
            raise ValueError(f"lightly loss_args: {loss} takes {accepted}, got unknown {unknown}")
        if "gather_distributed" in accepted:
            args.setdefault("gather_distributed", True)
        if args.get("memory_bank_size", 0) not in (0, None):
            raise ValueError(
                f"lightly loss_args.memory_bank_size: lightly keeps its bank out of checkpoints, so a resumed run "
                f"would not continue exactly; expected 0, got {args['memory_bank_size']!r} "
                f"(for a memory bank use objective cmc with negatives: bank)"
            )
        self.views, self.loss_name = tuple(views), loss
        self.gather = bool(args.get("gather_distributed", False))
        self.lightly_version = lightly.__version__
        self.loss_fn = cls(**args)
        self._gather_checked = False

    def requires(self) -> dict[str, tuple[str, ...]]:
        return {view: () for view in self.views}

    def compute(self, features: FeatureDict, batch: Mapping) -> ObjectiveOutput:
        a, b = (features[view].global_ for view in self.views)
        if a.dim() != 2 or a.shape != b.shape:
            raise ValueError(
                f"objective lightly ({self.loss_name}): views {self.views[0]!r} and {self.views[1]!r} must give "
                f"global vectors of one shape [B, D], got {list(a.shape)} and {list(b.shape)} "
                f"(give both encoders the same out_dim)"
            )
        if not self._gather_checked and self.gather and is_distributed():
            self._check_gather_version()
        with torch.autocast(a.device.type, enabled=False):
            loss = self.loss_fn(a.float(), b.float())
        with torch.no_grad():
            cosine = F.cosine_similarity(a.float(), b.float(), dim=1).mean()
        return ObjectiveOutput(loss, {f"cos_{self.views[0]}_{self.views[1]}": cosine})

    def _check_gather_version(self) -> None:
        """Refuse a lightly whose gather would silently give other gradients than one process on the global batch."""
        need = GATHER_FIXED_IN.get(self.loss_name, GATHER_FIXED_DEFAULT)
        if _version_tuple(self.lightly_version) < need:
            raise ValueError(
                f"objective lightly ({self.loss_name}): gather_distributed=True across processes needs lightly >= "
                f"{'.'.join(map(str, need))} (older versions get the gradients wrong), installed "
                f"{self.lightly_version}; upgrade lightly or set loss_args: {{gather_distributed: false}}"
            )
        self._gather_checked = True

    def extra_repr(self) -> str:
        return f"views={list(self.views)}, loss={self.loss_name}"
