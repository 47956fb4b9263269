"""AMDIM mixture representations: k = 1 is AMDIM, the vectorised form equals a loop one image, location and component
at a time, the hard-max limit, detached responsibilities, 2 processes = 1, symmetry breaking, the head's gradients,
the evaluation interface and argument validation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from multiview.encoders.features import Features
from multiview.objectives import create
from multiview.objectives import reference as R
from multiview.objectives.amdim import AMDIM, amdim_task
from multiview.objectives.amdim_mixture import AMDIMMixture, mixture_nce, mixture_terms

from .conftest import run_two_processes

D = 8
VIEWS = ("view0", "view1")
PAIRS = (VIEWS, VIEWS[::-1])
ROOT = Path(__file__).resolve().parents[2]


def feats(b: int = 3, d: int = D, dtype=torch.float64, zero: bool = False) -> Features:
    make = torch.zeros if zero else torch.randn
    leaf = lambda *shape: make(*shape, dtype=dtype).requires_grad_(True)  # noqa: E731
    return Features(leaf(b, d), {"r5": leaf(b, d, 5, 5), "r7": leaf(b, d, 7, 7)})


def pair(b: int = 3, **kw) -> dict[str, Features]:
    return {v: feats(b, **kw) for v in VIEWS}


def mixture(k: int = 3, perturb: bool = True, **kw) -> AMDIMMixture:
    obj = create("amdim_mixture", feature_dim=D, n_components=k, hidden=5, **kw).double()
    if perturb:  # a last layer away from zero, so the k components differ
        with torch.no_grad():
            obj.head.w2.normal_(0, 0.5)
            obj.head.b2.normal_(0, 0.5)
    return obj


def leaves(f: dict[str, Features]) -> list[torch.Tensor]:
    return [t for v in VIEWS for t in (f[v].global_, f[v].local["r5"], f[v].local["r7"])]


def grads(loss: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, inputs, allow_unused=True))


# ------------------------------------------------------------------------------------- loop references


def head_loop(obj: AMDIMMixture, r1: torch.Tensor) -> torch.Tensor:
    """``[B, D] -> [B, k, D]`` from the head's parameters, one image and component at a time."""
    head, h = obj.head, obj.hidden
    rows = []
    for i in range(r1.shape[0]):
        comps = []
        for c in range(obj.n_components):
            cols = slice(c * h, (c + 1) * h)
            hidden = torch.relu(r1[i] @ head.w1[:, cols] + head.b1[cols])
            comps.append(r1[i] + hidden @ head.w2[c] + head.b2[c])
        rows.append(torch.stack(comps))
    return torch.stack(rows)


