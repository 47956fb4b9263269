"""Slow, obvious loop implementations (one anchor at a time) of the estimators and objectives.

They exist to check the vectorised code (tests compare the two to 1e-5) and as the baseline of
``benchmarks/objectives.py``. Never use them for training. Single process only (no gathering).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from multiview.core.features import Features


def _rows(scores: torch.Tensor):
    """Yield ``(i, positives [N], negatives [K])`` per anchor of ``[B, M]`` / ``[B, M, N]`` scores (offset 0)."""
    s = scores.unsqueeze(-1) if scores.dim() == 2 else scores
    for i in range(s.shape[0]):
        others = torch.cat([s[i, :i], s[i, i + 1 :]])  # every other image, every location
        yield i, s[i, i], others.reshape(-1)


def infonce_loop(scores: torch.Tensor) -> torch.Tensor:
    """Anchor by anchor: each positive of anchor i competes with the negatives of row i (other images only)."""
    terms = []
    for _, pos, neg in _rows(scores.float()):
        terms.append(torch.logaddexp(pos, torch.logsumexp(neg, 0)) - pos)
    return torch.cat(terms).mean()


def jsd_loop(scores: torch.Tensor) -> torch.Tensor:
    pos_terms, neg_terms = [], []
    for _, pos, neg in _rows(scores.float()):
        pos_terms.append(F.softplus(-pos))
        neg_terms.append(F.softplus(neg))
    return torch.cat(pos_terms).mean() + torch.cat(neg_terms).mean() - 2 * math.log(2)


def dv_loop(scores: torch.Tensor) -> torch.Tensor:
    """Returns the DV VALUE (the loss is its negative)."""
    pos_all, neg_all = [], []
    for _, pos, neg in _rows(scores.float()):
        pos_all.append(pos)
        neg_all.append(neg)
    neg = torch.cat(neg_all)
    return torch.cat(pos_all).mean() - torch.log(torch.exp(neg).sum() / neg.numel())


def nwj_loop(scores: torch.Tensor) -> torch.Tensor:
    """Returns the NWJ VALUE (the loss is its negative)."""
    pos_all, neg_all = [], []
    for _, pos, neg in _rows(scores.float()):
        pos_all.append(pos)
        neg_all.append(torch.exp(neg - 1))
    return torch.cat(pos_all).mean() - torch.cat(neg_all).mean()


def amdim_task_loop(source: torch.Tensor, target: torch.Tensor, clip: float = 20.0, reg_weight: float = 0.05):
    """One AMDIM task, anchor by anchor: source ``[B, D]``, target ``[B, D, H, W]`` -> (nce, regulariser)."""
    b, d = source.shape
    n = target.shape[2] * target.shape[3]
    # one [D, B*N] matrix shared by every anchor (autograd keeps it once, not once per anchor)
    tgt = target.flatten(2).transpose(0, 1).reshape(d, b * n)
    nce, reg = [], []
    for i in range(b):
        raw = (source[i] @ tgt).reshape(b, n) / math.sqrt(d)  # anchor i against every location
        reg.append(raw.pow(2).mean())
        clipped = clip * torch.tanh(raw / clip)
        negatives = torch.cat([clipped[:i], clipped[i + 1 :]]).reshape(-1)  # other images only
        # each positive location competes with the same negatives
        nce.append(torch.logaddexp(clipped[i], torch.logsumexp(negatives, 0)) - clipped[i])
    return torch.cat(nce).mean(), reg_weight * torch.stack(reg).mean()


def amdim_loop(
    features: dict[str, Features], views, locations: torch.Tensor, small="r5", large="r7", tasks=("1t5", "1t7", "5t5")
):
    """The AMDIM total with given 5->5 source ``locations [2, B]``."""
    total, reg = 0.0, 0.0
    pairs = (tuple(views), tuple(views)[::-1])
    for task in tasks:
        task_loss = 0.0
        for direction, (a, c) in enumerate(pairs):
            fa, fc = features[a], features[c]
            if task == "5t5":
                flat = fa.local[small].flatten(2)  # [B, D, N]
                source = torch.stack([flat[i, :, int(locations[direction, i])] for i in range(flat.shape[0])])
            else:
                source = fa.global_
            nce, r = amdim_task_loop(source, fc.local[small if task in ("1t5", "5t5") else large])
            task_loss = task_loss + nce / 2
            reg = reg + r
        total = total + task_loss
    return total + 0.5 * reg


def cmc_in_batch_loop(z: list[torch.Tensor], pairs, temperature: float) -> torch.Tensor:
    """CMC in-batch InfoNCE on normalised ``z`` (per view ``[B, D]``), anchor by anchor."""
    total = 0.0
    for i, j in pairs:
        for a, c in ((i, j), (j, i)):
            terms = []
            for n in range(z[a].shape[0]):
                logits = z[c] @ z[a][n] / temperature  # [B]
                terms.append(torch.logsumexp(logits, 0) - logits[n])
            total = total + torch.stack(terms).mean()
    return total


def cmc_bank_nce_loop(scores: torch.Tensor, z_const: float, bank_size: int) -> torch.Tensor:
    """CMC NCE, row by row, from ``scores [B, K + 1]`` (divided by tau) and the constant Z."""
    k = scores.shape[1] - 1
    noise = k / bank_size
    rows = []
    for row in scores.double():
        p = torch.exp(row) / z_const
        rows.append(-torch.log(p[0] / (p[0] + noise)) - torch.log(noise / (p[1:] + noise)).sum())
    return torch.stack(rows).mean()


def dim_local_scores_loop(g: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """``T[i, j, p] = g_i . l_{j, p}`` anchor by anchor: g ``[B, U]``, local ``[B, U, H, W]`` -> ``[B, B, H*W]``."""
    b, u, h, w = local.shape
    flat = local.flatten(2).transpose(0, 1).reshape(u, b * h * w)  # shared by every anchor
    return torch.stack([(g[i] @ flat).reshape(b, h * w) for i in range(g.shape[0])])


def cmi_adversarial_loop(obj, z: torch.Tensor, labels: list[torch.Tensor], joint_target: float) -> torch.Tensor:
    """CMI's adversarial sum, group by group, with the same permutations as ``obj`` (its generator state)."""
    total = z.new_zeros(())
    for k, (joint, permuted, a) in enumerate(obj.discriminator_inputs(z, labels)):
        disc = obj.discriminators[k]
        for v in range(obj.num_values[k]):
            rows = (a == v).nonzero().flatten()
            if rows.numel() == 0:
                continue
            d_joint, d_perm = disc(joint[rows]).squeeze(1), disc(permuted[rows]).squeeze(1)
            total = total + F.binary_cross_entropy_with_logits(d_joint, torch.full_like(d_joint, joint_target))
            total = total + F.binary_cross_entropy_with_logits(d_perm, torch.full_like(d_perm, 1 - joint_target))
    return total


