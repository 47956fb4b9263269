"""Estimators: sanity values, vectorised == scalar loops, gradients, masks, MINE's surrogate."""

import math

import pytest
import torch

from multiview.objectives import estimators as E
from multiview.objectives import reference as R
from multiview.objectives.toy import log_ratio_scores, rho_for_mi, sample_pairs


def scalar_infonce(s):
    """Fully scalar: for each anchor i and position p, -log softmax of the positive among [pos, (j != i, q)]."""
    b, m, n = s.shape
    total, count = 0.0, 0
    for i in range(b):
        negs = [float(s[i, j, q]) for j in range(m) if j != i for q in range(n)]
        for p in range(n):
            logits = [float(s[i, i, p])] + negs
            top = max(logits)
            lse = top + math.log(sum(math.exp(v - top) for v in logits))
            total += lse - float(s[i, i, p])
            count += 1
    return total / count


def scalar_parts(s):
    b, m, n = s.shape
    pos = [float(s[i, i, p]) for i in range(b) for p in range(n)]
    neg = [float(s[i, j, q]) for i in range(b) for j in range(m) if j != i for q in range(n)]
    return pos, neg


def softplus(v):
    return math.log1p(math.exp(-abs(v))) + max(v, 0.0)


@pytest.mark.parametrize("shape", [(5, 5), (4, 4, 3), (6, 6, 1)])
def test_vectorised_estimators_equal_scalar_loops(shape):
    s = torch.randn(*shape, dtype=torch.float64) * 3
    s3 = s.unsqueeze(-1) if s.dim() == 2 else s
    pos, neg = scalar_parts(s3)
    assert E.infonce(s).loss.item() == pytest.approx(scalar_infonce(s3), abs=1e-5)
    jsd = sum(softplus(-v) for v in pos) / len(pos) + sum(softplus(v) for v in neg) / len(neg) - 2 * math.log(2)
    assert E.jsd(s).loss.item() == pytest.approx(jsd, abs=1e-5)
    dv = sum(pos) / len(pos) - math.log(sum(math.exp(v) for v in neg) / len(neg))
    assert E.dv(s).mi.item() == pytest.approx(dv, abs=1e-5)
    nwj = sum(pos) / len(pos) - sum(math.exp(v - 1) for v in neg) / len(neg)
    assert E.nwj(s).mi.item() == pytest.approx(nwj, abs=1e-5)


def test_reference_loops_equal_vectorised():
    s = torch.randn(7, 7, 4)
    assert R.infonce_loop(s).item() == pytest.approx(E.infonce(s).loss.item(), abs=1e-5)
    assert R.jsd_loop(s).item() == pytest.approx(E.jsd(s).loss.item(), abs=1e-5)
    assert R.dv_loop(s).item() == pytest.approx(E.dv(s).mi.item(), abs=1e-5)
    assert R.nwj_loop(s).item() == pytest.approx(E.nwj(s).mi.item(), abs=1e-5)


def test_offset_selects_positive_column():
    """Rows of process r sit at columns r*B .. r*B + B - 1 of gathered scores."""
    full = torch.randn(6, 6, 2)
    top, bottom = E.infonce(full[:3], offset=0), E.infonce(full[3:], offset=3)
    assert (top.loss + bottom.loss).item() / 2 == pytest.approx(E.infonce(full).loss.item(), abs=1e-6)
    with pytest.raises(ValueError, match="offset"):
        E.infonce(full[:3], offset=4)
    with pytest.raises(ValueError, match=r"\[B, M\] or \[B, M, N\]"):
        E.infonce(torch.zeros(2, 2, 2, 2))


def test_sanity_infonce_equal_scores_is_log_b():
    est = E.infonce(torch.full((64, 64), 0.7))
    assert est.loss.item() == pytest.approx(4.159, abs=1e-3)
    assert est.mi.item() == pytest.approx(0.0, abs=1e-5)


def test_sanity_dim_local_nce_at_zero_is_log_1_plus_b_minus_1_n():
    assert E.infonce(torch.zeros(64, 64, 64)).loss.item() == pytest.approx(8.302, abs=1e-3)


def test_sanity_jsd_zero_and_dv_equal_scores_zero():
    assert E.jsd(torch.zeros(16, 16, 5)).loss.item() == pytest.approx(0.0, abs=1e-6)
    assert E.dv(torch.full((16, 16), -2.5)).mi.item() == pytest.approx(0.0, abs=1e-5)


def test_negative_mask_counts():
    mask = E.negative_mask(5, 5, 7)
    assert mask.shape == (5, 35)
    assert mask.sum(1).tolist() == [4 * 7] * 5
    # the excluded block of row i is exactly image i's locations
    assert not mask[2, 14:21].any() and mask[2, :14].all() and mask[2, 21:].all()
    assert E.negative_mask(3, 6, 2, offset=3).sum(1).tolist() == [10, 10, 10]


@pytest.mark.parametrize("name", ["infonce", "jsd", "dv", "nwj"])
def test_gradcheck(name):
    s = torch.randn(3, 3, 2, dtype=torch.float64, requires_grad=True)
    fn = E.get_estimator(name)
    assert torch.autograd.gradcheck(lambda t: fn(t).loss, (s,))


