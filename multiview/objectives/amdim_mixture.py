"""AMDIM with mixture representations (Bachman, Hjelm, Buchwalter, NeurIPS 2019, mixture-based features).

A head makes k mixture features from each image's global vector r1 ``[B, D]``: ``f^c = r1 + MLP_c(r1)``
(``[B, k, D]``, one ReLU hidden layer per component, its last layer zero at start so every ``f^c`` is r1). In the
tasks whose source is r1 (1->5, 1->7) the mixture replaces the source. For a target location q of the OTHER view's
map, component c's score ``s_nce[i, q, c]`` is the AMDIM NCE log-softmax of the positive ``(f^c_i, b_{i,q})``
against every location of every other image (raw ``a . b / sqrt(D)``, tanh clip, the raw-score regulariser), the
responsibilities are ``pi[i, q, .] = softmax_c(sharpness * s_nce[i, q, .])`` and each location contributes

    ``sum_c pi[i, q, c] * s_nce[i, q, c] + alpha * H(pi[i, q, .])``

to the quantity maximised; the loss is minus its mean over locations and images, averaged over both directions.
The 5->5 task stays plain AMDIM. Total: ``L1t5 + L1t7 + L5t5 + 0.5 * (sum of the regularisers)``, as AMDIM. With
one component and the head at its start this is AMDIM exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn

from multiview.objectives import register
from multiview.objectives.amdim import _TASKS, AMDIM, amdim_task
from multiview.objectives.base import FeatureDict, ObjectiveOutput
from multiview.objectives.distributed import gather_with_grad, local_offset
from multiview.objectives.estimators import negative_mask

_MIXTURE_TASKS = ("1t5", "1t7")  # the tasks whose source is r1


class MixtureHead(nn.Module):
    """``r1 [B, D] -> f [B, k, D]``, ``f^c = r1 + W2_c relu(W1_c r1 + b1_c) + b2_c``: the k MLPs in one batched head.

    The first layer is drawn as ``nn.Linear`` draws it (uniform, bound ``1 / sqrt(D)``), independently per component,
    so the components' hidden units differ; the last layer starts at zero, so at start every ``f^c`` is ``r1``
    exactly ("k copies of r1") and only the differing hidden units let their gradients, then the components, split.
    """

    def __init__(self, dim: int, n_components: int, hidden: int):
        super().__init__()
        self.n_components = n_components
        bound = 1.0 / math.sqrt(dim)
        self.w1 = nn.Parameter(torch.empty(dim, n_components * hidden).uniform_(-bound, bound))
        self.b1 = nn.Parameter(torch.empty(n_components * hidden).uniform_(-bound, bound))
        self.w2 = nn.Parameter(torch.zeros(n_components, hidden, dim))
        self.b2 = nn.Parameter(torch.zeros(n_components, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(x @ self.w1 + self.b1)  # one matmul for every component's first layer
        hidden = rearrange(hidden, "b (k h) -> b k h", k=self.n_components)
        return rearrange(x, "b d -> b 1 d") + einsum(hidden, self.w2, "b k h, k h d -> b k d") + self.b2


def mixture_nce(
    sources: torch.Tensor, target: torch.Tensor, offset: int, clip: float = 20.0, reg_weight: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-location NCE log-softmax scores of k sources per image: AMDIM's task, one component at a time.

    Args:
        sources: ``[B, k, D]``, the mixture features of this process's images.
        target: ``[M, D, N]``, the flattened maps of every image scored against (gathered across processes);
            image i's positives are row ``i + offset``, every other row's N locations are its negatives.

    Returns:
        ``s_nce [B, k, N]`` (log-probability of the positive at each location against the negatives, per component)
        and the regulariser ``reg_weight * mean(raw^2)`` over every raw score of every component.
    """
    b, _, d = sources.shape
    raw = einsum(sources, target, "b k d, m d n -> b m k n") / math.sqrt(d)
    # Low-precision scores (AMP) are summed in float32, as the estimators do.
    raw = raw if raw.dtype in (torch.float32, torch.float64) else raw.float()
    reg = reg_weight * raw.pow(2).mean()
    s = clip * torch.tanh(raw / clip)
    rows = torch.arange(b, device=s.device)
    pos = s[rows, rows + offset]  # [B, k, N]
    keep = negative_mask(b, s.shape[1], 1, offset, s.device)  # [B, M]: other images only, own locations dropped
    neg_lse = torch.logsumexp(s.masked_fill(~keep[:, :, None, None], float("-inf")), dim=(1, 3))  # [B, k]
    return pos - torch.logaddexp(pos, rearrange(neg_lse, "b k -> b k 1")), reg


