"""Contrastive Multiview Coding (Tian, Krishnan, Isola 2019).

M views, one L2-normalised vector per view. ``mode="core"``: ``L = sum_{j>=1} L(V0, Vj)``; ``mode="full"``:
``L = sum_{i<j} L(Vi, Vj)``; each ``L(Vi, Vj)`` sums both directions. Negatives come from the batch
(``negatives="batch"``: InfoNCE over the global batch, gathered across processes with gradients) or from a
memory bank per view (``negatives="bank"``: K negatives drawn uniformly, slot 0 the positive; NCE with
``P_k = exp(s_k / tau) / Z``, Z set once on the first batch and then frozen, or a softmax over the K + 1 logits).
The bank is a detached buffer, updated AFTER scoring in :meth:`CMC.after_step`:
``bank[y] <- normalise(m * bank[y] + (1 - m) * z)`` with m = 0.5, from the features and indices of EVERY process.

Pair heads (``pair_heads=True``, in-batch negatives only): every contrasted pair (i, j) gets two linear heads,
``h_ij`` for view i and ``h_ji`` for view j, and ``L(Vi, Vj)`` scores ``normalise(h_ij(z_i))`` against
``normalise(h_ji(z_j))``. With one shared vector per view, the full graph makes each view's embedding agree with
all M - 1 partners at once; a pair's heads let it keep the directions that only that pair shares (CCA, the
usual baseline, fits each pair on its own). Retrieval between fields a and b then uses the (a, b) heads
(:meth:`CMC.pair_projections`); the per-view encoder output stays the representation for probes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from einops import einsum

from multiview.objectives import register
from multiview.objectives.base import FeatureDict, Objective, ObjectiveOutput
from multiview.objectives.distributed import (
    all_reduce_mean,
    gather_no_grad,
    gather_with_grad,
    local_offset,
    rank_and_world,
)
from multiview.objectives.estimators import infonce


def bank_nce_loss(scores: torch.Tensor, log_z: torch.Tensor, bank_size: int) -> torch.Tensor:
    """CMC's NCE loss on ``scores [B, K + 1]`` (already divided by tau; column 0 the positive).

    ``P = exp(s) / Z``; noise probability per slot ``K / N``; loss, averaged over rows:
    ``-log[P_0 / (P_0 + K/N)] - sum_{k>=1} log[(K/N) / (P_k + K/N)]``, computed in log space.
    """
    k = scores.shape[1] - 1
    log_p = scores.float() - log_z
    log_noise = math.log(k / bank_size)
    # log[P / (P + c)] = -softplus(log c - log P) and log[c / (P + c)] = -softplus(log P - log c): accurate when
    # P << c, where the difference of two logs would lose the small terms that K of them add up.
    positive = -F.softplus(log_noise - log_p[:, 0])
    negatives = -F.softplus(log_p[:, 1:] - log_noise).sum(dim=1)
    return -(positive + negatives).mean()


class _BankScores(torch.autograd.Function):
    """``s[b, k] = bank[rows[b, k]] . z[b]`` in batch chunks, recomputing the gather in backward.

    Gathering ``[B, K + 1, D]`` bank rows at once (and keeping them for backward) costs 4 GB at B = 256,
    K = 4096, D = 1024; chunks of about ``budget`` floats bound it. The bank is a buffer: no gradient.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, bank: torch.Tensor, rows: torch.Tensor, budget: int) -> torch.Tensor:
        ctx.save_for_backward(bank, rows)
        ctx.step = max(1, budget // (rows.shape[1] * bank.shape[1]))
        parts = [
            einsum(_gather_rows(bank, rows[i : i + ctx.step]), z[i : i + ctx.step], "b k d, b d -> b k")
            for i in range(0, rows.shape[0], ctx.step)
        ]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        bank, rows = ctx.saved_tensors
        parts = [
            einsum(_gather_rows(bank, rows[i : i + ctx.step]), grad[i : i + ctx.step], "b k d, b k -> b d")
            for i in range(0, rows.shape[0], ctx.step)
        ]
        return torch.cat(parts), None, None, None


def _gather_rows(bank: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``bank [N, D]``, ``rows [b, k]`` -> ``[b, k, D]`` (index_select: about 2x faster than ``bank[rows]``)."""
    return bank.index_select(0, rows.reshape(-1)).view(*rows.shape, bank.shape[1])


def bank_scores(
    z: torch.Tensor, bank: torch.Tensor, rows: torch.Tensor, method: str = "auto", budget: int = 1 << 24
) -> torch.Tensor:
    """``z [B, D]``, ``bank [N, D]``, ``rows [B, K + 1]`` -> ``[B, K + 1]`` dot products (gradient to z only).

    ``"dense"`` scores every bank row (``[B, N]`` matmul, then a gather): cheap while N is a few dozen times K,
    because a matmul streams memory while gathering K random rows per anchor does not. ``"gather"`` gathers the
    rows in chunks of about ``budget`` floats and recomputes them in backward (memory independent of N).
    ``"auto"`` takes dense when ``N <= 32 (K + 1)``.
    """
    if method not in ("auto", "dense", "gather"):
        raise ValueError(f"bank_scores method: expected 'auto', 'dense' or 'gather', got {method!r}")
    bank = bank.to(z.dtype)
    if method == "dense" or (method == "auto" and bank.shape[0] <= 32 * rows.shape[1]):
        return (z @ bank.T).gather(1, rows)
    return _BankScores.apply(z, bank, rows, budget)


class PairHeads(torch.nn.Module):
    """One linear head per side of P view pairs, applied in one batched product.

    ``weight [P, 2, D, E]``, ``bias [P, 2, E]``; side 0 maps view i of pair p, side 1 view j. Initialised like
    ``nn.Linear`` (uniform in ``+-1/sqrt(D)``).

    Shapes: ``x [P, 2, B, D]`` -> ``[P, 2, B, E]``.
    """

    def __init__(self, n_pairs: int, in_dim: int, out_dim: int):
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise ValueError(f"cmc pair heads: expected feature_dim and head_dim >= 1, got {in_dim} and {out_dim}")
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = torch.nn.Parameter(torch.empty(n_pairs, 2, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = torch.nn.Parameter(torch.empty(n_pairs, 2, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[:2] != self.weight.shape[:2] or x.shape[3] != self.weight.shape[2]:
            raise ValueError(
                f"cmc pair heads: expected input [{self.weight.shape[0]}, 2, B, {self.weight.shape[2]}] "
                f"(feature_dim must equal the encoders' output dim), got {tuple(x.shape)}"
            )
        return einsum(x, self.weight.to(x.dtype), "p s b d, p s d e -> p s b e") + self.bias.to(x.dtype)[:, :, None]


class PairHeadView(torch.nn.Module):
    """One head of :class:`PairHeads` (pair ``p``, side ``side``) as a module: ``x [B, D]`` -> ``[B, E]``."""

    def __init__(self, heads: PairHeads, p: int, side: int):
        super().__init__()
        self.heads, self.p, self.side = heads, p, side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.heads.weight[self.p, self.side], self.heads.bias[self.p, self.side]
        return x.to(weight.dtype) @ weight + bias


@register("cmc")
class CMC(Objective):
    """The CMC objective.

    Args:
        views: M >= 2 view names (the first is the core view in ``mode="core"``).
        mode: ``"full"`` (every pair) or ``"core"`` (the first view with each other view).
        temperature: tau (0.07).
        learn_temperature: make log(1/tau) a parameter (initialised from ``temperature``).
        negatives: ``"batch"`` (in-batch InfoNCE) or ``"bank"`` (memory bank).
        loss: for the bank: ``"nce"`` (Z frozen on the first batch) or ``"softmax"`` (cross-entropy over K + 1).
        bank_size: N, number of training samples (bank only).
        feature_dim: D of the view vectors (bank only).
        num_negatives: K (bank only; 4096).
        momentum: bank update momentum m (0.5).
        index_key: batch key holding each sample's index in [0, N) as ``[B]`` integers (bank only).
        normalize: L2-normalise the global vectors first (True, as in the paper).
        seed: seed of the bank's initial values and of the negative draws (drawn for the global batch from
            ``(seed, step)``, so every process draws what one process would).
        pair_heads: a linear head per view per contrasted pair (see the module docstring); batch negatives only.
        head_dim: output dim E of each pair head (default ``feature_dim``); ``feature_dim`` is then their input D.

    Examples:
        >>> from multiview.encoders.features import Features
        >>> obj = CMC(views=("L", "ab"))
        >>> out = obj({"L": Features(torch.randn(8, 128)), "ab": Features(torch.randn(8, 128))}, {})
        >>> out.loss.shape
        torch.Size([])
    """

    name = "cmc"

    def __init__(
        self,
        views: tuple[str, ...] = ("view0", "view1"),
        mode: str = "full",
        temperature: float = 0.07,
        learn_temperature: bool = False,
        negatives: str = "batch",
        loss: str = "nce",
        bank_size: int | None = None,
        feature_dim: int = 128,
        num_negatives: int = 4096,
        momentum: float = 0.5,
        index_key: str = "index",
        normalize: bool = True,
        seed: int = 0,
        pair_heads: bool = False,
        head_dim: int | None = None,
    ):
        super().__init__()
        self._validate(views, mode, temperature, negatives, loss, bank_size, num_negatives, momentum)
        if pair_heads and negatives != "batch":
            raise ValueError("cmc pair_heads: needs negatives='batch' (a memory bank holds one vector per view)")
        self.views, self.mode, self.negatives, self.loss_kind = tuple(views), mode, negatives, loss
        self.normalize, self.index_key, self.seed = normalize, index_key, seed
        log_inv_tau = torch.tensor(-math.log(temperature))
        if learn_temperature:
            self.log_inv_tau = torch.nn.Parameter(log_inv_tau)
        else:
            self.register_buffer("log_inv_tau", log_inv_tau)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        if negatives == "bank":
            self.bank_size, self.num_negatives, self.momentum = int(bank_size), int(num_negatives), float(momentum)
            bound = 1.0 / math.sqrt(feature_dim / 3)
            generator = torch.Generator().manual_seed(seed)
            bank = torch.rand(len(views), bank_size, feature_dim, generator=generator) * 2 * bound - bound
            self.register_buffer("bank", bank)
            # log Z per ordered pair (anchor view, bank view); NaN until the first batch sets it.
            self.register_buffer("log_z", torch.full((len(views), len(views)), float("nan")))
        self.heads = PairHeads(len(self.pairs()), feature_dim, head_dim or feature_dim) if pair_heads else None

    @staticmethod
    def _validate(views, mode, temperature, negatives, loss, bank_size, num_negatives, momentum) -> None:
        if len(views) < 2 or len(set(views)) != len(views):
            raise ValueError(f"cmc views: expected at least two distinct view names, got {list(views)}")
        if mode not in ("full", "core"):
            raise ValueError(f"cmc mode: expected 'full' or 'core', got {mode!r}")
        if temperature <= 0:
            raise ValueError(f"cmc temperature: expected > 0, got {temperature}")
        if negatives not in ("batch", "bank"):
            raise ValueError(f"cmc negatives: expected 'batch' or 'bank', got {negatives!r}")
        if loss not in ("nce", "softmax"):
            raise ValueError(f"cmc loss: expected 'nce' or 'softmax', got {loss!r}")
        if negatives == "bank":
            if bank_size is None or bank_size < 2:
                raise ValueError(f"cmc bank_size: expected the number of training samples (>= 2), got {bank_size}")
            if not 0 < num_negatives < bank_size:
                raise ValueError(f"cmc num_negatives: expected 0 < K < bank_size={bank_size}, got {num_negatives}")
            if not 0 <= momentum < 1:
                raise ValueError(f"cmc momentum: expected a value in [0, 1), got {momentum}")

    def requires(self) -> dict[str, tuple[str, ...]]:
        return {view: () for view in self.views}

    def pairs(self) -> list[tuple[int, int]]:
        """Index pairs (i, j), i < j, of the views that are contrasted."""
        m = len(self.views)
        if self.mode == "core":
            return [(0, j) for j in range(1, m)]
        return [(i, j) for i in range(m) for j in range(i + 1, m)]

    def _vectors(self, features: FeatureDict) -> list[torch.Tensor]:
        vectors = [features[v].global_ for v in self.views]
        return [F.normalize(z.float(), dim=1) for z in vectors] if self.normalize else vectors

    def compute(self, features: FeatureDict, batch: Mapping) -> ObjectiveOutput:
        if self.heads is not None:
            loss, metrics = self._in_batch_pair_heads([features[v].global_ for v in self.views])
        elif self.negatives == "batch":
            loss, metrics = self._in_batch(self._vectors(features))
        else:
            z = self._vectors(features)
            loss, metrics = self._memory_bank(z, self._indices(batch, z[0].shape[0]))
        metrics["temperature"] = torch.exp(-self.log_inv_tau).detach()
        if self.training:
            self.step += 1
        return ObjectiveOutput(loss, metrics)

    def _in_batch(self, z: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """In-batch InfoNCE, ``z``: per view ``[B, D]``; other processes' rows are negatives (with gradients)."""
        gathered = [gather_with_grad(v) for v in z]
        offset = local_offset(z[0].shape[0])
        inv_tau = torch.exp(self.log_inv_tau)
        total, metrics = None, {}
        for i, j in self.pairs():
            pair_loss = None
            for a, c in ((i, j), (j, i)):
                est = infonce(z[a] @ gathered[c].T * inv_tau, offset)  # [B, M]
                pair_loss = est.loss if pair_loss is None else pair_loss + est.loss
                metrics[f"mi_{self.views[a]}_{self.views[c]}"] = est.mi
            total = pair_loss if total is None else total + pair_loss
        return total, metrics

    def _in_batch_pair_heads(self, raw: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """In-batch InfoNCE through the pair heads; ``raw``: per view ``[B, D]`` encoder output (not normalised)."""
        vectors = self._pair_vectors(raw)  # [P, 2, B, E]
        # Gather along the batch axis, [B, P, 2, E] -> [W * B, P, 2, E]: other processes' rows are negatives.
        gathered = gather_with_grad(vectors.permute(2, 0, 1, 3).contiguous()).permute(1, 2, 3, 0)  # [P, 2, E, W*B]
        offset = local_offset(vectors.shape[2])
        inv_tau = torch.exp(self.log_inv_tau)
        total, metrics = None, {}
        for p, (i, j) in enumerate(self.pairs()):
            for side, (a, c) in enumerate(((i, j), (j, i))):
                est = infonce(vectors[p, side] @ gathered[p, 1 - side] * inv_tau, offset)  # [B, W * B]
                total = est.loss if total is None else total + est.loss
                metrics[f"mi_{self.views[a]}_{self.views[c]}"] = est.mi
        return total, metrics

    def _pair_vectors(self, z: list[torch.Tensor]) -> torch.Tensor:
        """Per view ``[B, D]`` (unnormalised encoder output) -> ``[P, 2, B, E]`` pair-head vectors."""
        raw = [features.float() for features in z]
        inputs = torch.stack([torch.stack([raw[i], raw[j]]) for i, j in self.pairs()])  # [P, 2, B, D]
        out = self.heads(inputs)
        return F.normalize(out, dim=-1) if self.normalize else out

    def pair_projections(self) -> dict[tuple[str, str], torch.nn.Module]:
        """``{(a, b): head}``: ``head(x [B, D]) -> [B, E]`` puts view a's encoder output in the space it shares
        with view b (both orders of every contrasted pair); ``{}`` without pair heads."""
        if self.heads is None:
            return {}
        out = {}
        for p, (i, j) in enumerate(self.pairs()):
            out[(self.views[i], self.views[j])] = PairHeadView(self.heads, p, 0)
            out[(self.views[j], self.views[i])] = PairHeadView(self.heads, p, 1)
        return out

    def _indices(self, batch: Mapping, b: int) -> torch.Tensor:
        if self.index_key not in batch:
            raise ValueError(
                f"objective cmc (negatives='bank') needs batch[{self.index_key!r}] with sample indices, "
                f"batch has keys {sorted(map(str, batch))}"
            )
        idx = torch.as_tensor(batch[self.index_key]).long().reshape(-1)
        if idx.numel() != b or (idx.numel() and (idx.min() < 0 or idx.max() >= self.bank_size)):
            raise ValueError(
                f"objective cmc: batch[{self.index_key!r}] must hold {b} indices in [0, {self.bank_size}), got "
                f"{idx.numel()} in [{int(idx.min()) if idx.numel() else '-'}, {int(idx.max()) if idx.numel() else '-'}]"
            )
        return idx

    def draw_negatives(self, idx: torch.Tensor) -> torch.Tensor:
        """``[B, K + 1]`` bank rows for this process: column 0 the positive, then K uniform draws."""
        rank, world = rank_and_world()
        b = idx.shape[0]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.step))
        drawn = torch.randint(self.bank_size, (b * world, self.num_negatives), generator=generator)
        drawn = drawn[rank * b : (rank + 1) * b].to(idx.device)
        return torch.cat([idx.reshape(b, 1), drawn], dim=1)

    def _memory_bank(self, z: list[torch.Tensor], idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Score each view's vectors ``[B, D]`` against the OTHER view's bank rows ``[B, K + 1, D]``."""
        rows = self.draw_negatives(idx)
        inv_tau = torch.exp(self.log_inv_tau)
        total, metrics = None, {}
        for i, j in self.pairs():
            pair_loss = None
            for a, c in ((i, j), (j, i)):
                scores = bank_scores(z[a], self.bank[c], rows) * inv_tau  # [B, K + 1]
                if self.loss_kind == "softmax":
                    loss = F.cross_entropy(scores.float(), torch.zeros_like(idx))
                else:
                    loss = bank_nce_loss(scores, self._log_z(a, c, scores), self.bank_size)
                pair_loss = loss if pair_loss is None else pair_loss + loss
                metrics[f"acc_{self.views[a]}_{self.views[c]}"] = (scores.argmax(1) == 0).float().mean().detach()
            total = pair_loss if total is None else total + pair_loss
        return total, metrics

    def _log_z(self, a: int, c: int, scores: torch.Tensor) -> torch.Tensor:
        """log Z for anchor view a against bank c: set ONCE to log(N * mean exp(s)) over the global batch."""
        if torch.isnan(self.log_z[a, c]):
            with torch.no_grad():
                mean_exp = all_reduce_mean(torch.exp(scores.float()).mean())
                self.log_z[a, c] = torch.log(mean_exp * self.bank_size)
        return self.log_z[a, c]

    @torch.no_grad()
    def after_step(self, features: FeatureDict, batch: Mapping) -> None:
        """Bank update from every process's vectors and indices, so every process keeps the same bank."""
        if self.negatives != "bank":
            return
        z = self._vectors({v: features[v].detach() for v in self.views})
        idx = gather_no_grad(self._indices(batch, z[0].shape[0]).to(self.bank.device))
        for v, vectors in enumerate(z):
            rows = gather_no_grad(vectors.to(self.bank.dtype))
            mixed = self.momentum * self.bank[v, idx] + (1 - self.momentum) * rows
            self.bank[v, idx] = F.normalize(mixed, dim=1)
