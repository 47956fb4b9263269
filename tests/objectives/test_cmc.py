"""CMC: in-batch InfoNCE and memory-bank NCE against loops, sanity values, Z fixed once, the bank update."""

import math

import pytest
import torch
import torch.nn.functional as F

from multiview.encoders.features import Features
from multiview.objectives import create
from multiview.objectives import reference as R
from multiview.objectives.cmc import bank_nce_loss


def views(n_views=3, b=6, d=8):
    return {f"v{i}": Features(torch.randn(b, d, requires_grad=True)) for i in range(n_views)}


@pytest.mark.parametrize("mode,pairs", [("full", [(0, 1), (0, 2), (1, 2)]), ("core", [(0, 1), (0, 2)])])
def test_in_batch_equals_loop(mode, pairs):
    f = views()
    obj = create("cmc", views=("v0", "v1", "v2"), mode=mode, temperature=0.2)
    assert obj.pairs() == pairs
    z = [F.normalize(f[f"v{i}"].global_, dim=1) for i in range(3)]
    assert obj(f, {}).loss.item() == pytest.approx(R.cmc_in_batch_loop(z, pairs, 0.2).item(), rel=1e-5)


def test_learned_temperature_gets_gradient():
    obj = create("cmc", views=("v0", "v1"), temperature=0.1, learn_temperature=True)
    f = views(2)
    out = obj(f, {})
    out.loss.backward()
    assert obj.log_inv_tau.grad is not None
    assert out.metrics["temperature"].item() == pytest.approx(0.1, rel=1e-6)
    assert list(obj.parameters()) == [obj.log_inv_tau]


def test_bank_nce_uniform_is_log_k_plus_1_plus_1():
    """P_k = 1 / N for every slot: loss = log(K + 1) + K log(1 + 1/K) ~ 9.32 at K = 4096."""
    n, k = 100_000, 4096
    scores = torch.zeros(4, k + 1)
    loss = bank_nce_loss(scores, torch.tensor(math.log(n)), n)
    assert loss.item() == pytest.approx(math.log(k + 1) + k * math.log1p(1 / k), rel=1e-5)
    assert loss.item() == pytest.approx(9.32, abs=0.01)
    assert F.cross_entropy(scores, torch.zeros(4, dtype=torch.long)).item() == pytest.approx(math.log(k + 1), abs=1e-4)


def test_bank_nce_equals_loop():
    scores = torch.randn(5, 33) * 2
    got = bank_nce_loss(scores, torch.tensor(3.0), 500)
    assert got.item() == pytest.approx(R.cmc_bank_nce_loop(scores, math.exp(3.0), 500).item(), rel=1e-5)


def bank_objective(**kwargs):
    args = dict(views=("v0", "v1"), negatives="bank", bank_size=50, feature_dim=8, num_negatives=10, temperature=0.5)
    return create("cmc", **(args | kwargs))


def test_bank_uniform_scores_at_k4096_give_sanity_values():
    """With zero vectors every score is 0: the NCE loss per view is log(K+1) + 1, softmax log(K+1)."""
    k, n = 4096, 10_000
    f = {"v0": Features(torch.zeros(4, 8)), "v1": Features(torch.zeros(4, 8))}
    batch = {"index": torch.arange(4)}
    nce = bank_objective(bank_size=n, num_negatives=k, normalize=False)
    assert nce(f, batch).loss.item() / 2 == pytest.approx(9.32, abs=0.01)
    soft = bank_objective(bank_size=n, num_negatives=k, normalize=False, loss="softmax")
    assert soft(f, batch).loss.item() / 2 == pytest.approx(math.log(k + 1), abs=1e-4)