def s_nce_loop(mix: torch.Tensor, target: torch.Tensor, clip: float = 20.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``mix [B, k, D]``, ``target [B, D, H, W]`` -> ``s_nce [B, k, N]`` and mean(raw^2), one image i, component c and
    location q at a time: the positive (i, q) against every location of every other image."""
    b, k, d = mix.shape
    tgt = target.flatten(2)
    n = tgt.shape[2]
    out, squares = [], []
    for i in range(b):
        per_c = []
        for c in range(k):
            raw = torch.stack([mix[i, c] @ tgt[j] for j in range(b)]) / math.sqrt(d)  # [B, N]
            squares.append(raw.pow(2).mean())
            s = clip * torch.tanh(raw / clip)
            negatives = torch.cat([s[j] for j in range(b) if j != i])
            per_c.append(
                torch.stack([s[i, q] - torch.logsumexp(torch.cat([s[i, q : q + 1], negatives]), 0) for q in range(n)])
            )
        out.append(torch.stack(per_c))
    return torch.stack(out), torch.stack(squares).mean()


def objective_loop(s_nce: torch.Tensor, alpha: float, sharpness: float, detach: bool) -> torch.Tensor:
    """Minus the mean over (i, q) of ``sum_c pi * s_nce + alpha * H(pi)``, one location at a time."""
    values = []
    for i in range(s_nce.shape[0]):
        for q in range(s_nce.shape[2]):
            col = s_nce[i, :, q]
            pi = torch.softmax(sharpness * col, 0)
            pi = pi.detach() if detach else pi
            values.append((pi * col).sum() - alpha * (pi * pi.log()).sum())
    return -torch.stack(values).mean()


def total_loop(obj: AMDIMMixture, f: dict[str, Features], locations: torch.Tensor) -> torch.Tensor:
    """The whole objective by loops: mixture tasks through the loops above, 5->5 through AMDIM's loop reference."""
    total, reg = 0.0, 0.0
    for task in obj.tasks:
        for direction, (a, c) in enumerate(PAIRS):
            target = f[c].local["r5" if task in ("1t5", "5t5") else "r7"]
            if task == "5t5":
                flat = f[a].local["r5"].flatten(2)
                source = torch.stack([flat[i, :, int(locations[direction, i])] for i in range(flat.shape[0])])
                nce, r = R.amdim_task_loop(source, target)
            else:
                s_nce, square = s_nce_loop(head_loop(obj, f[a].global_), target)
                nce = objective_loop(s_nce, obj.alpha, obj.sharpness, obj.detach_responsibilities)
                r = obj.reg_weight * square
            total, reg = total + nce / 2, reg + r
    return total + 0.5 * reg


# ------------------------------------------------------------------------------------------------- tests


def test_one_component_at_init_is_amdim():
    """k = 1 with the zero last layer: f^1 = r1, one responsibility of 1, no entropy -> AMDIM's loss and gradients."""
    f = pair(4)
    obj, ref = mixture(1, perturb=False), AMDIM().double()
    ours, theirs = obj(f), ref(f)
    assert ours.loss.item() == pytest.approx(theirs.loss.item(), abs=1e-6, rel=1e-6)
    for name in ("mi_1t5", "mi_1t7", "mi_5t5", "loss_1t7", "reg"):
        assert ours.metrics[name].item() == pytest.approx(theirs.metrics[name].item(), abs=1e-6), name
    for g_ours, g_ref in zip(grads(ours.loss, leaves(f)), grads(theirs.loss, leaves(f))):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-6, atol=1e-6)


def test_one_component_with_any_head_is_amdim_task_on_f1():
    """k = 1 and a non-zero head: the loss is AMDIM's tasks with f^1 as the r1 source, computed by hand."""
    f = pair(4)
    obj = mixture(1)
    locations = obj.source_locations(4, 25)
    loss = obj(f).loss
    total, reg = 0.0, 0.0
    for task in ("1t5", "1t7", "5t5"):
        for direction, (a, c) in enumerate(PAIRS):
            if task == "5t5":
                flat = f[a].local["r5"].flatten(2)
                source = flat[torch.arange(4), :, locations[direction]]
            else:
                source = obj.mixture_features(f[a].global_)[:, 0]
            nce, r, _ = amdim_task(source, f[c].local["r5" if task != "1t7" else "r7"])
            total, reg = total + nce / 2, reg + r
    assert not torch.allclose(obj.mixture_features(f["view0"].global_)[:, 0], f["view0"].global_)
    assert loss.item() == pytest.approx((total + 0.5 * reg).item(), rel=1e-10)


@pytest.mark.parametrize("detach", [False, True])
def test_vectorised_equals_loop_values_and_gradients(detach):
    """B 3, D 8, k 3, r5 5x5, r7 7x7, entropy on: the library's total, its gradients w.r.t. both views' maps and
    global vectors and the head's parameters equal the loop over images, locations and components."""
    f = pair(3)
    obj = mixture(3, alpha=0.3, sharpness=1.7, detach_responsibilities=detach)
    locations = obj.source_locations(3, 25)
    ours, ref = obj(f).loss, total_loop(obj, f, locations)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    inputs = leaves(f) + list(obj.parameters())
    for name, g_ours, g_ref in zip(["features"] * 6 + ["head"] * 4, grads(ours, inputs), grads(ref, inputs)):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-8, atol=1e-10, msg=name)


