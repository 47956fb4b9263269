"""DIM: sanity values at T = 0, vectorised scores == loops, the prior's separate step, requirement errors."""

import math

import pytest
import torch

from multiview.encoders.features import Features
from multiview.objectives import create
from multiview.objectives import reference as R
from multiview.objectives.estimators import get_estimator


def feats(b=6, d=8, c=5, hw=4, zero=False):
    make = torch.zeros if zero else torch.randn
    return {"x": Features(make(b, d), {"s4": make(b, c, hw, hw)})}


def test_local_nce_at_zero_scores_is_reference_value():
    """Zero features -> the LayerNorm'd critic outputs are 0 -> T = 0 -> log(1 + (B - 1) N) = 8.302 at B = N = 64."""
    obj = create("dim", view="x", local="s4", global_dim=8, local_dim=5, estimator="nce", gamma=0, critic_dim=16)
    out = obj(feats(64, 8, 5, 8, zero=True), {})
    assert out.loss.item() == pytest.approx(math.log(1 + 63 * 64), abs=1e-3)
    assert out.loss.item() == pytest.approx(8.302, abs=1e-3)


@pytest.mark.parametrize("estimator", ["jsd", "dv"])
def test_jsd_and_dv_at_zero_scores_are_zero(estimator):
    obj = create("dim", view="x", local="s4", global_dim=8, local_dim=5, estimator=estimator, gamma=0, critic_dim=16)
    with torch.no_grad():  # a zero LayerNorm gain makes the critic output 0, so T = 0 everywhere
        obj.local_global.norm.weight.zero_()
    assert obj(feats(8), {}).loss.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("estimator", ["jsd", "nce", "dv"])
def test_local_loss_equals_loop(estimator):
    obj = create("dim", view="x", local="s4", global_dim=8, local_dim=5, estimator=estimator, gamma=0, critic_dim=16)
    f = feats()
    y, local = f["x"].global_, f["x"].local["s4"]
    scores, offset = obj.local_scores(y, local)
    loop = R.dim_local_scores_loop(obj.local_global(y), obj.local_local(local))
    torch.testing.assert_close(scores, loop, rtol=1e-5, atol=1e-5)
    ref = {"jsd": R.jsd_loop, "nce": R.infonce_loop, "dv": lambda s: -R.dv_loop(s)}[estimator](loop)
    assert obj(f, {}).loss.item() == pytest.approx(ref.item(), abs=1e-5)


def test_global_term_uses_its_own_critic_and_dv():
    obj = create(
        "dim",
        view="x",
        local="s4",
        global_dim=8,
        local_dim=5,
        estimator="dv",
        alpha=1,
        beta=0,
        gamma=0,
        critic_dim=16,
        local_size=4,
    )
    f = feats()
    scores, _ = obj.global_scores(f["x"].global_, f["x"].local["s4"])
    assert scores.shape == (6, 6)
    out = obj(f, {})
    assert out.loss.item() == pytest.approx(-R.dv_loop(scores).item(), abs=1e-5)
    assert "global_mi" in out.metrics and "local_mi" not in out.metrics


def test_prior_has_its_own_step_and_main_loss_leaves_it_alone():
    obj = create("dim", view="x", local="s4", global_dim=8, local_dim=5, gamma=0.5, critic_dim=16)
    f = feats()
    f["x"].global_.requires_grad_(True)
    out = obj(f, {})
    out.loss.backward()
    assert all(p.grad is None for p in obj.prior.parameters())  # no gradient on the discriminator from the main loss
    assert f["x"].global_.grad is not None  # but the encoder gets the prior term
    steps = obj.auxiliary_steps()
    assert [s.name for s in steps] == ["prior"] and steps[0].module is obj.prior
    prior_ids = {id(p) for p in obj.prior.parameters()}
    assert not prior_ids & {id(p) for p in obj.main_parameters()}
    obj.zero_grad(set_to_none=True)
    loss = steps[0].loss_fn({"x": f["x"].detach()}, {})
    loss.backward()
    assert all(p.grad is not None for p in obj.prior.parameters())
    assert all(p.grad is None for p in obj.local_global.parameters())


def test_prior_encoder_term_direction():
    """The encoder term is gamma * mean softplus(-D(sigmoid(Y))) -- it pushes D(z) up (fool the discriminator)."""
    obj = create("dim", view="x", local="s4", global_dim=8, local_dim=5, beta=0, gamma=1.0, critic_dim=16)
    f = feats()
    d_z = obj.prior(torch.sigmoid(f["x"].global_))
    assert obj(f, {}).loss.item() == pytest.approx(torch.nn.functional.softplus(-d_z).mean().item(), abs=1e-6)


def test_prior_gradient_penalty_term():
    obj = create("dim", view="x", local="s4", global_dim=8, local_dim=5, gamma=1.0, critic_dim=16)
    torch.manual_seed(3)
    with_gp = obj.prior_loss(feats(), {})
    obj.gradient_penalty = 0.0
    torch.manual_seed(3)
    without = obj.prior_loss(feats(), {})
    assert with_gp.item() > without.item()


