"""The ``lightly`` objective: lightly's own values and gradients through the registry, clear errors, a real 2-process
gather (torchrun, gloo) that matches one process on the global batch, and a short training run from a recipe."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightly import loss as lightly_losses

from multiview.encoders.features import Features
from multiview.objectives import create, lightly_loss
from multiview.objectives.lightly_loss import available_pair_losses

from .conftest import run_two_processes

WORKER = Path(__file__).with_name("_ddp_lightly_worker.py")

# Non-default arguments, so the test also shows that loss_args reach the lightly class.
ARGS = {
    "NTXentLoss": {"temperature": 0.2},
    "DCLLoss": {"temperature": 0.3},
    "DCLWLoss": {"temperature": 0.3, "sigma": 0.4},
    "DirectCLRLoss": {"loss_dim": 5, "temperature": 0.3},
    "MACLLoss": {"temperature": 0.2, "alpha": 0.3},
    "BarlowTwinsLoss": {"lambda_param": 0.01},
    "VICRegLoss": {"lambda_param": 20.0, "mu_param": 20.0, "nu_param": 2.0},
    "NegativeCosineSimilarity": {},
}


def pair(b=10, d=8, names=("image", "audio")):
    g = torch.Generator().manual_seed(0)
    return {name: Features(torch.randn(b, d, generator=g).requires_grad_()) for name in names}


def test_every_listed_loss_has_arguments_here():
    assert set(lightly_loss.PAIR_LOSSES) == set(ARGS)
    assert {"NTXentLoss", "DCLLoss", "BarlowTwinsLoss", "VICRegLoss", "NegativeCosineSimilarity"} <= set(
        available_pair_losses()
    )


@pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")  # lightly's DCLW weights
@pytest.mark.parametrize("name", available_pair_losses())
def test_value_and_gradients_equal_lightlys_own(name):
    """As a recipe builds it (``{name: lightly, loss: ..., loss_args: {...}, views: [image, audio]}``)."""
    features = pair()
    obj = create("lightly", loss=name, loss_args=dict(ARGS[name]), views=["image", "audio"])
    out = obj(features, {})
    out.loss.backward()
    mine = [features[v].global_.grad.clone() for v in ("image", "audio")]

    z = [features[v].global_.detach().clone().requires_grad_() for v in ("image", "audio")]
    theirs = getattr(lightly_losses, name)(**ARGS[name])(*z)
    theirs.backward()
    assert torch.equal(out.loss.detach(), theirs.detach()), (out.loss.item(), theirs.item())
    for got, want in zip(mine, (z[0].grad, z[1].grad)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert set(out.metrics) == {"cos_image_audio"}
    want_cos = torch.nn.functional.cosine_similarity(z[0], z[1], dim=1).mean()
    torch.testing.assert_close(out.metrics["cos_image_audio"], want_cos.detach())


def test_gather_distributed_defaults_to_true_where_the_loss_takes_it():
    assert create("lightly", loss="NTXentLoss").loss_fn.gather_distributed is True
    assert (
        create("lightly", loss="NTXentLoss", loss_args={"gather_distributed": False}).loss_fn.gather_distributed
        is False
    )
    assert create("lightly", loss="NegativeCosineSimilarity").gather is False


def test_old_lightly_with_a_wrong_gather_gradient_is_refused(monkeypatch):
    monkeypatch.setattr(lightly_loss, "is_distributed", lambda: True)
    obj = create("lightly", loss="BarlowTwinsLoss", views=["image", "audio"])
    obj.lightly_version = "1.5.25"
    with pytest.raises(ValueError, match=r"needs lightly >= 1\.5\.26 .* installed 1\.5\.25"):
        obj(pair())
    obj = create("lightly", loss="NTXentLoss", views=["image", "audio"])
    obj.lightly_version = "1.5.3"
    with pytest.raises(ValueError, match=r"needs lightly >= 1\.5\.4"):
        obj(pair())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"loss": "NTXent"}, r"expected one of \[.*'NTXentLoss'.*\].*got 'NTXent'"),
        ({"loss": "DINOLoss"}, r"'DINOLoss' is a lightly loss but not a stateless loss of two \[B, D\] embeddings"),
        ({"loss": "TiCoLoss"}, r"'TiCoLoss' is a lightly loss but not"),
        ({"views": ["a"]}, r"lightly views: expected two distinct view names, got \['a'\]"),
        ({"views": ["a", "b", "c"]}, r"expected two distinct view names, got \['a', 'b', 'c'\]"),
        ({"views": ["a", "a"]}, r"expected two distinct view names"),
        ({"views": "ab"}, r"expected two distinct view names, got 'ab'"),
        ({"loss_args": {"temprature": 0.1}}, r"NTXentLoss takes \['temperature', .*\], got unknown \['temprature'\]"),
        ({"loss_args": [0.1]}, r"loss_args: expected a mapping"),
        ({"loss_args": {"memory_bank_size": [64, 8]}}, r"memory_bank_size: .*expected 0, got \[64, 8\]"),
    ],
)
def test_bad_arguments_fail_clearly(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create("lightly", **kwargs)


def test_features_that_do_not_fit_fail_clearly():
    obj = create("lightly", loss="BarlowTwinsLoss", views=["image", "audio"])
    features = {"image": Features(torch.randn(6, 8)), "audio": Features(torch.randn(6, 5))}
    with pytest.raises(ValueError, match=r"views 'image' and 'audio' must give .* got \[6, 8\] and \[6, 5\]"):
        obj(features)
    with pytest.raises(ValueError, match=r"objective lightly needs view 'audio', features have views \['image'\]"):
        create("lightly", views=["image", "audio"])({"image": Features(torch.randn(6, 8))})


def test_importing_the_objectives_does_not_import_lightly():
    code = "import sys, multiview.objectives; assert 'lightly' not in sys.modules, 'lightly imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


# --------------------------------------------------------------------------------------------- two processes


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    return run_two_processes(WORKER, tmp_path_factory.mktemp("ddp_lightly"))


def _assert_ddp_matches(results, kind, reference):
    single = results[0]["single"][reference]
    ranks = [r["ddp"][kind] for r in results]
    assert results[0]["world"] == 2
    for step in range(len(single["loss"])):
        mean_loss = sum(r["loss"][step] for r in ranks) / 2
        torch.testing.assert_close(mean_loss, single["loss"][step], rtol=1e-5, atol=1e-6, msg=f"{kind} loss")
        for name, want in single["grads"][step].items():
            for r in ranks:
                torch.testing.assert_close(r["grads"][step][name], want, rtol=1e-5, atol=1e-6, msg=f"{kind} {name}")


@pytest.mark.distributed
@pytest.mark.parametrize("kind", ["ntxent", "dcl", "directclr", "vicreg", "negcos"])
def test_two_processes_match_one_on_the_global_batch(ddp_results, kind):
    _assert_ddp_matches(ddp_results, kind, kind)
    ranks = [r["ddp"][kind]["loss"][0] for r in ddp_results]
    assert not torch.equal(ranks[0], ranks[1])  # each process scores its own rows


@pytest.mark.distributed
def test_two_process_barlow_twins_standardises_each_process_on_its_own(ddp_results):
    """lightly's Barlow Twins averages the cross-correlation over processes but standardises per process: it matches
    (value and gradients) the one-process loss with each half standardised apart, not the global-batch loss."""
    _assert_ddp_matches(ddp_results, "barlow", "barlow_per_chunk")
    ranks = [r["ddp"]["barlow"]["loss"][0] for r in ddp_results]
    torch.testing.assert_close(ranks[0], ranks[1])  # one all-reduced matrix: the same loss everywhere
    assert not torch.allclose(ranks[0], ddp_results[0]["single"]["barlow"]["loss"][0], rtol=1e-3)


@pytest.mark.distributed
def test_two_process_dclw_weights_each_process_on_its_own(ddp_results):
    """DCLW gathers its negatives, but its positives' von Mises-Fisher weights are a softmax over each process's
    rows (``2 - B * softmax``): the mean of the per-process losses is not the global-batch loss (documented)."""
    mean_loss = sum(r["ddp"]["dclw"]["loss"][0] for r in ddp_results) / 2
    assert not torch.allclose(mean_loss, ddp_results[0]["single"]["dclw"]["loss"][0], rtol=1e-4)


def test_per_chunk_barlow_reference_is_lightlys_loss_with_one_chunk():
    sys.path.insert(0, str(WORKER.parent))
    try:
        from _ddp_lightly_worker import barlow_per_chunk
    finally:
        sys.path.remove(str(WORKER.parent))
    features = pair(b=12)
    a, b = features["image"].global_.detach(), features["audio"].global_.detach()
    torch.testing.assert_close(barlow_per_chunk(a, b, 1, 0.01), lightly_losses.BarlowTwinsLoss(0.01)(a, b))


# --------------------------------------------------------------------------------------------- training from a recipe


@pytest.fixture(scope="module")
def cross_modal_shards(tmp_path_factory):
    """Two "modalities" of one latent: a 12-d and a 6-d vector (different encoders, one embedding size)."""
    from multiview.data import write_dataset

    rng = np.random.default_rng(0)
    z = rng.normal(size=(192, 4)).astype(np.float32)
    a = (z @ rng.normal(size=(4, 12)) + 0.1 * rng.normal(size=(192, 12))).astype(np.float32)
    b = (z @ rng.normal(size=(4, 6)) + 0.1 * rng.normal(size=(192, 6))).astype(np.float32)
    samples = [
        {"__key__": f"s{i:04d}", "a.npy": a[i], "b.npy": b[i], "label.cls": int(z[i, 0] > 0)} for i in range(192)
    ]
    root = tmp_path_factory.mktemp("shards") / "cross"
    write_dataset(root, {"train": samples}, builder="test-lightly", maxcount=100)
    return root


@pytest.mark.parametrize("loss, loss_args", [("NTXentLoss", {"temperature": 0.2}), ("VICRegLoss", {})])
def test_pretrain_from_a_recipe(cross_modal_shards, tmp_path, loss, loss_args):
    from multiview.train.loop import pretrain
    from multiview.train.metrics_log import read_metrics
    from multiview.train.recipe import validate_recipe

    mlp = {"kind": "mlp", "hidden": [32], "out_dim": 16, "norm": "none", "input_norm": False}
    recipe = {
        "name": "tiny_lightly",
        "data": {"path": str(cross_modal_shards), "split": "train", "keep": ["label"], "shuffle": True},
        "views": {"name": "fields", "fields": {"a": {"name": "vector", "noise": 0.1}, "b": {"name": "vector"}}},
        "encoders": {"a": {**mlp, "in_dim": 12}, "b": {**mlp, "in_dim": 6}},
        "objectives": [{"name": "lightly", "loss": loss, "loss_args": loss_args, "views": ["a", "b"]}],
        "optimizer": {"name": "adam", "lr": 3e-3},
        "schedule": {"name": "constant", "warmup_steps": 0},
        "train": {"batch_size": 32, "steps": 12, "seed": 0},
        "checkpoint": {"every": 0, "keep": 1},
        "log": {"every": 1, "dir": str(tmp_path), "progress": False},
    }
    summary = pretrain(validate_recipe(recipe))
    records = read_metrics(summary.run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 13))
    assert {"loss", "lightly/loss", "lightly/cos_a_b"} <= set(records[0])
    first, last = records[0]["loss"], sum(r["loss"] for r in records[-3:]) / 3
    assert last < first, (loss, first, last)  # the shared latent is easy: the loss must drop
    assert records[-1]["lightly/cos_a_b"] > records[0]["lightly/cos_a_b"]  # the paired embeddings align
