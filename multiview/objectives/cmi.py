"""Conditional-MI disentanglement (Funke et al. 2022, "Disentanglement and Generalization Under Correlation
Shifts").

The latent ``z [B, D]`` is split into subspaces ``z_1, ..., z_K``, one per attribute ``a_k``. Each
``I(z_k; z_rest | a_k)`` is minimised adversarially: for every value v of ``a_k`` the rows ``G = {a_k = v}`` give
joint samples ``[z ; onehot(a_k)]``, and permuting ``z_k`` WITHIN G gives samples of the product of the
conditionals (the labels of G are unchanged). A discriminator ``D_k`` tells them apart in its own step (an
:class:`AuxStep`); the encoder fools the frozen ``D_k`` with flipped labels. Usable alone (with the task heads)
or, with ``task_weight=0``, as a regulariser added to any other objective.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from multiview.objectives import register
from multiview.objectives.base import AuxStep, FeatureDict, Objective, ObjectiveOutput, frozen_call
from multiview.objectives.critics import mlp


def within_group_permutation(labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``labels [B]`` -> source rows ``[B]``: a random permutation that maps each row to a row of the same label.

    Both orderings below list the groups in label order with the same sizes, so position t of each holds rows
    of the same label: row ``grouped[t]`` takes its values from row ``shuffled[t]``.
    """
    keys = torch.rand(labels.shape[0], generator=generator).to(labels.device)
    shuffled = torch.argsort(keys)
    shuffled = shuffled[torch.argsort(labels[shuffled], stable=True)]
    grouped = torch.argsort(labels, stable=True)
    source = torch.empty_like(grouped)
    source[grouped] = shuffled
    return source


def group_mean_sum(values: torch.Tensor, labels: torch.Tensor, num_values: int) -> torch.Tensor:
    """``sum_v mean_{i: labels_i = v} values_i`` over the values present. ``values, labels: [B]``."""
    sums = values.new_zeros(num_values).index_add(0, labels, values)
    counts = values.new_zeros(num_values).index_add(0, labels, torch.ones_like(values))
    present = counts > 0
    return (sums[present] / counts[present]).sum()


