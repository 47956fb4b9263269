"""Deep InfoMax (Hjelm et al., ICLR 2019): global and local MI between an image's features and its summary.

Critic "encode-and-dot": the global vector Y ``[B, D]`` and the local map ``[B, C, H, W]`` each go through a
1x1 residual MLP into U dims and the score is a dot product, ``T[i, j, p] = g_i . l_{j, p}``. Positives are
``(i, i, p)``, negatives ``(i, j, q)`` with ``j != i`` and every q. Prior matching pushes ``sigmoid(Y)`` towards
U[0, 1]^D with its OWN discriminator step (an :class:`AuxStep`), not one summed backward.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn

from multiview.objectives import register
from multiview.objectives.base import AuxStep, FeatureDict, Objective, ObjectiveOutput, frozen_call
from multiview.objectives.critics import ResidualMLP, mlp
from multiview.objectives.distributed import gather_with_grad, local_offset
from multiview.objectives.estimators import get_estimator

_DIM_ESTIMATORS = ("jsd", "nce", "infonce", "dv")


class _MapEncoder(nn.Module):
    """Global-MI critic side for the whole local map: 1x1 conv, flatten, linear. ``[B, C, H, W] -> [B, U]``."""

    def __init__(self, in_dim: int, size: tuple[int, int], out_dim: int, squeeze: int = 64):
        super().__init__()
        self.size = size
        self.squeeze = nn.Sequential(nn.Conv2d(in_dim, squeeze, 1), nn.ReLU())
        self.project = nn.Sequential(
            nn.Linear(squeeze * size[0] * size[1], out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.size:
            raise ValueError(f"dim global critic: expected a local map of size {self.size}, got {tuple(x.shape[-2:])}")
        return self.project(rearrange(self.squeeze(x), "b c h w -> b (c h w)"))


@register("dim")
class DIM(Objective):
    """DIM objective ``alpha * L_global + beta * L_local + gamma * L_prior``.

    Args:
        view: the view whose global vector Y (``Features.global_``) and local map are used.
        local: name of the local map (``Features.local[local]``, ``[B, C, H, W]``).
        global_dim: D, channels of Y.
        local_dim: C, channels of the local map.
        estimator: ``"jsd"`` (default), ``"nce"`` / ``"infonce"`` or ``"dv"``.
        alpha, beta, gamma: weights; the default (0, 1, 0.1) is DIM(L); DIM(G) is (1, 0, 1).
        critic_dim: U, width of the encode-and-dot critic.
        local_size: (H, W) of the local map; needed only for the global term (alpha > 0).
        prior_lr, prior_betas: the prior discriminator's optimiser (its own step).
        gradient_penalty: weight of the discriminator's gradient penalty.
        global_view: take Y from another view (cross-view DIM); default ``view``.

    Examples:
        >>> from multiview.encoders.features import Features
        >>> obj = DIM(view="x", local="s4", global_dim=64, local_dim=128, critic_dim=32)
        >>> feats = {"x": Features(torch.randn(8, 64), {"s4": torch.randn(8, 128, 8, 8)})}
        >>> out = obj(feats, {})
        >>> sorted(out.metrics)
        ['local_mi', 'prior']
    """

    name = "dim"

    def __init__(
        self,
        view: str = "view0",
        local: str = "s8",
        global_dim: int = 64,
        local_dim: int = 128,
        estimator: str = "jsd",
        alpha: float = 0.0,
        beta: float = 1.0,
        gamma: float = 0.1,
        critic_dim: int = 1024,
        local_size: int | tuple[int, int] = 8,
        prior_lr: float = 1e-4,
        prior_betas: tuple[float, float] = (0.9, 0.999),
        gradient_penalty: float = 1.0,
        global_view: str | None = None,
    ):
        super().__init__()
        if estimator not in _DIM_ESTIMATORS:
            raise ValueError(f"dim estimator: expected one of {list(_DIM_ESTIMATORS)}, got {estimator!r}")
        for key, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma), ("gradient_penalty", gradient_penalty)):
            if value < 0:
                raise ValueError(f"dim {key}: expected a weight >= 0, got {value}")
        if alpha == beta == gamma == 0:
            raise ValueError("dim: alpha, beta and gamma are all 0; expected at least one positive weight")
        self.view, self.local, self.global_view = view, local, global_view or view
        self.global_dim, self.local_dim = global_dim, local_dim
        self.estimator = get_estimator(estimator)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.gradient_penalty = float(gradient_penalty)
        self.prior_lr, self.prior_betas = prior_lr, tuple(prior_betas)
        if beta > 0:
            self.local_global = ResidualMLP(global_dim, critic_dim)
            self.local_local = ResidualMLP(local_dim, critic_dim)
        if alpha > 0:
            size = (local_size, local_size) if isinstance(local_size, int) else tuple(local_size)
            self.global_global = ResidualMLP(global_dim, critic_dim)
            self.global_map = _MapEncoder(local_dim, size, critic_dim)
        if gamma > 0:
            self.prior = mlp([global_dim, 1000, 200, 1])

    def requires(self) -> dict[str, tuple[str, ...]]:
        needs: dict[str, tuple[str, ...]] = {self.global_view: ()}
        needs[self.view] = (self.local,) if (self.alpha > 0 or self.beta > 0) else ()
        return needs

    def _check_dims(self, y: torch.Tensor, local: torch.Tensor) -> None:
        if y.shape[1] != self.global_dim or local.shape[1] != self.local_dim:
            raise ValueError(
                f"objective dim: expected global_dim={self.global_dim} and local_dim={self.local_dim} "
                f"(view {self.view!r}, map {self.local!r}), features have {y.shape[1]} and {local.shape[1]}"
            )

    def local_scores(self, y: torch.Tensor, local: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Y ``[B, D]``, map ``[B, C, H, W]`` -> scores ``[B, M, H*W]`` (M = global batch) and the offset."""
        g = self.local_global(y)
        l_all = gather_with_grad(rearrange(self.local_local(local), "b u h w -> b u (h w)"))
        return einsum(g, l_all, "b u, m u n -> b m n"), local_offset(y.shape[0])

    def global_scores(self, y: torch.Tensor, local: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Y ``[B, D]``, map ``[B, C, H, W]`` -> scores ``[B, M]`` and the offset."""
        e_all = gather_with_grad(self.global_map(local))
        return self.global_global(y) @ e_all.T, local_offset(y.shape[0])

    def compute(self, features: FeatureDict, batch: Mapping) -> ObjectiveOutput:
        y = features[self.global_view].global_
        loss = y.new_zeros(())
        metrics: dict[str, torch.Tensor] = {}
        if self.alpha > 0 or self.beta > 0:
            local = features[self.view].local[self.local]
            self._check_dims(y, local)
        if self.beta > 0:
            est = self.estimator(*self.local_scores(y, local))
            loss = loss + self.beta * est.loss
            metrics["local_mi"] = est.mi
        if self.alpha > 0:
            est = self.estimator(*self.global_scores(y, local))
            loss = loss + self.alpha * est.loss
            metrics["global_mi"] = est.mi
        if self.gamma > 0:
            # The encoder fools the (frozen) discriminator; the discriminator itself moves in its own step.
            prior_term = F.softplus(-frozen_call(self.prior, torch.sigmoid(y))).mean()
            loss = loss + self.gamma * prior_term
            metrics["prior"] = prior_term.detach()
        return ObjectiveOutput(loss, metrics)

    def prior_loss(self, features: FeatureDict, batch: Mapping) -> torch.Tensor:
        """Discriminator step on detached ``z = sigmoid(Y)`` vs ``u ~ U[0, 1]``, with a gradient penalty."""
        z = torch.sigmoid(features[self.global_view].global_.detach()).requires_grad_(True)
        u = torch.rand_like(z).requires_grad_(True)
        d_u, d_z = self.prior(u), self.prior(z)
        loss = F.softplus(-d_u).mean() + F.softplus(d_z).mean()
        if self.gradient_penalty > 0:
            grad_u, grad_z = torch.autograd.grad((d_u.sum(), d_z.sum()), (u, z), create_graph=True)
            penalty = 0.5 * (grad_u.pow(2).sum(1).mean() + grad_z.pow(2).sum(1).mean())
            loss = loss + self.gradient_penalty * penalty
        return loss

    def auxiliary_steps(self) -> list[AuxStep]:
        if self.gamma <= 0:
            return []
        return [AuxStep("prior", self.prior, self.prior_lr, self.prior_betas, self.prior_loss)]
