"""Mutual-information estimators on one score-matrix interface.

Scores: ``S[i, j]`` = critic value of (x_j, y_i): row i is an anchor, the positive (joint) pair of row i is column
``i + offset`` (``offset`` = this process's first row when the columns were gathered from every process; 0
otherwise), every other column is a negative (product of marginals). The local form ``S[i, j, p]``
(``[B, M, N]``, DIM's and AMDIM's global-to-local scores) has N positive positions per row, ``S[i, i + offset, p]``,
and negatives ``S[i, j, q]`` for every ``j != i + offset`` and every ``q`` (other locations of the same image are
excluded, not shifted). ``[B, M]`` is the local form with N = 1.

Each estimator returns :class:`Estimate` ``(loss, mi)``: the loss to minimise and the MI estimate to log
(detached). References: Oord et al. 2018 (InfoNCE), Nowozin et al. 2016 / Hjelm et al. 2019 (JSD),
Donsker-Varadhan via Belghazi et al. 2018 (DV, MINE), Nguyen-Wainwright-Jordan 2010 (NWJ), Poole et al. 2019.

Examples:
    >>> scores = torch.zeros(64, 64)
    >>> round(float(infonce(scores).loss), 3)   # log 64
    4.159
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Estimate(NamedTuple):
    loss: torch.Tensor  # scalar to minimise
    mi: torch.Tensor  # scalar MI (or divergence) estimate, detached


def _as_local(scores: torch.Tensor, offset: int) -> torch.Tensor:
    """``[B, M]`` or ``[B, M, N]`` -> float32 ``[B, M, N]``, validating the positive columns."""
    if scores.dim() == 2:
        scores = scores.unsqueeze(-1)
    if scores.dim() != 3:
        raise ValueError(f"scores: expected [B, M] or [B, M, N], got shape {tuple(scores.shape)}")
    b, m, _ = scores.shape
    if offset < 0 or offset + b > m:
        raise ValueError(
            f"offset: expected 0 <= offset <= M - B = {m - b}, got {offset} for scores {tuple(scores.shape)}"
        )
    # Low-precision scores (AMP) are summed in float32; float64 stays float64 (gradcheck).
    return scores if scores.dtype in (torch.float32, torch.float64) else scores.float()


def positive_mask(b: int, m: int, offset: int = 0, device=None) -> torch.Tensor:
    """``[B, M]`` bool, True at the positive column ``i + offset`` of each row."""
    cols = torch.arange(m, device=device)
    rows = torch.arange(b, device=device) + offset
    return rearrange(cols, "m -> 1 m") == rearrange(rows, "b -> b 1")


def negative_mask(b: int, m: int, n: int = 1, offset: int = 0, device=None) -> torch.Tensor:
    """``[B, M * N]`` bool over the flattened ``(j, q)`` negatives: ``(M - 1) * N`` ones per row."""
    keep = ~positive_mask(b, m, offset, device)
    return rearrange(keep.unsqueeze(-1).expand(b, m, n), "b m n -> b (m n)")


def _split(scores: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[B, M, N]`` -> positives ``[B, N]``, negatives ``[B, M * N]``, negative mask ``[B, M * N]``."""
    b, m, n = scores.shape
    rows = torch.arange(b, device=scores.device)
    pos = scores[rows, rows + offset]
    return pos, rearrange(scores, "b m n -> b (m n)"), negative_mask(b, m, n, offset, scores.device)


def _negative_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values [B, K]`` over the True entries of ``mask``."""
    return (values * mask).sum() / mask.sum().clamp_min(1)


def _negative_log_mean_exp(neg: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log of the mean of exp over the masked negatives, computed stably."""
    masked = neg.masked_fill(~mask, float("-inf"))
    return torch.logsumexp(rearrange(masked, "b k -> (b k)"), dim=0) - torch.log(mask.sum().float())


def infonce(scores: torch.Tensor, offset: int = 0) -> Estimate:
    """InfoNCE: each positive competes with its row's negatives; MI <= log(1 + (M - 1) N).

    With ``[B, B]`` scores the loss is ``-mean_i [S_ii - logsumexp_j S_ij]`` and the estimate ``log B - loss``.
    """
    s = _as_local(scores, offset)
    b, m, n = s.shape
    pos, neg, mask = _split(s, offset)
    neg_lse = torch.logsumexp(neg.masked_fill(~mask, float("-inf")), dim=1)  # [B]
    # log-sum-exp of [positive, every negative of the row], per positive position.
    loss = (torch.logaddexp(pos, rearrange(neg_lse, "b -> b 1")) - pos).mean()
    return Estimate(loss, (math.log(1 + (m - 1) * n) - loss).detach())