def test_independent_data_bounds_are_not_positive():
    """rho = 0: InfoNCE and NWJ are <= 0 in expectation for any critic (here: a random bilinear one)."""
    g = torch.Generator().manual_seed(1)
    w = torch.randn(20, 20, generator=g) * 0.05
    infonce, nwj = [], []
    for _ in range(200):
        x, y = sample_pairs(32, 20, 0.0, g)
        s = y @ w @ x.T
        infonce.append(E.infonce(s).mi)
        nwj.append(E.nwj(s).mi)
    assert torch.stack(infonce).mean() <= 0.02
    assert torch.stack(nwj).mean() <= 0.02


def test_analytic_critic_tracks_poole_numbers():
    """Sanity check 6 (fewer batches): InfoNCE 1.83 / 3.08, NWJ on critic + 1 2.01 / 4.04, DV 2.02 / 4.08."""
    g = torch.Generator().manual_seed(0)
    for mi, want in [(2, (1.83, 2.01, 2.02)), (4, (3.08, 4.04, 4.08))]:
        rho = rho_for_mi(mi)
        vals = []
        for _ in range(40):
            x, y = sample_pairs(64, 20, rho, g)
            s = log_ratio_scores(x, y, rho)
            vals.append([E.infonce(s).mi, E.nwj(s + 1).mi, E.dv(s).mi])
        got = torch.tensor(vals).mean(0)
        assert got[0].item() == pytest.approx(want[0], abs=0.1)
        assert got[1].item() == pytest.approx(want[1], abs=0.25)
        assert got[2].item() == pytest.approx(want[2], abs=0.25)
        assert got[0].item() < math.log(64)


def test_mine_value_is_dv_and_gradient_uses_ema():
    mine = E.MINE(ema_rate=0.1)
    s1 = torch.randn(6, 6)
    mine(s1)  # first batch: EMA = E_Q e^T of this batch
    ema_before = torch.exp(mine.log_ema).item()
    s = torch.randn(6, 6, requires_grad=True)
    est = mine(s)
    assert est.loss.item() == pytest.approx(-E.dv(s).mi.item(), abs=1e-5)
    neg = s.detach()[~torch.eye(6, dtype=torch.bool)]
    ema = 0.9 * ema_before + 0.1 * torch.exp(neg).mean().item()
    assert torch.exp(mine.log_ema).item() == pytest.approx(ema, rel=1e-5)
    est.loss.backward()
    # expected: -(grad mean_P T - grad mean_Q e^T / EMA)
    eye = torch.eye(6, dtype=torch.bool)
    want = torch.where(eye, -torch.full((6, 6), 1 / 6), torch.exp(s.detach()) / (30 * ema))
    torch.testing.assert_close(s.grad, want, rtol=1e-5, atol=1e-6)
    # and that differs from the plain DV gradient (the bias correction does something)
    s2 = s.detach().clone().requires_grad_(True)
    E.dv(s2).loss.backward()
    assert not torch.allclose(s2.grad, s.grad, atol=1e-4)


def test_get_estimator_rejects_unknown():
    with pytest.raises(ValueError, match="'mien'"):
        E.get_estimator("mien")
    assert isinstance(E.get_estimator("mine"), E.MINE)
    with pytest.raises(ValueError, match="ema_rate"):
        E.MINE(ema_rate=0)


@pytest.mark.parametrize("name,want_a,want_b", [("nwj", 1.0, 1.0), ("jsd", 1.0, 0.0), ("mine", 1.0, None)])
def test_training_finds_the_optimal_critic(name, want_a, want_b):
    """Critic ``T = a log r + b`` on the Gaussian pairs (I = 2): maximising NWJ gives 1 + log r, JSD gives log r,
    MINE (DV) gives log r + any constant -- checks each estimator's gradient points at its own optimum."""
    g = torch.Generator().manual_seed(0)
    rho = rho_for_mi(2.0)
    a, b = torch.tensor(0.3, requires_grad=True), torch.tensor(-0.5, requires_grad=True)
    opt = torch.optim.Adam([a, b], lr=0.02)
    estimator = E.get_estimator(name)
    for _ in range(600):
        x, y = sample_pairs(64, 20, rho, g)
        loss = estimator(a * log_ratio_scores(x, y, rho) + b).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert a.item() == pytest.approx(want_a, abs=0.12)
    if want_b is not None:
        assert b.item() == pytest.approx(want_b, abs=0.25)


@pytest.mark.parametrize("b,m,n,offset", [(4, 4, 3, 0), (2, 6, 5, 2)])
def test_infonce_mi_uses_the_bound_log_1_plus_m_minus_1_n(b, m, n, offset):
    """With N positive positions per row the positive competes with (M - 1) N negatives, so the bound is
    log(1 + (M - 1) N), not log(M N). Equal scores: loss = bound, MI = 0. Positives at a, negatives at 0: per
    (i, p) loss = log(e^a + (M - 1) N) - a, MI = log(1 + (M - 1) N) - loss."""
    bound = math.log(1 + (m - 1) * n)
    est = E.infonce(torch.zeros(b, m, n), offset=offset)
    assert est.loss.item() == pytest.approx(bound, rel=1e-6)
    assert est.mi.item() == pytest.approx(0.0, abs=1e-6), f"MI at equal scores {est.mi.item():.4f}, want 0"
    a = 3.0
    s = torch.zeros(b, m, n)
    s[torch.arange(b), torch.arange(b) + offset] = a
    loss = math.log(math.exp(a) + (m - 1) * n) - a
    est = E.infonce(s, offset=offset)
    assert est.loss.item() == pytest.approx(loss, rel=1e-6)
    assert est.mi.item() == pytest.approx(bound - loss, rel=1e-5)