class MixtureTerms(NamedTuple):
    objective: torch.Tensor  # [B, N]: fit + alpha * entropy, to maximise
    fit: torch.Tensor  # [B, N]: sum_c pi * s_nce
    pi: torch.Tensor  # [B, k, N]: responsibilities
    entropy: torch.Tensor  # [B, N]: H(pi) in nats


def mixture_terms(s_nce: torch.Tensor, alpha: float, sharpness: float, detach: bool = False) -> MixtureTerms:
    """``s_nce [B, k, N]`` -> the per-location objective and its parts; responsibilities over dim 1 (components).

    With ``detach`` the responsibilities are constants (an E-step): the gradient is ``sum_c pi * grad s_nce`` and the
    entropy term gives none.
    """
    log_pi = F.log_softmax(sharpness * s_nce, dim=1)
    if detach:
        log_pi = log_pi.detach()
    pi = log_pi.exp()
    fit = (pi * s_nce).sum(1)
    entropy = -(pi * log_pi).sum(1)
    return MixtureTerms(fit + alpha * entropy, fit, pi, entropy)


def _check_number(name: str, value, low: float, inclusive: bool, kind: type = float) -> None:
    """ValueError naming ``amdim_mixture <name>`` unless ``value`` is a finite ``kind`` above ``low``."""
    ok_type = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
    ok = ok_type and math.isfinite(value) and (value >= low if inclusive else value > low)
    if not ok:
        want = f"{'an integer' if kind is int else 'a finite number'} {'>=' if inclusive else '>'} {low:g}"
        raise ValueError(f"amdim_mixture {name}: expected {want}, got {value!r}")


def _check_args(**args) -> None:
    """Every constructor argument that AMDIM does not check itself, each error naming its argument."""
    for key in ("small", "large"):
        if not isinstance(args[key], str) or not args[key]:
            raise ValueError(f"amdim_mixture {key}: expected a local map name, got {args[key]!r}")
    tasks = args["tasks"]
    if isinstance(tasks, str) or not any(t in _MIXTURE_TASKS for t in tasks):
        raise ValueError(
            f"amdim_mixture tasks: expected a list with at least one of {list(_MIXTURE_TASKS)} (the mixture replaces "
            f"r1 as their source), got {tasks!r}"
        )
    _check_number("clip", args["clip"], 0, inclusive=False)
    for key in ("reg_weight", "alpha"):
        _check_number(key, args[key], 0, inclusive=True)
    _check_number("seed", args["seed"], 0, inclusive=True, kind=int)
    for key in ("feature_dim", "n_components", "hidden"):
        _check_number(key, args[key], 1, inclusive=True, kind=int)
    _check_number("sharpness", args["sharpness"], 0, inclusive=False)
    if not isinstance(args["detach_responsibilities"], bool):
        raise ValueError(
            f"amdim_mixture detach_responsibilities: expected true or false, got {args['detach_responsibilities']!r}"
        )