def test_bank_loss_equals_loop_and_z_is_fixed_once():
    obj = bank_objective()
    f, idx = views(2), torch.tensor([3, 7, 11, 20, 0, 49])
    rows = obj.draw_negatives(idx)
    assert torch.equal(rows[:, 0], idx) and rows.shape == (6, 11)
    z = [F.normalize(f[v].global_, dim=1) for v in ("v0", "v1")]
    s01 = obj.bank[1][rows] @ z[0].unsqueeze(-1) / 0.5
    s10 = obj.bank[0][rows] @ z[1].unsqueeze(-1) / 0.5
    s01, s10 = s01.squeeze(-1), s10.squeeze(-1)
    z01, z10 = 50 * torch.exp(s01).mean(), 50 * torch.exp(s10).mean()
    want = R.cmc_bank_nce_loop(s01, z01.item(), 50) + R.cmc_bank_nce_loop(s10, z10.item(), 50)
    out = obj(f, {"index": idx})
    assert out.loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert obj.log_z[0, 1].item() == pytest.approx(math.log(z01.item()), rel=1e-5)
    frozen = obj.log_z.clone()
    obj({"v0": Features(torch.randn(6, 8) * 5), "v1": Features(torch.randn(6, 8))}, {"index": idx})
    assert torch.equal(obj.log_z[0, 1], frozen[0, 1]) and torch.equal(obj.log_z[1, 0], frozen[1, 0])


def test_bank_is_detached_and_updated_after_step():
    obj = bank_objective()
    f, idx = views(2), torch.tensor([1, 2, 3, 4, 5, 6])
    before = obj.bank.clone()
    out = obj(f, {"index": idx})
    assert torch.equal(obj.bank, before)  # scoring does not touch the bank
    out.loss.backward()
    assert f["v0"].global_.grad is not None and not obj.bank.requires_grad
    obj.after_step({k: v.detach() for k, v in f.items()}, {"index": idx})
    for v, name in enumerate(("v0", "v1")):
        want = F.normalize(0.5 * before[v, idx] + 0.5 * F.normalize(f[name].global_.detach(), dim=1), dim=1)
        torch.testing.assert_close(obj.bank[v, idx], want)
        untouched = torch.ones(50, dtype=torch.bool)
        untouched[idx] = False
        assert torch.equal(obj.bank[v, untouched], before[v, untouched])


def test_bank_needs_indices():
    obj = bank_objective()
    with pytest.raises(ValueError, match=r"batch\['index'\].*batch has keys \['label'\]"):
        obj(views(2), {"label": torch.zeros(6)})
    with pytest.raises(ValueError, match=r"indices in \[0, 50\)"):
        obj(views(2), {"index": torch.arange(6) + 45})


def test_validation_messages():
    with pytest.raises(ValueError, match="at least two distinct"):
        create("cmc", views=("a",))
    with pytest.raises(ValueError, match="'star'"):
        create("cmc", mode="star")
    with pytest.raises(ValueError, match="bank_size"):
        create("cmc", negatives="bank")
    with pytest.raises(ValueError, match="num_negatives"):
        create("cmc", negatives="bank", bank_size=10, num_negatives=10)
    with pytest.raises(ValueError, match="temperature"):
        create("cmc", temperature=0)


@pytest.mark.parametrize("loss", ["nce", "softmax"])
def test_bank_objective_equals_loop_reference(loss):
    obj = bank_objective(loss=loss)
    f, batch = views(2), {"index": torch.tensor([3, 7, 11, 20, 0, 49])}
    got = obj(f, batch).loss
    obj.step.fill_(0)  # the loop draws the same negatives
    assert got.item() == pytest.approx(R.cmc_loop(obj, f, batch).item(), rel=1e-5)


def test_chunked_bank_scores_match_gather_and_gradcheck():
    from multiview.objectives.cmc import bank_scores

    bank = torch.randn(30, 4, dtype=torch.float64)
    rows = torch.randint(30, (5, 7))
    z = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    want = torch.einsum("bkd,bd->bk", bank[rows], z)
    torch.testing.assert_close(bank_scores(z, bank, rows, "gather", budget=28), want)  # one row per chunk
    torch.testing.assert_close(bank_scores(z, bank, rows, "dense"), want)
    assert torch.autograd.gradcheck(lambda t: bank_scores(t, bank, rows, "gather", budget=60), (z,))
    assert torch.autograd.gradcheck(lambda t: bank_scores(t, bank, rows, "dense"), (z,))
    with pytest.raises(ValueError, match="'sparse'"):
        bank_scores(z, bank, rows, "sparse")


# ------------------------------------------------------------------------------------------------ pair heads


