"""End-to-end pretraining of every objective through the shipped tiny recipes, on shard sets written here.

Each test loads ``recipes/tiny_<objective>.yaml`` (validated, with ``key=value`` overrides that point it at a
shard set this module writes in a tmp dir), runs :class:`multiview.train.loop.Trainer` for a few steps and checks
what would break if the loop, the recipe or the objective were wrong: every player's parameters move, the extra
players (DIM's prior discriminator, CMI's discriminators) are owned by their own optimisers only, the memory bank
moves exactly at the indices the batches carried, weighted objectives add up, and the logged metrics exist.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from multiview.data import write_dataset
from multiview.eval.load import load_for_eval
from multiview.train.loop import Trainer
from multiview.train.metrics_log import read_metrics
from multiview.train.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"

# --------------------------------------------------------------------------------------------- shard sets


def fashion_like(n: int, seed: int = 0) -> list[dict]:
    """Grey 28x28 images like Fashion-MNIST: a bright bar whose orientation is the label (4 classes), jittered."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        label = int(rng.integers(4))
        img = rng.integers(0, 40, size=(28, 28)).astype(np.uint8)
        r, c = rng.integers(6, 22, size=2)
        if label == 0:
            img[r - 2 : r + 2, 4:24] = 220
        elif label == 1:
            img[4:24, c - 2 : c + 2] = 220
        elif label == 2:
            img[r - 5 : r + 5, c - 5 : c + 5] = 220
        else:
            np.fill_diagonal(img[2:26, 2:26], 255)
        samples.append({"__key__": f"f{i:04d}", "image.png": img, "label.cls": label})
    return samples


PALETTE = np.array(
    [[230, 30, 30], [30, 200, 30], [40, 40, 230], [230, 230, 30], [230, 30, 230], [30, 230, 230], [250, 140, 0],
     [240, 240, 240]],
    dtype=np.uint8,
)  # fmt: skip


def scenes_like(n: int, seed: int = 0) -> list[dict]:
    """RGB 40x40 "camera" images of one object with two independent attributes: shape (5) and colour (8)."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        shape, colour = int(rng.integers(5)), int(rng.integers(8))
        mask = np.zeros((40, 40), dtype=bool)
        r, c = rng.integers(12, 28, size=2)
        if shape == 0:
            mask[r - 7 : r + 7, c - 7 : c + 7] = True
        elif shape == 1:
            mask[r - 3 : r + 3, c - 10 : c + 10] = True
        elif shape == 2:
            mask[r - 10 : r + 10, c - 3 : c + 3] = True
        elif shape == 3:
            mask[r - 2 : r + 2, c - 9 : c + 9] = mask[r - 9 : r + 9, c - 2 : c + 2] = True
        else:
            yy, xx = np.mgrid[:40, :40]
            mask = (yy - r) ** 2 + (xx - c) ** 2 <= 64
        img = rng.integers(0, 30, size=(40, 40, 3)).astype(np.uint8)
        img[mask] = PALETTE[colour]
        samples.append({"__key__": f"c{i:04d}", "cam0.png": img, "label.cls": shape, "colour.cls": colour})
    return samples


def mfeat_like(n: int, seed: int = 0) -> list[dict]:
    """The three tiny_cmc views (pix 240, fac 216, kar 64) as noisy linear maps of one shared latent, plus
    ``index.cls``: each sample's position in the split, which the CMC memory bank reads through data.keep."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 6)).astype(np.float32)
    views = {}
    for name, dim in (("pix", 240), ("fac", 216), ("kar", 64)):
        views[name] = (z @ rng.normal(size=(6, dim)) + 0.1 * rng.normal(size=(n, dim))).astype(np.float32)
    return [
        {"__key__": f"m{i:04d}", **{f"{k}.npy": v[i] for k, v in views.items()}, "label.cls": int(np.argmax(z[i, :4])),
         "index.cls": i}
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def shard_sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e_shards")
    sets = {"fashion": fashion_like(48), "scenes": scenes_like(48), "mfeat": mfeat_like(96)}
    for name, samples in sets.items():
        write_dataset(root / name, {"train": samples, "test": samples[:8]}, builder=f"test-{name}", maxcount=40)
    return {name: root / name for name in sets}


# -------------------------------------------------------------------------------------------------- helpers


def tiny(name: str, shards: Path, run_dir: Path, *overrides: str):
    """recipes/<name>.yaml pointed at ``shards``, batch 16, a few steps, no progress bar, one checkpoint."""
    base = [
        f"data.path={shards}",
        f"log.dir={run_dir}",
        "log.progress=false",
        "log.every=1",
        "checkpoint.every=0",
        "train.batch_size=16",
        "train.steps=4",
    ]
    return load_recipe(RECIPES / f"{name}.yaml", [*base, *overrides])


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def unchanged(trainer: Trainer, prefix: str = "") -> list[str]:
    """Names of the model's parameters under ``prefix`` that are exactly as before training."""
    return [
        name
        for name, p in trainer.core.named_parameters()
        if name.startswith(prefix) and torch.equal(p.detach(), trainer.before[name])
    ]


def optimiser_ids(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def fit(recipe) -> tuple[Trainer, list[dict]]:
    """Train; returns the trainer and the logged records (one per step), all of whose losses are finite."""
    trainer = Trainer(recipe)
    trainer.before = snapshot(trainer.core)
    summary = trainer.fit()
    records = read_metrics(summary.run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, recipe.train.steps + 1))
    for record in records:
        bad = {k: v for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)}
        assert not bad, (record["step"], bad)
    return trainer, records