def test_responsibilities_are_a_distribution_over_components_and_match_training():
    f = feats(4)
    obj = mixture(3, sharpness=1.5)
    pi = obj.responsibilities(f.global_, f.local["r7"])
    assert pi.shape == (4, 3, 7, 7)
    assert (pi >= 0).all()
    torch.testing.assert_close(pi.sum(1), torch.ones(4, 7, 7, dtype=pi.dtype))
    # exactly as in training: the per-location softmax of the loop's scores, the batch's other images as negatives
    s_nce, _ = s_nce_loop(obj.mixture_features(f.global_), f.local["r7"])
    want = torch.softmax(1.5 * s_nce, dim=1).reshape(4, 3, 7, 7)
    torch.testing.assert_close(pi, want, rtol=1e-10, atol=1e-12)
    assert obj.mixture_map == "r7"
    assert obj.n_components == 3
    assert obj.mixture_features(f.global_).shape == (4, 3, D)
    # inside the loss: the responsibilities of each location and the logged usage sum to 1 over components
    terms = mixture_terms(s_nce, 0.05, 1.5)
    torch.testing.assert_close(terms.pi.sum(1), torch.ones(4, 49, dtype=pi.dtype))
    out = obj(pair(4))
    assert sum(out.metrics[f"pi_usage_{c}"].item() for c in range(3)) == pytest.approx(1.0, abs=1e-12)
    assert 0 < out.metrics["pi_entropy"].item() < math.log(3)


def test_zero_scores_give_uniform_responsibilities_and_the_amdim_value():
    """All scores 0: every s_nce is -log(1 + (B - 1) N), pi = 1/k, H = log k, MI estimate 0."""
    k, b = 4, 6
    out = mixture(k, perturb=False, alpha=0.1)(pair(b, zero=True))
    assert out.metrics["loss_1t7"].item() == pytest.approx(math.log(1 + (b - 1) * 49) - 0.1 * math.log(k), abs=1e-9)
    assert out.metrics["mi_1t5"].item() == pytest.approx(0.0, abs=1e-9)
    assert out.metrics["pi_entropy"].item() == pytest.approx(math.log(k), abs=1e-9)
    assert out.metrics["pi_usage_3"].item() == pytest.approx(1 / k, abs=1e-9)


def test_large_sharpness_without_entropy_is_the_hard_max():
    """alpha 0, sharpness 1e4: minus the mean over locations of max_c s_nce (the loop's scores), both directions."""
    f = pair(4)
    obj = mixture(3, alpha=0.0, sharpness=1e4, tasks=("1t7",), reg_weight=0.0)
    loss = obj(f).loss
    want = 0.0
    for a, c in PAIRS:
        s_nce, _ = s_nce_loop(obj.mixture_features(f[a].global_), f[c].local["r7"])
        want = want - s_nce.max(dim=1).values.mean() / 2
        assert (s_nce.max(1).values - s_nce.min(1).values).mean() > 0.1  # the components really disagree
    assert loss.item() == pytest.approx(want.item(), rel=1e-7)
    soft = mixture(3, alpha=0.0, sharpness=1.0, tasks=("1t7",), reg_weight=0.0)
    soft.load_state_dict(obj.state_dict())
    assert soft(f).loss.item() > loss.item() + 1e-3  # a soft mixture is below the max