def jsd(scores: torch.Tensor, offset: int = 0) -> Estimate:
    """Jensen-Shannon (f-GAN) objective: ``E_P sp(-T) + E_Q sp(T) - 2 log 2`` (0 at T = 0).

    The estimate is ``-loss`` (a JS-divergence bound, not nats of MI): to read MI from a JSD-trained critic
    use ``nwj(scores + 1)`` (its optimum is ``log r``, NWJ's is ``1 + log r``).
    """
    s = _as_local(scores, offset)
    pos, neg, mask = _split(s, offset)
    loss = F.softplus(-pos).mean() + _negative_mean(F.softplus(neg), mask) - 2 * math.log(2)
    return Estimate(loss, -loss.detach())


def dv(scores: torch.Tensor, offset: int = 0) -> Estimate:
    """Donsker-Varadhan: ``E_P T - log E_Q e^T`` (single-batch partition term: biased)."""
    s = _as_local(scores, offset)
    pos, neg, mask = _split(s, offset)
    value = pos.mean() - _negative_log_mean_exp(neg, mask)
    return Estimate(-value, value.detach())


def nwj(scores: torch.Tensor, offset: int = 0) -> Estimate:
    """NWJ (f-divergence, KL): ``E_P T - E_Q e^(T - 1)``; optimal critic ``1 + log r``."""
    s = _as_local(scores, offset)
    pos, neg, mask = _split(s, offset)
    value = pos.mean() - _negative_mean(torch.exp(neg - 1), mask)
    return Estimate(-value, value.detach())


class MINE(nn.Module):
    """MINE: the DV value with the gradient-bias fix of Belghazi et al. 2018.

    The gradient of ``log E_Q e^T`` is ``grad E_Q e^T / E_Q e^T``; the minibatch denominator biases it, so it is
    replaced by an exponential moving average (rate ``ema_rate``) of ``E_Q e^T`` over batches, this batch included.
    The loss's VALUE is ``-DV`` (what is logged); its GRADIENT is that of ``-[E_P T - E_Q e^T / sg(EMA)]``.
    The EMA is a buffer (kept in log space for stability), so it is saved with the objective.
    """

    def __init__(self, ema_rate: float = 0.01):
        super().__init__()
        if not 0.0 < ema_rate <= 1.0:
            raise ValueError(f"ema_rate: expected a value in (0, 1], got {ema_rate}")
        self.ema_rate = ema_rate
        self.register_buffer("log_ema", torch.tensor(float("nan")))

    def forward(self, scores: torch.Tensor, offset: int = 0) -> Estimate:
        s = _as_local(scores, offset)
        pos, neg, mask = _split(s, offset)
        log_mean_exp = _negative_log_mean_exp(neg, mask)
        with torch.no_grad():
            current = log_mean_exp.detach()
            if torch.isnan(self.log_ema):
                self.log_ema.copy_(current)
            else:
                blended = (
                    torch.logaddexp(math.log1p(-self.ema_rate) + self.log_ema, math.log(self.ema_rate) + current)
                    if self.ema_rate < 1.0
                    else current
                )
                self.log_ema.copy_(blended)
        value = pos.mean() - log_mean_exp
        # E_Q e^T / EMA, computed as exp(log E_Q e^T - log EMA); its gradient is grad E_Q e^T / EMA.
        surrogate = -(pos.mean() - torch.exp(log_mean_exp - self.log_ema))
        loss = -value.detach() + (surrogate - surrogate.detach())
        return Estimate(loss, value.detach())


_ESTIMATORS: dict[str, Callable[..., Estimate]] = {
    "infonce": infonce,
    "nce": infonce,
    "jsd": jsd,
    "dv": dv,
    "nwj": nwj,
}

NAMES = ("infonce", "nce", "jsd", "dv", "nwj", "mine")


def get_estimator(name: str, **kwargs) -> Callable[..., Estimate]:
    """Estimator by name: a function, or a fresh stateful :class:`MINE` module for ``"mine"``."""
    if name == "mine":
        return MINE(**kwargs)
    if name not in _ESTIMATORS:
        raise ValueError(f"estimator: expected one of {list(NAMES)}, got {name!r}")
    return _ESTIMATORS[name]
