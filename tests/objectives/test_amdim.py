"""AMDIM: sanity values at zero scores, vectorised == loops, masks, gradcheck, requirements."""

import math

import pytest
import torch

from multiview.encoders.features import Features
from multiview.objectives import create
from multiview.objectives import reference as R
from multiview.objectives.amdim import amdim_task


def feats(b=5, d=6, zero=False, dtype=torch.float32):
    make = torch.zeros if zero else torch.randn
    return Features(make(b, d, dtype=dtype), {"r5": make(b, d, 5, 5, dtype=dtype), "r7": make(b, d, 7, 7, dtype=dtype)})


def test_zero_scores_give_reference_values_at_b200():
    out = create("amdim")({"view0": feats(200, 4, zero=True), "view1": feats(200, 4, zero=True)}, {})
    assert out.metrics["loss_1t5"].item() == pytest.approx(math.log(1 + 199 * 25), abs=1e-3)  # 8.512
    assert out.metrics["loss_1t7"].item() == pytest.approx(math.log(1 + 199 * 49), abs=1e-3)  # 9.185
    assert out.metrics["loss_1t5"].item() == pytest.approx(8.512, abs=1e-3)
    assert out.metrics["loss_1t7"].item() == pytest.approx(9.185, abs=1e-3)
    assert out.metrics["reg"].item() == 0.0


def test_total_equals_loop_reference():
    obj = create("amdim")
    f = {"view0": feats(), "view1": feats()}
    locations = obj.source_locations(5, 25)  # what the next forward draws (step 0)
    out = obj(f, {})
    ref = R.amdim_loop(f, ("view0", "view1"), locations)
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-5)


def test_task_scaling_clip_and_regulariser():
    """Scores are a.b / sqrt(D), clipped by 20 tanh(s / 20); the regulariser uses RAW scores."""
    src, tgt = torch.randn(3, 4) * 30, torch.randn(3, 4, 5, 5) * 30
    loss, reg, _ = amdim_task(src, tgt)
    raw = torch.einsum("bd,mdn->bmn", src, tgt.flatten(2)) / 2.0
    assert reg.item() == pytest.approx(0.05 * raw.pow(2).mean().item(), rel=1e-5)
    assert raw.abs().max() > 20  # the clip matters in this example
    loop_loss, loop_reg = R.amdim_task_loop(src, tgt)
    assert loss.item() == pytest.approx(loop_loss.item(), rel=1e-5)
    assert reg.item() == pytest.approx(loop_reg.item(), rel=1e-5)


def test_same_image_locations_are_excluded_not_shifted():
    """Raising the scores of the anchor's own other locations must not change its loss (they are no negatives)."""
    src, tgt = torch.randn(4, 8), torch.randn(4, 8, 5, 5)
    base, _, _ = amdim_task(src, tgt, reg_weight=0.0)
    # Make location 3 of image 0 identical to the source direction (large own-image score at one location).
    tgt2 = tgt.clone()
    tgt2[0, :, 0, 3] = src[0] * 10
    # The positive at that location changes, so compare per-position losses excluding it: use the loop form.
    b, n = 4, 25
    raw = torch.einsum("bd,mdn->bmn", src, tgt2.flatten(2)) / math.sqrt(8)
    s = 20 * torch.tanh(raw / 20)
    neg = torch.cat([s[0, 1:].reshape(-1)])  # only other images
    others = [p for p in range(n) if p != 3]
    want = torch.stack([torch.logaddexp(s[0, 0, p], torch.logsumexp(neg, 0)) - s[0, 0, p] for p in others])
    full, _, _ = amdim_task(src, tgt2, reg_weight=0.0)
    rows = [
        torch.logaddexp(s[i, i], torch.logsumexp(torch.cat([s[i, :i], s[i, i + 1 :]]).reshape(-1), 0)) - s[i, i]
        for i in range(b)
    ]
    assert full.item() == pytest.approx(torch.cat(rows).mean().item(), rel=1e-5)
    # Row 0's loss at its other positions, read off the LIBRARY's total (less the terms worked out above), must be
    # the loss against other images only -- not the one with its own large location 3 among the negatives.
    row0_others = (full.item() * b * n - torch.cat(rows[1:]).sum().item() - rows[0][3].item()) / (n - 1)
    with_own = torch.stack(
        [torch.logaddexp(s[0, 0, p], torch.logsumexp(torch.cat([neg, s[0, 0, 3:4]]), 0)) - s[0, 0, p] for p in others]
    )
    assert with_own.mean().item() > want.mean().item() + 1  # the two readings are far apart here
    assert row0_others == pytest.approx(want.mean().item(), rel=1e-4)
    assert base.item() != full.item()