@register("amdim_mixture")
class AMDIMMixture(AMDIM):
    """AMDIM whose r1-sourced tasks (1->5, 1->7) score k mixture features of r1 against each target location.

    Args:
        views, small, large, tasks, clip, reg_weight, seed: as :class:`~multiview.objectives.amdim.AMDIM` (5->5
            stays plain AMDIM, with the same source locations for the same seed and step). ``tasks`` must hold
            1t5 or 1t7.
        feature_dim: D, the encoders' output size (the AMDIM encoder's ``n_rkhs``); the head is built for it.
        n_components: k, the number of mixture components (4).
        hidden: hidden width of each component's MLP (default ``feature_dim``).
        alpha: weight of the responsibilities' entropy (0.05). The entropy is at most ``log k`` (1.39 nats at k = 4),
            so the bonus is at most ~0.07 nats per location against NCE terms of several nats: it keeps
            responsibilities soft enough that every component gets gradient (a hard assignment trains only the
            winner, and a starved component never recovers) without paying the components to stay copies of each
            other, which a large alpha does (equal scores give the largest entropy). The paper used a small value.
        sharpness: inverse temperature of the responsibilities, ``pi = softmax_c(sharpness * s_nce)`` (the paper's
            tau; 1.0). Large sharpness -> a hard max: each location goes to its best component. When
            ``alpha == 1 / sharpness`` the responsibilities are the exact maximiser over pi of the per-location
            objective, which then equals ``logsumexp_c(sharpness * s_nce) / sharpness``; its gradient through pi
            vanishes there, so ``detach_responsibilities`` makes no difference at that point.
        detach_responsibilities: treat pi as constants (E-step style). The paper writes the objective as one
            maximisation over q and f jointly, so gradients flow through pi: default False.

    Attributes:
        n_components: k.
        mixture_map: the local map the mixture is scored against and read for segmentation: ``large`` (r7) when
            1t7 is a task, else ``small``.

    Metrics: ``mi_<task>``, ``loss_<task>`` and ``reg`` as AMDIM (``mi`` of a mixture task is
    ``log(1 + (M - 1) N) + mean(sum_c pi * s_nce)``); ``pi_entropy``, the mean entropy of the responsibilities (nats;
    ``log k`` = all components alike, 0 = one per location), and ``pi_usage_<c>``, the mean responsibility of each
    component (a component near 0 has collapsed), both over the mixture tasks and directions.

    Examples:
        >>> from multiview.encoders.features import Features
        >>> f = lambda: Features(torch.randn(4, 16), {"r5": torch.randn(4, 16, 5, 5), "r7": torch.randn(4, 16, 7, 7)})
        >>> obj = AMDIMMixture(feature_dim=16, n_components=3)
        >>> out = obj({"view0": f(), "view1": f()}, {})
        >>> obj.responsibilities(torch.randn(4, 16), torch.randn(4, 16, 7, 7)).shape
        torch.Size([4, 3, 7, 7])
    """

    name = "amdim_mixture"

    def __init__(
        self,
        views: tuple[str, str] = ("view0", "view1"),
        small: str = "r5",
        large: str = "r7",
        tasks: tuple[str, ...] = _TASKS,
        clip: float = 20.0,
        reg_weight: float = 0.05,
        seed: int = 0,
        *,
        feature_dim: int,
        n_components: int = 4,
        hidden: int | None = None,
        alpha: float = 0.05,
        sharpness: float = 1.0,
        detach_responsibilities: bool = False,
    ):
        hidden = feature_dim if hidden is None else hidden
        _check_args(
            small=small, large=large, tasks=tasks, clip=clip, reg_weight=reg_weight, seed=seed, feature_dim=feature_dim,
            n_components=n_components, hidden=hidden, alpha=alpha, sharpness=sharpness,
            detach_responsibilities=detach_responsibilities,
        )  # fmt: skip
        super().__init__(views, small, large, tasks, clip, reg_weight, seed)
        self.feature_dim, self.n_components, self.hidden = feature_dim, n_components, hidden
        self.alpha, self.sharpness = float(alpha), float(sharpness)
        self.detach_responsibilities = detach_responsibilities
        self.mixture_map = large if "1t7" in self.tasks else small
        self.head = MixtureHead(feature_dim, n_components, hidden)

    def mixture_features(self, global_: torch.Tensor) -> torch.Tensor:
        """``[B, D] -> [B, k, D]``: the k mixture features of each global vector."""
        return self.head(global_)

    def responsibilities(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Responsibilities of each location of each image, as in training, the batch's other images as negatives.

        Args:
            source: ``[B, D]``, each image's own r1.
            target: ``[B, D, H, W]``, the same images' own local map (:attr:`mixture_map`). No cross-process gather.

        Returns:
            ``pi [B, k, H, W]``, summing to 1 over k. Differentiable; wrap in ``torch.no_grad()`` for evaluation.
        """
        if source.dim() != 2 or target.dim() != 4 or source.shape != target.shape[:2]:
            raise ValueError(
                f"amdim_mixture responsibilities: expected source [B, D] and target [B, D, H, W] with the same B "
                f"and D, got {tuple(source.shape)} and {tuple(target.shape)}"
            )
        self._check_feature_dim(source.shape[1], "responsibilities")
        h, w = target.shape[-2:]
        flat = rearrange(target, "b d h w -> b d (h w)")
        s_nce, _ = mixture_nce(self.mixture_features(source), flat, 0, self.clip, 0.0)
        pi = mixture_terms(s_nce, self.alpha, self.sharpness).pi
        return rearrange(pi, "b k (h w) -> b k h w", h=h, w=w)

    def _check_feature_dim(self, d: int, where: str) -> None:
        if d != self.feature_dim:
            raise ValueError(
                f"objective amdim_mixture: feature_dim={self.feature_dim} (the mixture head's input) but {where} "
                f"has D={d}; set feature_dim to the encoders' output size (n_rkhs)"
            )

    def mixture_task(
        self, mixture: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, MixtureTerms]:
        """Mixture sources ``[B, k, D]`` against target maps ``[B, D, H, W]`` (gathered across processes).

        Returns (loss, regulariser, MI estimate, the per-location terms).
        """
        target_all = gather_with_grad(rearrange(target, "b d h w -> b d (h w)"))
        s_nce, reg = mixture_nce(mixture, target_all, local_offset(mixture.shape[0]), self.clip, self.reg_weight)
        terms = mixture_terms(s_nce, self.alpha, self.sharpness, self.detach_responsibilities)
        m, _, n = target_all.shape
        mi = (math.log(1 + (m - 1) * n) + terms.fit.mean()).detach()
        return -terms.objective.mean(), reg, mi, terms

    def compute(self, features: FeatureDict, batch: Mapping) -> ObjectiveOutput:
        self._check_dims(features)
        for view in self.views:
            self._check_feature_dim(features[view].global_.shape[1], f"view {view!r}")
        b = features[self.views[0]].batch_size
        locations = None
        if "5t5" in self.tasks:
            locations = self.source_locations(b, math.prod(features[self.views[0]].local[self.small].shape[-2:]))
        # Each view's mixture is shared by its 1->5 and 1->7 tasks.
        mixtures = {view: self.mixture_features(features[view].global_) for view in self.views}
        total, reg_total, stats = None, None, []
        metrics: dict[str, torch.Tensor] = {}
        for task in self.tasks:
            losses, mis = [], []
            for direction, (a, c) in enumerate((self.views, self.views[::-1])):
                target = self.task_target(task, features[c])
                if task in _MIXTURE_TASKS:
                    loss, reg, mi, terms = self.mixture_task(mixtures[a], target)
                    stats.append(terms)
                else:
                    loss, reg, mi = amdim_task(
                        self.task_source(task, features[a], locations, direction), target, self.clip, self.reg_weight
                    )
                losses.append(loss)
                mis.append(mi)
                reg_total = reg if reg_total is None else reg_total + reg
            task_loss = sum(losses) / len(losses)
            total = task_loss if total is None else total + task_loss
            metrics[f"mi_{task}"] = (sum(mis) / len(mis)).detach()
            metrics[f"loss_{task}"] = task_loss.detach()
        metrics["reg"] = (0.5 * reg_total).detach()
        metrics.update(self._mixture_metrics(stats))
        if self.training:
            self.step += 1
        return ObjectiveOutput(total + 0.5 * reg_total, metrics)

    def _mixture_metrics(self, stats: list[MixtureTerms]) -> dict[str, torch.Tensor]:
        """Mean responsibility entropy and each component's mean responsibility, over tasks and directions."""
        entropy = torch.stack([t.entropy.mean() for t in stats]).mean().detach()
        usage = torch.stack([t.pi.mean(dim=(0, 2)) for t in stats]).mean(0).detach()  # [k]
        return {"pi_entropy": entropy} | {f"pi_usage_{c}": u for c, u in enumerate(usage)}