def pair_head_objective(mode="full", **kwargs):
    args = dict(views=("v0", "v1", "v2"), mode=mode, temperature=0.2, pair_heads=True, feature_dim=8, head_dim=5)
    return create("cmc", **(args | kwargs))


def test_pair_heads_shapes_and_projections():
    obj = pair_head_objective()
    assert obj.heads.weight.shape == (3, 2, 8, 5) and obj.heads.bias.shape == (3, 2, 5)
    projections = obj.pair_projections()
    assert sorted(projections) == [("v0", "v1"), ("v0", "v2"), ("v1", "v0"), ("v1", "v2"), ("v2", "v0"), ("v2", "v1")]
    assert projections[("v2", "v1")](torch.randn(4, 8)).shape == (4, 5)
    assert create("cmc", views=("v0", "v1")).pair_projections() == {}
    # Core mode contrasts only (v0, vj): no heads for (v1, v2), so every head gets a gradient (DDP needs that).
    assert sorted(pair_head_objective(mode="core").pair_projections()) == [
        ("v0", "v1"),
        ("v0", "v2"),
        ("v1", "v0"),
        ("v2", "v0"),
    ]


@pytest.mark.parametrize("mode", ["full", "core"])
def test_pair_heads_vectorised_equals_loop(mode):
    """The batched heads and loss equal a loop that applies each pair's two heads as separate linear maps."""
    f = views(3, b=6, d=8)
    obj = pair_head_objective(mode=mode)
    out = obj(f, {})
    projections = obj.pair_projections()
    names = obj.views
    total = 0.0
    for i, j in obj.pairs():
        zi = F.normalize(projections[(names[i], names[j])](f[names[i]].global_), dim=1)
        zj = F.normalize(projections[(names[j], names[i])](f[names[j]].global_), dim=1)
        total = total + R.cmc_in_batch_loop([zi, zj], [(0, 1)], 0.2)
    assert out.loss.item() == pytest.approx(total.item(), rel=1e-5)
    out.loss.backward()
    assert obj.heads.weight.grad.abs().sum(dim=(2, 3)).min() > 0  # every head of every pair is trained
    assert f["v0"].global_.grad is not None


def test_pair_heads_separate_pairs():
    """A view's vectors differ per partner: the loss of pair (v0, v1) does not depend on (v0, v2)'s heads."""
    f = views(3, b=6, d=8)
    obj = pair_head_objective()
    before = obj(f, {}).metrics["mi_v0_v1"]
    with torch.no_grad():
        obj.heads.weight[1].normal_()  # pair (v0, v2)
    after = obj(f, {}).metrics
    assert after["mi_v0_v1"].item() == pytest.approx(before.item(), rel=1e-6)


def test_pair_heads_validation():
    with pytest.raises(ValueError, match="pair_heads: needs negatives='batch'"):
        pair_head_objective(negatives="bank", bank_size=50, num_negatives=10)
    with pytest.raises(ValueError, match="feature_dim must equal the encoders' output dim"):
        pair_head_objective(feature_dim=16)(views(3, b=4, d=8), {})


def test_bank_update_uses_momentum_on_the_old_row():
    """``bank[y] <- normalise(m bank[y] + (1 - m) z)`` at a non-default m = 0.9 (at 0.5 a swap is invisible).
    Hand-made 2-d rows: old row (1, 0), new vector (0, 1) -> normalise(0.9, 0.1) = (0.9, 0.1) / sqrt(0.82)."""
    obj = bank_objective(bank_size=4, feature_dim=2, num_negatives=2, momentum=0.9)
    with torch.no_grad():
        obj.bank.zero_()
        obj.bank[:, :, 0] = 1.0  # every row (1, 0)
    idx = torch.tensor([1, 3])
    f = {"v0": Features(torch.tensor([[0.0, 2.0], [0.0, 0.5]])), "v1": Features(torch.tensor([[0.0, 3.0], [0.0, 1.0]]))}
    obj.after_step(f, {"index": idx})
    new = torch.tensor([0.9, 0.1]) / math.sqrt(0.82)  # (0.994, 0.110); with m and 1 - m swapped: (0.110, 0.994)
    for v in range(2):
        torch.testing.assert_close(obj.bank[v, idx], new.expand(2, 2))
        torch.testing.assert_close(obj.bank[v, [0, 2]], torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
