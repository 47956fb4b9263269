"""The correlated-Gaussian MI benchmark of Poole et al. 2019 ("On variational bounds of mutual information").

``x ~ N(0, I_d)``, ``y = rho x + sqrt(1 - rho^2) eps``; the true MI is ``-(d / 2) log(1 - rho^2)`` nats. Used by
``benchmarks/mi_gaussian.py`` and the estimator tests; critics follow the paper (separable or concat MLPs).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange, repeat
from torch import nn

from multiview.objectives.critics import mlp


def rho_for_mi(mi: float, dim: int = 20) -> float:
    """Correlation giving ``mi`` nats between d-dim Gaussians: ``sqrt(1 - exp(-2 mi / d))``."""
    if mi < 0 or dim <= 0:
        raise ValueError(f"rho_for_mi: expected mi >= 0 and dim > 0, got mi={mi}, dim={dim}")
    return math.sqrt(1 - math.exp(-2 * mi / dim))


def mi_for_rho(rho: float, dim: int = 20) -> float:
    return -dim / 2 * math.log(1 - rho**2)


def sample_pairs(batch: int, dim: int, rho: float, generator: torch.Generator | None = None):
    """``x, y: [B, d]`` jointly Gaussian with per-dimension correlation ``rho``."""
    x = torch.randn(batch, dim, generator=generator)
    eps = torch.randn(batch, dim, generator=generator)
    return x, rho * x + math.sqrt(1 - rho**2) * eps


def log_ratio_scores(x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """The optimal critic ``S[i, j] = log p(y_i | x_j) - log p(y_i)`` for every pair: ``[B, B]``."""
    d = x.shape[1]
    var = 1 - rho**2
    diff = rearrange(y, "i d -> i 1 d") - rho * rearrange(x, "j d -> 1 j d")  # [B, B, d]
    cond = -0.5 * diff.pow(2).sum(-1) / var - d / 2 * math.log(var)
    marginal = -0.5 * y.pow(2).sum(-1, keepdim=True)
    return cond - marginal


class SeparableCritic(nn.Module):
    """``S[i, j] = g(x_j) . h(y_i)`` with two MLPs (``hidden`` x ``layers``, embedding ``embed``)."""

    def __init__(self, dim: int = 20, hidden: int = 256, layers: int = 2, embed: int = 32):
        super().__init__()
        self.g = mlp([dim] + [hidden] * layers + [embed])
        self.h = mlp([dim] + [hidden] * layers + [embed])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.h(y) @ self.g(x).T


class ConcatCritic(nn.Module):
    """``S[i, j] = f([x_j ; y_i])`` with one MLP on every pair (B^2 evaluations)."""

    def __init__(self, dim: int = 20, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.f = mlp([2 * dim] + [hidden] * layers + [1])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        pairs = torch.cat([repeat(x, "j d -> i j d", i=b), repeat(y, "i d -> i j d", j=b)], dim=-1)
        return rearrange(self.f(pairs), "i j 1 -> i j")