def test_detached_responsibilities_change_the_gradient_not_the_value():
    """Same value; with detach the gradient is -mean(sum_c pi.detach() * grad s_nce) (the entropy gives none)."""
    f = pair(3)
    free = mixture(3, alpha=0.05, sharpness=1.0, tasks=("1t7",), reg_weight=0.0)
    held = mixture(3, alpha=0.05, sharpness=1.0, tasks=("1t7",), reg_weight=0.0, detach_responsibilities=True)
    held.load_state_dict(free.state_dict())
    maps = [t for v in VIEWS for t in (f[v].global_, f[v].local["r7"])]  # r5 is not read by 1->7
    inputs = maps + list(free.head.parameters())
    free_loss = free(f).loss
    held_loss = held(f).loss
    assert free_loss.item() == pytest.approx(held_loss.item(), rel=1e-12)
    surrogate = 0.0
    for a, c in PAIRS:
        s_nce, _ = s_nce_loop(head_loop(free, f[a].global_), f[c].local["r7"])
        pi = torch.softmax(s_nce, dim=1).detach()
        surrogate = surrogate - (pi * s_nce).sum(1).mean() / 2
    held_inputs = maps + list(held.head.parameters())
    g_free, g_held, g_sur = grads(free_loss, inputs), grads(held_loss, held_inputs), grads(surrogate, inputs)
    for a, b in zip(g_held, g_sur):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    assert max((a - b).abs().max().item() for a, b in zip(g_free, g_held)) > 1e-4


def test_entropy_at_alpha_one_over_sharpness_is_the_soft_max_and_detach_is_moot():
    """The envelope case the docstring names: alpha = 1/sharpness -> logsumexp_c(sharpness s) / sharpness."""
    s = torch.randn(3, 4, 10, dtype=torch.float64, requires_grad=True)
    terms = mixture_terms(s, alpha=0.5, sharpness=2.0)
    torch.testing.assert_close(terms.objective, torch.logsumexp(2.0 * s, 1) / 2.0)
    g_free = torch.autograd.grad(terms.objective.sum(), s)[0]
    g_held = torch.autograd.grad(mixture_terms(s, 0.5, 2.0, detach=True).objective.sum(), s)[0]
    torch.testing.assert_close(g_free, g_held)


@pytest.mark.distributed
def test_two_processes_match_one(tmp_path):
    """Global batch 8 on 1 process vs 4 + 4 on 2 (gloo), 2 SGD steps of the head: the mean of the two losses is the
    one-process loss, the head's averaged gradients equal the one-process ones, each process's feature gradients
    are twice the one-process gradients of its rows (its loss is a mean over half the images)."""
    results = run_two_processes(Path(__file__).with_name("_ddp_mixture_worker.py"), tmp_path)
    single = results[0]["single"]
    assert results[0]["world"] == 2
    for step in range(len(single["loss"])):
        ranks = [r["ddp"] for r in results]
        mean = sum(r["loss"][step] for r in ranks) / 2
        torch.testing.assert_close(mean, single["loss"][step], rtol=1e-5, atol=1e-6)
        assert not torch.equal(ranks[0]["loss"][step], ranks[1]["loss"][step])
        for name, want in single["head_grads"][step].items():
            assert want.abs().max() > 0, name
            for r in ranks:
                torch.testing.assert_close(r["head_grads"][step][name], want, rtol=1e-5, atol=1e-6, msg=name)
        for name, want in single["feature_grads"][step].items():
            got = torch.cat([r["feature_grads"][step][name] for r in ranks])
            torch.testing.assert_close(got, 2 * want, rtol=1e-5, atol=1e-6, msg=name)


def test_one_adam_step_breaks_the_symmetry():
    """From the identity init (all f^c = r1) one Adam step on random features makes the components differ."""
    torch.manual_seed(0)
    obj = create("amdim_mixture", feature_dim=D, n_components=3)
    f = pair(6, dtype=torch.float32)
    r1 = f["view0"].global_.detach()
    before = obj.mixture_features(r1)
    assert torch.equal(before, r1[:, None].expand(6, 3, D))  # k exact copies of r1
    optimizer = torch.optim.Adam(obj.parameters(), lr=1e-2)
    obj(f).loss.backward()
    optimizer.step()
    after = obj.mixture_features(r1).detach()
    for c in range(1, 3):
        assert (after[:, c] - after[:, 0]).abs().max() > 1e-3, c