_LOOP_ESTIMATORS = {"jsd": jsd_loop, "nce": infonce_loop, "infonce": infonce_loop, "dv": lambda s: -dv_loop(s)}


def dim_loop(obj, features: dict[str, Features]) -> torch.Tensor:
    """The DIM total of ``obj`` (its own critic heads) with loop scores and loop estimators."""
    estimator = _LOOP_ESTIMATORS["nce" if obj.estimator.__name__ == "infonce" else obj.estimator.__name__]
    y = features[obj.global_view].global_
    total = y.new_zeros(())
    if obj.beta > 0:
        local = features[obj.view].local[obj.local]
        scores = dim_local_scores_loop(obj.local_global(y), obj.local_local(local))
        total = total + obj.beta * estimator(scores)
    if obj.alpha > 0:
        local = features[obj.view].local[obj.local]
        g, e = obj.global_global(y), obj.global_map(local)
        scores = torch.stack([e @ g[i] for i in range(g.shape[0])])
        total = total + obj.alpha * estimator(scores)
    if obj.gamma > 0:
        total = total + obj.gamma * F.softplus(-obj.prior(torch.sigmoid(y))).mean()
    return total


def cmc_loop(obj, features: dict[str, Features], batch: dict) -> torch.Tensor:
    """The CMC total of ``obj`` anchor by anchor; for the bank, with ``obj``'s negatives and frozen Z."""
    z = [F.normalize(features[v].global_, dim=1) for v in obj.views]
    tau = float(torch.exp(-obj.log_inv_tau))
    if obj.negatives == "batch":
        return cmc_in_batch_loop(z, obj.pairs(), tau)
    rows = obj.draw_negatives(torch.as_tensor(batch[obj.index_key]))
    total = 0.0
    for i, j in obj.pairs():
        for a, c in ((i, j), (j, i)):
            scores = torch.stack([obj.bank[c][rows[n]] @ z[a][n] for n in range(rows.shape[0])]) / tau
            if obj.loss_kind == "softmax":
                total = total + torch.stack([torch.logsumexp(r, 0) - r[0] for r in scores]).mean()
            else:
                total = total + cmc_bank_nce_loop(scores, float(torch.exp(obj.log_z[a, c])), obj.bank_size)
    return total
