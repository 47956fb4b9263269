"""CMI: within-group permutation, loss == group-by-group loop, flipped labels, separate discriminator step."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multiview.encoders.features import Features
from multiview.objectives import create
from multiview.objectives import reference as R
from multiview.objectives.cmi import group_mean_sum, within_group_permutation


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=40), st.integers(0, 1000))
def test_within_group_permutation_keeps_labels(labels, seed):
    a = torch.tensor(labels)
    source = within_group_permutation(a, torch.Generator().manual_seed(seed))
    assert sorted(source.tolist()) == list(range(len(labels)))  # a permutation
    assert torch.equal(a[source], a)  # every row takes a row with its own label


def test_within_group_permutation_mixes_rows():
    a = torch.zeros(50, dtype=torch.long)
    source = within_group_permutation(a, torch.Generator().manual_seed(0))
    assert (source != torch.arange(50)).sum() > 40


def test_group_mean_sum():
    values, labels = torch.tensor([1.0, 3.0, 10.0, 0.0]), torch.tensor([0, 0, 2, 2])
    assert group_mean_sum(values, labels, 4).item() == pytest.approx(2.0 + 5.0)


def setup(b=12):
    obj = create("cmi", view="z", splits=(3, 5), attributes=("a1", "a2"), num_values=(3, 4), hidden=(16,), weight=2.0)
    g = torch.Generator().manual_seed(1)
    batch = {"a1": torch.randint(3, (b,), generator=g), "a2": torch.randint(4, (b,), generator=g)}
    return obj, {"z": Features(torch.randn(b, 8, requires_grad=True))}, batch


def test_permuted_inputs_keep_labels_and_other_subspace():
    obj, f, batch = setup()
    z = f["z"].global_.detach()
    (joint1, perm1, a1), (joint2, perm2, a2) = obj.discriminator_inputs(z, [batch["a1"], batch["a2"]])
    torch.testing.assert_close(perm1[:, 3:8], z[:, 3:8])  # only subspace 1 moves for attribute 1
    torch.testing.assert_close(perm1[:, 8:], joint1[:, 8:])  # same one-hot labels
    torch.testing.assert_close(perm2[:, :3], z[:, :3])
    # the moved subspace is a within-group shuffle: per group, the same multiset of rows
    for v in range(3):
        rows = a1 == v
        got = sorted(map(tuple, perm1[rows, :3].tolist()))
        assert got == sorted(map(tuple, z[rows, :3].tolist()))


def test_losses_equal_group_by_group_loop():
    obj, f, batch = setup()
    labels = [batch["a1"], batch["a2"]]
    z = f["z"].global_
    step = int(obj.step)
    out = obj(f, batch)
    obj.step.fill_(step)  # the loop draws the same permutations
    want_adv = R.cmi_adversarial_loop(obj, z, labels, joint_target=0.0)
    assert out.metrics["adversarial"].item() == pytest.approx(want_adv.item(), rel=1e-5)
    obj.step.fill_(step)
    d_loss = obj.discriminator_loss(f, batch)
    obj.step.fill_(step)
    assert d_loss.item() == pytest.approx(R.cmi_adversarial_loop(obj, z.detach(), labels, 1.0).item(), rel=1e-5)


def test_encoder_term_has_flipped_labels():
    """Discriminator says joint (logit +big) on everything: the discriminator loss on joints is ~0, the encoder's
    flipped-label term on joints is large."""
    obj, f, batch = setup()
    with torch.no_grad():
        for d in obj.discriminators:
            d[-1].weight.zero_()
            d[-1].bias.fill_(8.0)
    obj.task_weight = 0.0
    enc = obj(f, batch).metrics["adversarial"].item()
    disc = obj.discriminator_loss(f, batch).item()
    # groups present per attribute: each contributes ~8 (flipped joint) + ~0 (flipped permuted) for the encoder
    assert enc > 8.0 * 3 and disc > 8.0 * 3  # both see one wrong side: permuted for D, joint for the encoder
    obj2, f2, batch2 = setup()
    with torch.no_grad():
        for d in obj2.discriminators:
            d[-1].weight.zero_()
            d[-1].bias.fill_(0.0)
    obj2.task_weight = 0.0
    import math

    n_groups = len(batch2["a1"].unique()) + len(batch2["a2"].unique())
    assert obj2(f2, batch2).metrics["adversarial"].item() == pytest.approx(n_groups * 2 * math.log(2), rel=1e-5)


def test_main_loss_does_not_train_discriminators_and_aux_step_does():
    obj, f, batch = setup()
    out = obj(f, batch)
    out.loss.backward()
    assert f["z"].global_.grad is not None
    assert all(p.grad is None for p in obj.discriminators.parameters())
    assert all(p.grad is not None for p in obj.heads.parameters())
    assert {id(p) for p in obj.main_parameters()} == {id(p) for p in obj.heads.parameters()}
    (step,) = obj.auxiliary_steps()
    assert step.module is obj.discriminators and step.betas == (0.5, 0.999)
    obj.zero_grad(set_to_none=True)
    step.loss_fn({"z": f["z"].detach()}, batch).backward()
    assert all(p.grad is not None for p in obj.discriminators.parameters())
    assert all(p.grad is None for p in obj.heads.parameters())


def test_validation_messages():
    obj, f, batch = setup()
    with pytest.raises(ValueError, match=r"needs batch\['a2'\]"):
        obj(f, {"a1": batch["a1"]})
    with pytest.raises(ValueError, match=r"batch\['a1'\] must hold 12 values in \[0, 3\)"):
        obj(f, {"a1": batch["a1"] + 5, "a2": batch["a2"]})
    bad = {"z": Features(torch.randn(12, 9))}
    with pytest.raises(ValueError, match="sum to 8, view 'z' has D = 9"):
        obj(bad, batch)
    with pytest.raises(ValueError, match="one attribute"):
        create("cmi", splits=(3, 3), attributes=("a",), num_values=(2, 2))


def test_discriminators_see_the_attribute_one_hot():
    """Hand-made D_k that read only the one-hot of a_k and one coordinate of the subspace NOT permuted for k, so
    ``D_k(joint_i) = D_k(permuted_i) = w_k[a_k,i] + z_i[j_k]``. Both players' losses are then
    ``sum_v mean_{i in G_v} [sp(-t_i) + sp(t_i)]`` with ``t_i = w[a_i] + z_i[j_k]``, worked out here by hand; a
    discriminator that does not get the one-hot (zeroed, or on one side only) sees ``t_i = z_i[j_k]`` instead."""
    obj = create("cmi", view="z", splits=(2, 3), attributes=("a1", "a2"), num_values=(3, 2), hidden=(4,), weight=1.0)
    obj.task_weight = 0.0
    w = ([1.5, -2.0, 3.0], [-1.0, 2.5])  # per attribute, per value
    read = (2, 0)  # D_1 reads z[:, 2] (subspace 2), D_2 reads z[:, 0] (subspace 1): neither is permuted for k
    with torch.no_grad():
        for k, (d, n) in enumerate(zip(obj.discriminators, (3, 2))):
            first, last = d[0], d[-1]
            for layer in (first, last):
                layer.weight.zero_()
                layer.bias.zero_()
            for v in range(n):
                first.weight[v, 5 + v] = 1.0  # hidden unit v = onehot(a_k)_v (inputs: z [5], then the one-hot)
                last.weight[0, v] = w[k][v]
            first.weight[n, read[k]] = 1.0  # hidden unit n = relu(z[j_k]) = z[j_k] (z > 0 below)
            last.weight[0, n] = 1.0
    z = torch.tensor(
        [[0.1, 0.2, 0.3, 0.4, 0.5], [0.6, 0.7, 0.8, 0.9, 1.0], [1.1, 0.2, 0.4, 0.8, 1.6], [0.3, 0.9, 0.1, 0.5, 0.7]]
    )
    batch = {"a1": torch.tensor([0, 2, 0, 1]), "a2": torch.tensor([1, 1, 0, 1])}
    sp = torch.nn.functional.softplus

    def want(with_onehot=True):
        total = 0.0
        for k, key in enumerate(("a1", "a2")):
            a = batch[key]
            t = z[:, read[k]] + (torch.tensor(w[k])[a] if with_onehot else 0.0)
            per_row = sp(-t) + sp(t)  # BCE(t, 1) + BCE(t, 0): same logit on the joint and the permuted row
            total += sum(per_row[a == v].mean().item() for v in a.unique())
        return total

    assert want() != pytest.approx(want(with_onehot=False))
    got = obj.discriminator_loss({"z": Features(z)}, batch).item()
    assert got == pytest.approx(want(), rel=1e-5), (
        f"discriminator loss {got:.6f}; with the one-hot {want():.6f}, without {want(False):.6f}"
    )
    adversarial = obj({"z": Features(z)}, batch).metrics["adversarial"].item()
    assert adversarial == pytest.approx(want(), rel=1e-5)