def assert_own_optimiser(trainer: Trainer, module: torch.nn.Module, aux_name: str) -> None:
    """The extra player is trained by its own optimiser and never by the main one."""
    ids = {id(p) for p in module.parameters()}
    assert ids and not ids & optimiser_ids(trainer.optimizer), "the main optimiser owns an auxiliary player"
    assert ids == optimiser_ids(trainer.aux_optimizers[aux_name])


# ---------------------------------------------------------------------------------------------------- tests


def test_dim_trains_encoder_critics_and_its_prior_discriminator(shard_sets, tmp_path):
    recipe = tiny("tiny_dim", shard_sets["fashion"], tmp_path, "train.steps=8")
    trainer, records = fit(recipe)
    dim = trainer.core.objectives["dim"]
    assert_own_optimiser(trainer, dim.prior, "dim/prior")
    # every player moved: the encoder, the local and global critics, and (in its own step) the prior discriminator
    assert not unchanged(trainer)
    assert {"dim/loss", "dim/local_mi", "dim/global_mi", "dim/prior", "dim/prior/loss"} <= set(records[0])
    first, last = records[0]["dim/loss"], np.mean([r["dim/loss"] for r in records[-3:]])
    assert last < first, [r["dim/loss"] for r in records]


def test_dim_prior_moves_only_in_its_own_step(shard_sets, tmp_path):
    """With the prior's learning rate at 0 the main step (lr 1e-3) must leave it exactly as it was: the encoder's
    prior term goes through the discriminator frozen, so no main-step gradient or update reaches it."""
    recipe = tiny("tiny_dim", shard_sets["fashion"], tmp_path, "objectives.0.prior_lr=0.0", "train.steps=2")
    trainer, records = fit(recipe)
    prior_names = {f"objectives.dim.prior.{n}" for n, _ in trainer.core.objectives["dim"].prior.named_parameters()}
    assert set(unchanged(trainer)) == prior_names
    assert records[-1]["dim/prior/loss"] > 0


def test_amdim_trains_trunk_and_heads_on_all_three_tasks(shard_sets, tmp_path):
    recipe = tiny("tiny_amdim", shard_sets["fashion"], tmp_path)
    trainer, records = fit(recipe)
    assert not unchanged(trainer)
    assert not trainer.core.auxiliary_steps()
    expected = {f"amdim/{kind}_{task}" for kind in ("mi", "loss") for task in ("1t5", "1t7", "5t5")}
    assert expected | {"amdim/reg", "amdim/loss"} <= set(records[0])
    # the total is the three task losses plus half the summed regularisers, as logged
    r = records[-1]
    parts = r["amdim/loss_1t5"] + r["amdim/loss_1t7"] + r["amdim/loss_5t5"] + r["amdim/reg"]
    assert r["amdim/loss"] == pytest.approx(parts, rel=1e-4)
    assert int(trainer.core.objectives["amdim"].step) == recipe.train.steps  # 5->5 locations change per step


def test_cmc_in_batch_learns_the_shared_latent(shard_sets, tmp_path):
    recipe = tiny("tiny_cmc", shard_sets["mfeat"], tmp_path, "train.steps=12", "optimizer.lr=3.0e-3")
    trainer, records = fit(recipe)
    assert not unchanged(trainer)
    pairs = [("pix", "fac"), ("pix", "kar"), ("fac", "kar")]
    assert {f"cmc/mi_{a}_{b}" for a, b in pairs} | {f"cmc/mi_{b}_{a}" for a, b in pairs} <= set(records[0])
    first, last = records[0]["loss"], np.mean([r["loss"] for r in records[-3:]])
    assert last < first - 0.5, [r["loss"] for r in records]