@register("cmi")
class CMI(Objective):
    """Conditional-MI disentanglement of ``features[view].global_``.

    Args:
        view: the view whose global vector ``z [B, D]`` is split.
        splits: sizes of the subspaces, one per attribute, summing to D.
        attributes: batch keys of the attributes, each ``[B]`` integers in ``[0, num_values_k)``.
        num_values: number of values per attribute.
        weight: lambda, weight of the adversarial encoder term (1 on MNIST pairs, 10 on CelebA).
        task_weight: weight of the task cross-entropy (a linear head from ``z_k`` to ``a_k``); 0 disables heads.
        hidden: hidden sizes of the discriminators ``D_k`` on ``[z ; onehot(a_k)]``.
        lr, betas: the discriminators' optimiser (their own step).
        seed: seed of the within-group permutations (drawn from ``(seed, step)``).

    Examples:
        >>> from multiview.encoders.features import Features
        >>> obj = CMI(splits=(4, 4), attributes=("a1", "a2"), num_values=(3, 3))
        >>> batch = {"a1": torch.tensor([0, 1, 2, 0]), "a2": torch.tensor([1, 1, 0, 2])}
        >>> out = obj({"view0": Features(torch.randn(4, 8))}, batch)
        >>> [s.name for s in obj.auxiliary_steps()]
        ['discriminators']
    """

    name = "cmi"

    def __init__(
        self,
        view: str = "view0",
        splits: Sequence[int] = (32, 32),
        attributes: Sequence[str] = ("a1", "a2"),
        num_values: Sequence[int] = (10, 10),
        weight: float = 1.0,
        task_weight: float = 1.0,
        hidden: Sequence[int] = (256, 256),
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.5, 0.999),
        seed: int = 0,
    ):
        super().__init__()
        if not (len(splits) == len(attributes) == len(num_values)) or len(splits) < 2:
            raise ValueError(
                f"cmi: expected >= 2 subspaces with one attribute and one num_values each, got splits={list(splits)}, "
                f"attributes={list(attributes)}, num_values={list(num_values)}"
            )
        if any(s <= 0 for s in splits) or any(n < 2 for n in num_values):
            raise ValueError(f"cmi: expected splits > 0 and num_values >= 2, got {list(splits)}, {list(num_values)}")
        if weight < 0 or task_weight < 0:
            raise ValueError(f"cmi: expected weight, task_weight >= 0, got {weight}, {task_weight}")
        self.view, self.splits, self.attributes = view, tuple(splits), tuple(attributes)
        self.num_values, self.weight, self.task_weight = tuple(num_values), float(weight), float(task_weight)
        self.lr, self.betas, self.seed = lr, tuple(betas), seed
        dim = sum(splits)
        self.discriminators = nn.ModuleList(mlp([dim + n, *hidden, 1]) for n in num_values)
        if task_weight > 0:
            self.heads = nn.ModuleList(nn.Linear(s, n) for s, n in zip(splits, num_values))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def requires(self) -> dict[str, tuple[str, ...]]:
        return {self.view: ()}

    def _latent(self, features: FeatureDict) -> torch.Tensor:
        z = features[self.view].global_
        if z.shape[1] != sum(self.splits):
            raise ValueError(
                f"objective cmi: splits {list(self.splits)} sum to {sum(self.splits)}, view {self.view!r} has "
                f"D = {z.shape[1]}"
            )
        return z

    def _labels(self, batch: Mapping, b: int) -> list[torch.Tensor]:
        labels = []
        for key, n in zip(self.attributes, self.num_values):
            if key not in batch:
                raise ValueError(f"objective cmi needs batch[{key!r}], batch has keys {sorted(map(str, batch))}")
            a = torch.as_tensor(batch[key]).long().reshape(-1)
            if a.numel() != b or a.min() < 0 or a.max() >= n:
                raise ValueError(
                    f"objective cmi: batch[{key!r}] must hold {b} values in [0, {n}), got {a.numel()} values in "
                    f"[{int(a.min())}, {int(a.max())}]"
                )
            labels.append(a)
        return labels

    def _slices(self) -> list[slice]:
        starts = [sum(self.splits[:k]) for k in range(len(self.splits))]
        return [slice(s, s + n) for s, n in zip(starts, self.splits)]

    def discriminator_inputs(self, z: torch.Tensor, labels: list[torch.Tensor]) -> list[tuple[torch.Tensor, ...]]:
        """Per attribute k: (joint ``[B, D + V_k]``, permuted ``[B, D + V_k]``, labels ``[B]``)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.step))
        out = []
        for sl, a, n in zip(self._slices(), labels, self.num_values):
            source = within_group_permutation(a, generator)
            permuted = z.clone()
            permuted[:, sl] = z[source, sl]
            onehot = F.one_hot(a, n).to(z.dtype)
            out.append((torch.cat([z, onehot], 1), torch.cat([permuted, onehot], 1), a))
        return out

    def _adversarial(self, z, labels, call, joint_target: float) -> torch.Tensor:
        """``sum_k sum_v [BCE(D_k(joint), t) + BCE(D_k(perm), 1 - t)]`` with group means over rows."""
        total = z.new_zeros(())
        for k, (joint, permuted, a) in enumerate(self.discriminator_inputs(z, labels)):
            d_joint = call(self.discriminators[k], joint).squeeze(1)
            d_perm = call(self.discriminators[k], permuted).squeeze(1)
            per_row = F.binary_cross_entropy_with_logits(
                d_joint, torch.full_like(d_joint, joint_target), reduction="none"
            ) + F.binary_cross_entropy_with_logits(d_perm, torch.full_like(d_perm, 1 - joint_target), reduction="none")
            total = total + group_mean_sum(per_row, a, self.num_values[k])
        return total

    def compute(self, features: FeatureDict, batch: Mapping) -> ObjectiveOutput:
        z = self._latent(features)
        labels = self._labels(batch, z.shape[0])
        # Flipped labels (joint -> 0, permuted -> 1) through the discriminators frozen for this step.
        adversarial = self._adversarial(z, labels, frozen_call, joint_target=0.0)
        loss = self.weight * adversarial
        metrics = {"adversarial": adversarial.detach()}
        if self.task_weight > 0:
            for sl, head, a, key in zip(self._slices(), self.heads, labels, self.attributes):
                logits = head(z[:, sl])
                loss = loss + self.task_weight * F.cross_entropy(logits, a)
                metrics[f"acc_{key}"] = (logits.argmax(1) == a).float().mean().detach()
        if self.training:
            self.step += 1
        return ObjectiveOutput(loss, metrics)

    def discriminator_loss(self, features: FeatureDict, batch: Mapping) -> torch.Tensor:
        """The discriminators' own step on detached z: joint -> 1, permuted -> 0."""
        z = self._latent(features).detach()
        return self._adversarial(z, self._labels(batch, z.shape[0]), lambda m, x: m(x), joint_target=1.0)

    def auxiliary_steps(self) -> list[AuxStep]:
        return [AuxStep("discriminators", self.discriminators, self.lr, self.betas, self.discriminator_loss)]
