"""Registry, weighted sums, requirement checks, frozen calls and the one-process distributed helpers."""

import pytest
import torch
from torch import nn

import multiview.objectives as objectives
from multiview.encoders.features import Features
from multiview.objectives.base import check_features, frozen_call
from multiview.objectives.distributed import gather_no_grad, gather_with_grad, local_offset, rank_and_world


def feats(b=4, d=6):
    return Features(torch.randn(b, d), {"r5": torch.randn(b, d, 5, 5), "r7": torch.randn(b, d, 7, 7)})


def test_registry_names_and_unknown():
    assert {"amdim", "cmc", "cmi", "dim", "sum"} <= set(objectives.names())
    with pytest.raises(KeyError, match="unknown objective 'cmd'; did you mean.*'cmc'"):
        objectives.create("cmd")


def test_combine_weights_metrics_and_aux_steps():
    f = {"a": feats(), "b": feats()}
    batch = {"a1": torch.tensor([0, 1, 0, 1]), "a2": torch.tensor([1, 1, 0, 0])}
    cmc = objectives.create("cmc", views=("a", "b"))
    amdim = objectives.create("amdim", views=("a", "b"), tasks=("1t5",))
    cmi = objectives.create("cmi", view="a", splits=(3, 3), num_values=(2, 2), hidden=(8,))
    both = objectives.combine({"cmc": (cmc, 1.0), "amdim": (amdim, 0.5), "cmi": (cmi, 0.1)})
    out = both(f, batch)
    want = cmc(f, batch).loss + 0.5 * amdim(f, batch).loss
    cmi.step.fill_(0)
    want = want + 0.1 * cmi(f, batch).loss
    # cmi's permutations depend on its step: rerun the sum with the same step to compare
    cmi.step.fill_(0)
    assert both(f, batch).loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert {"cmc/loss", "amdim/loss", "amdim/mi_1t5", "cmi/adversarial"} <= set(out.metrics)
    assert [s.name for s in both.auxiliary_steps()] == ["cmi/discriminators"]
    assert both.requires() == {"a": ("r5",), "b": ("r5",)}
    aux = {id(p) for p in cmi.discriminators.parameters()}
    assert not aux & {id(p) for p in both.main_parameters()}


def test_sum_from_recipe_terms():
    obj = objectives.create(
        "sum",
        terms=[
            {"name": "cmc", "views": ["a", "b"]},
            {"name": "cmc", "weight": 2.0, "views": ["b", "a"], "mode": "core"},
        ],
    )
    assert list(obj.terms) == ["cmc", "cmc_1"] and obj.weights == {"cmc": 1.0, "cmc_1": 2.0}
    with pytest.raises(ValueError, match=r"terms\[0\]"):
        objectives.create("sum", terms=[{"views": ["a"]}])
    with pytest.raises(ValueError, match="at least one term"):
        objectives.combine({})


def test_check_features_messages():
    check_features("x", {"a": ("r5",)}, {"a": feats()})
    with pytest.raises(ValueError, match=r"objective x needs view 'c', features have views \['a'\]"):
        check_features("x", {"c": ()}, {"a": feats()})
    with pytest.raises(ValueError, match=r"needs local map 's8' of view 'a', encoder gives only \['r5', 'r7'\]"):
        check_features("x", {"a": ("s8",)}, {"a": feats()})


def test_frozen_call_passes_gradient_to_input_only():
    layer = nn.Linear(3, 1)
    x = torch.randn(4, 3, requires_grad=True)
    frozen_call(layer, x).sum().backward()
    assert x.grad is not None and layer.weight.grad is None
    torch.testing.assert_close(x.grad, layer.weight.detach().expand(4, 3))


def test_distributed_helpers_are_identity_without_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x and gather_no_grad(x) is x
    assert rank_and_world() == (0, 1) and local_offset(3) == 0