def test_gradcheck_task():
    src = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    tgt = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: sum(amdim_task(a, b)[:2]), (src, tgt))


def test_locations_depend_on_seed_and_step():
    obj = create("amdim", seed=1)
    first = obj.source_locations(8, 25)
    obj({"view0": feats(8), "view1": feats(8)}, {})
    assert int(obj.step) == 1
    assert not torch.equal(first, obj.source_locations(8, 25))
    assert torch.equal(first, create("amdim", seed=1).source_locations(8, 25))


def test_requirements_and_validation():
    obj = create("amdim", views=("a", "b"))
    bad = Features(torch.randn(2, 4), {"r5": torch.randn(2, 4, 5, 5)})
    with pytest.raises(
        ValueError, match=r"objective amdim needs local map 'r7' of view 'a', encoder gives only \['r5'\]"
    ):
        obj({"a": bad, "b": bad}, {})
    only_15 = create("amdim", views=("a", "b"), tasks=("1t5",))
    assert only_15.requires() == {"a": ("r5",), "b": ("r5",)}
    assert only_15({"a": bad, "b": bad}, {}).loss.isfinite()
    with pytest.raises(ValueError, match="'2t9'"):
        create("amdim", tasks=("2t9",))
    mixed = Features(torch.randn(2, 4), {"r5": torch.randn(2, 3, 5, 5), "r7": torch.randn(2, 4, 7, 7)})
    with pytest.raises(ValueError, match="one feature size D"):
        create("amdim", views=("a", "b"))({"a": mixed, "b": mixed}, {})


def test_mi_metrics_are_zero_at_zero_scores():
    """The metric is log(1 + (B - 1) N) - loss; at zero scores the loss is that bound, so MI = 0 for N = 25, 49."""
    out = create("amdim")({"view0": feats(6, 4, zero=True), "view1": feats(6, 4, zero=True)}, {})
    for task in ("1t5", "1t7", "5t5"):
        assert out.metrics[f"mi_{task}"].item() == pytest.approx(0.0, abs=1e-5), task


def test_same_image_locations_get_no_logit_at_all():
    """Not even a small one: the DIM reference keeps own-image locations as -10 logits ("shifted"); AMDIM drops
    them. Own-image scores 0, cross-image raw scores -30 (clipped to c = 20 tanh(-1.5)): per (i, p) the loss is
    log(1 + (B - 1) N e^c) ~ 1e-6, where a -10 logit for each of the N - 1 own locations would add ~1e-3."""
    b, n = 4, 25
    src = 60.0 * torch.eye(b, dtype=torch.float64)  # [B, D = 4]: a_i = 60 e_i, so s_ij = 30 tgt_j[i]
    tgt = (torch.eye(b, dtype=torch.float64) - 1).T[:, :, None, None].expand(b, b, 5, 5)  # tgt_j[i] = -1 (i != j)
    loss, _, _ = amdim_task(src, tgt, reg_weight=0.0)
    c = 20 * math.tanh(-30 / 20)
    assert loss.item() == pytest.approx(math.log1p((b - 1) * n * math.exp(c)), rel=1e-6)
    assert loss.item() < 1e-5 < math.log1p((n - 1) * math.exp(-10))