def test_requirements_name_view_and_map():
    obj = create("dim", view="x", local="s8", global_dim=8, local_dim=5, gamma=0, critic_dim=16)
    with pytest.raises(
        ValueError, match=r"objective dim needs local map 's8' of view 'x', encoder gives only \['s4'\]"
    ):
        obj(feats(), {})
    obj = create("dim", view="img", local="s4", global_dim=8, local_dim=5, gamma=0, critic_dim=16)
    with pytest.raises(ValueError, match=r"needs view 'img'"):
        obj(feats(), {})
    obj = create("dim", view="x", local="s4", global_dim=9, local_dim=5, gamma=0, critic_dim=16)
    with pytest.raises(ValueError, match="global_dim=9"):
        obj(feats(), {})


def test_argument_validation():
    with pytest.raises(ValueError, match="'nwj'"):
        create("dim", estimator="nwj")
    with pytest.raises(ValueError, match="-1"):
        create("dim", alpha=-1)
    assert get_estimator("jsd") is create("dim", gamma=0, critic_dim=8).estimator


@pytest.mark.parametrize("estimator", ["jsd", "nce", "dv"])
def test_full_objective_equals_loop_reference(estimator):
    obj = create(
        "dim",
        view="x",
        local="s4",
        global_dim=8,
        local_dim=5,
        estimator=estimator,
        alpha=0.5,
        beta=1.0,
        gamma=0.3,
        critic_dim=16,
        local_size=4,
    )
    f = feats()
    assert obj(f, {}).loss.item() == pytest.approx(R.dim_loop(obj, f).item(), rel=1e-5)


def hand_made_prior(obj, k, m, c):
    """Set the prior discriminator (Linear-ReLU-Linear-ReLU-Linear) to ``D(x) = k sum(x) + m relu(x_0 - 1/2) + c``
    on ``x >= 0``: its gradient is ``k`` everywhere plus ``m`` on coordinate 0 where ``x_0 > 1/2``."""
    first, second, last = [layer for layer in obj.prior if isinstance(layer, torch.nn.Linear)]
    with torch.no_grad():
        for layer in (first, second, last):
            layer.weight.zero_()
            layer.bias.zero_()
        first.weight[0] = 1.0  # unit 0: sum(x) (>= 0, so the ReLUs pass it)
        first.weight[1, 0], first.bias[1] = 1.0, -0.5  # unit 1: relu(x_0 - 1/2)
        second.weight[0, 0], second.weight[1, 1] = 1.0, 1.0
        last.weight[0, 0], last.weight[0, 1], last.bias[0] = k, m, c


def test_prior_discriminator_loss_is_the_analytic_value():
    """The discriminator's own loss on a hand-made D: ``mean sp(-D(u)) + mean sp(D(z))`` with ``z = sigmoid(Y)``
    (real = the prior U[0, 1]^D, fake = the encoder), plus ``gp * 0.5 * (E|grad D(u)|^2 + E|grad D(z)|^2)``; and
    the encoder term ``gamma * mean sp(-D(z))``. Values worked out here from D's formula, not from the library."""
    k, m, c, gp, gamma = 0.5, 3.0, -1.0, 0.7, 0.4
    obj = create("dim", view="x", global_dim=4, beta=0, gamma=gamma, gradient_penalty=gp)
    hand_made_prior(obj, k, m, c)
    y = torch.tensor([[2.0, -1.0, 0.5, 3.0], [0.3, 4.0, -2.0, -0.5], [1.0, 1.0, 1.0, -3.0]])
    features = {"x": Features(y)}
    torch.manual_seed(11)
    got = obj.prior_loss(features, {}).item()
    torch.manual_seed(11)
    u = torch.rand(3, 4)  # the prior sample prior_loss draws (rand_like of z [3, 4] under the same seed)

    def d(x):
        return k * x.sum(1) + m * (x[:, 0] - 0.5).clamp_min(0) + c

    def grad_sq(x):  # |grad D(x)|^2 = (D - 1) k^2 + (k + m [x_0 > 1/2])^2
        return 3 * k**2 + (k + m * (x[:, 0] > 0.5).float()) ** 2

    z = 1 / (1 + torch.exp(-y))
    sp = torch.nn.functional.softplus
    assert (u[:, 0] < 0.5).any() and (z[:, 0] > 0.5).all()  # so E|grad D(u)|^2 != E|grad D(z)|^2
    assert grad_sq(u).mean().item() != pytest.approx(grad_sq(z).mean().item())
    real_fake = sp(-d(u)).mean() + sp(d(z)).mean()
    penalty = 0.5 * (grad_sq(u).mean() + grad_sq(z).mean())
    assert got == pytest.approx((real_fake + gp * penalty).item(), rel=1e-5), (
        f"prior loss {got:.6f}; want {real_fake.item():.6f} (real/fake) + {gp} * {penalty.item():.6f} (penalty, "
        f"both sides: {grad_sq(u).mean().item():.4f} on u, {grad_sq(z).mean().item():.4f} on z)"
    )
    assert obj(features, {}).loss.item() == pytest.approx(gamma * sp(-d(z)).mean().item(), rel=1e-5)