def test_head_parameters_get_gradients_and_train_in_the_main_step():
    f = pair(4, dtype=torch.float32)
    obj = create("amdim_mixture", feature_dim=D, n_components=3)
    obj(f).loss.backward()
    head = obj.head
    # At the zero start only the last layer gets gradient (the first one reaches the loss through it).
    assert head.w2.grad.abs().max() > 0 and head.b2.grad.abs().max() > 0
    assert head.w1.grad.abs().max() == 0
    with torch.no_grad():
        head.w2.normal_(0, 0.3)
    obj.zero_grad()
    obj(pair(4, dtype=torch.float32)).loss.backward()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name
    assert obj.auxiliary_steps() == []
    assert {id(p) for p in head.parameters()} <= {id(p) for p in obj.main_parameters()}


def test_builds_from_a_recipe_and_the_registry():
    from multiview.train.build import build_objectives
    from multiview.train.recipe import validate_recipe

    data = yaml.safe_load((ROOT / "recipes" / "amdim_fashion_mnist.yaml").read_text())
    spec = {"name": "amdim_mixture", "views": ["view0", "view1"], "tasks": ["1t5", "1t7", "5t5"],
            "feature_dim": D, "n_components": 3, "alpha": 0.1, "sharpness": 2.0}  # fmt: skip
    data["objectives"] = [spec]
    obj = build_objectives(validate_recipe(data))["amdim_mixture"]
    assert isinstance(obj, AMDIMMixture)
    assert (obj.n_components, obj.alpha, obj.sharpness, obj.hidden) == (3, 0.1, 2.0, D)
    assert obj.requires() == {"view0": ("r5", "r7"), "view1": ("r5", "r7")}
    assert obj(pair(3, dtype=torch.float32)).loss.isfinite()
    only_15 = create("amdim_mixture", feature_dim=D, tasks=("1t5",))
    assert only_15.mixture_map == "r5" and only_15.requires()["view0"] == ("r5",)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"n_components": 0}, "n_components"),
        ({"n_components": 2.5}, "n_components"),
        ({"hidden": 0}, "hidden"),
        ({"feature_dim": -1}, "feature_dim"),
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"sharpness": 0.0}, "sharpness"),
        ({"detach_responsibilities": "yes"}, "detach_responsibilities"),
        ({"clip": 0}, "clip"),
        ({"reg_weight": -1}, "reg_weight"),
        ({"seed": -2}, "seed"),
        ({"tasks": ("5t5",)}, "tasks"),
        ({"tasks": ("2t9", "1t5")}, "tasks"),
        ({"views": ("a",)}, "views"),
        ({"large": ""}, "large"),
    ],
)
def test_argument_errors_name_the_argument(kwargs, named):
    with pytest.raises(ValueError, match=rf"^amdim_mixture {named}: expected"):
        create("amdim_mixture", **({"feature_dim": D} | kwargs))


def test_feature_size_mismatch_names_feature_dim():
    obj = create("amdim_mixture", feature_dim=D + 1)
    with pytest.raises(ValueError, match=r"feature_dim=9 .* view 'view0' has D=8"):
        obj(pair(2, dtype=torch.float32))
    with pytest.raises(ValueError, match="source \\[B, D\\] and target \\[B, D, H, W\\]"):
        obj.responsibilities(torch.randn(2, D + 1), torch.randn(3, D + 1, 7, 7))


def test_mixture_nce_matches_the_loop_with_an_offset():
    """Gathered targets: image i's positives are row i + offset of the gathered maps."""
    mix, target = torch.randn(2, 3, D, dtype=torch.float64), torch.randn(5, D, 4, dtype=torch.float64)
    s_nce, reg = mixture_nce(mix, target, offset=2)
    full = torch.cat([torch.zeros(2, 3, D, dtype=torch.float64), mix, torch.zeros(1, 3, D, dtype=torch.float64)])
    want, square = s_nce_loop(full, target.reshape(5, D, 2, 2))
    torch.testing.assert_close(s_nce, want[2:4])
    raw = torch.einsum("bkd,mdn->bkmn", mix, target) / math.sqrt(D)
    assert reg.item() == pytest.approx(0.05 * raw.pow(2).mean().item(), rel=1e-12)