def test_cmc_pair_heads_train_and_retrieval_gets_them_by_field(shard_sets, tmp_path):
    heads = ["objectives.0.pair_heads=true", "objectives.0.feature_dim=32", "objectives.0.head_dim=16"]
    recipe = tiny("tiny_cmc", shard_sets["mfeat"], tmp_path, "train.steps=12", "optimizer.lr=3.0e-3", *heads)
    trainer = Trainer(recipe)
    trainer.before = snapshot(trainer.core)
    summary = trainer.fit()
    assert not unchanged(trainer)  # encoders and every pair head moved
    records = read_metrics(summary.run_dir / "metrics.jsonl")
    assert np.mean([r["loss"] for r in records[-3:]]) < records[0]["loss"] - 0.5
    bundle = load_for_eval(summary.final_checkpoint)
    fields = ("pix", "fac", "kar")
    assert sorted(bundle.pair_heads) == sorted((a, b) for a in fields for b in fields if a != b)
    model_heads = trainer.core.objectives["cmc"].heads
    x = torch.randn(5, 32)
    assert torch.allclose(bundle.pair_heads[("kar", "pix")](x), x @ model_heads.weight[1, 1] + model_heads.bias[1, 1])
    qa, gb = bundle.project_pair("pix", "kar", torch.randn(7, 32), torch.randn(7, 32))
    assert qa.shape == gb.shape == (7, 16)


def test_cmc_memory_bank_moves_exactly_the_rows_the_batches_index(shard_sets, tmp_path):
    bank = [
        "objectives.0.negatives=bank",
        "objectives.0.bank_size=96",
        "objectives.0.num_negatives=32",
        "objectives.0.feature_dim=32",
        "objectives.0.index_key=index",
        "data.keep=[label, index]",
        "train.steps=3",
    ]
    recipe = tiny("tiny_cmc", shard_sets["mfeat"], tmp_path, *bank)
    trainer = Trainer(recipe)
    cmc = trainer.core.objectives["cmc"]
    bank_before = cmc.bank.clone()
    seen: list[int] = []
    original = trainer._micro_step

    def record_indices(batch):
        seen.extend(batch["index"].tolist())
        return original(batch)

    trainer._micro_step = record_indices
    summary = trainer.fit()
    records = read_metrics(summary.run_dir / "metrics.jsonl")
    assert len(seen) == 3 * 16 and len(set(seen)) == len(seen)  # one epoch of 96: no repeats in 3 batches
    moved = (cmc.bank != bank_before).any(dim=2)  # [views, N]
    for v in range(3):
        assert sorted(torch.nonzero(moved[v]).flatten().tolist()) == sorted(seen)
    assert torch.allclose(cmc.bank[:, seen].norm(dim=2), torch.ones(3, len(seen)))  # updated rows re-normalised
    off_diagonal = ~torch.eye(3, dtype=torch.bool)
    assert torch.isfinite(cmc.log_z[off_diagonal]).all()  # Z set on the first batch for each ordered pair of views
    assert {"cmc/acc_pix_fac", "cmc/acc_kar_fac", "cmc/loss"} <= set(records[0])
    assert all(math.isfinite(r["loss"]) for r in records)


def test_cmc_memory_bank_without_an_index_names_the_missing_key(shard_sets, tmp_path):
    recipe = tiny(
        "tiny_cmc", shard_sets["mfeat"], tmp_path, "objectives.0.negatives=bank", "objectives.0.bank_size=96",
        "objectives.0.num_negatives=32", "objectives.0.feature_dim=32", "train.steps=1",
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"needs batch\['index'\]"):
        Trainer(recipe).fit()


def test_cmi_trains_heads_encoder_and_its_discriminators(shard_sets, tmp_path):
    recipe = tiny("tiny_cmi", shard_sets["scenes"], tmp_path)
    trainer, records = fit(recipe)
    cmi = trainer.core.objectives["cmi"]
    assert_own_optimiser(trainer, cmi.discriminators, "cmi/discriminators")
    assert not unchanged(trainer)  # encoder, heads, and both discriminators
    expected = {"cmi/loss", "cmi/adversarial", "cmi/acc_label", "cmi/acc_colour", "cmi/discriminators/loss"}
    assert expected <= set(records[0])


def test_weighted_cmc_plus_cmi_sums_both_and_steps_the_discriminators(shard_sets, tmp_path):
    combo = [
        "views.fields.cam0.n_views=2",
        "objectives=[{name: cmc, weight: 1.0, views: [cam00, cam01], temperature: 0.2},"
        " {name: cmi, weight: 0.5, args: {view: cam00, splits: [8, 8], attributes: [label, colour],"
        " num_values: [5, 8], weight: 1.0, task_weight: 0.0, hidden: [32, 32]}}]",
    ]
    recipe = tiny("tiny_cmi", shard_sets["scenes"], tmp_path, *combo)
    trainer, records = fit(recipe)
    assert_own_optimiser(trainer, trainer.core.objectives["cmi"].discriminators, "cmi/discriminators")
    assert not unchanged(trainer, "encoders.") and not unchanged(trainer, "objectives.cmi.discriminators.")
    for r in records:
        assert r["loss"] == pytest.approx(r["cmc/loss"] + 0.5 * r["cmi/loss"], rel=1e-5)
    assert {"cmc/mi_cam00_cam01", "cmi/adversarial", "cmi/discriminators/loss"} <= set(records[0])
