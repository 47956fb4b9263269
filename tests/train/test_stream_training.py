"""Training from streamed shards: exact resume mid-epoch, shards over HTTP, foreign field names mapped by a recipe."""

from __future__ import annotations

import shutil

import pytest

from multiview.train.loop import Trainer
from multiview.train.metrics_log import read_metrics
from multiview.train.recipe import validate_recipe


def streamed(recipe: dict, path, **data) -> dict:
    recipe["data"] = {**recipe["data"], "path": path, "mode": "stream", "num_workers": 2, "shuffle_buffer": 40, **data}
    return recipe


def losses(summary_or_dir) -> list[float]:
    run_dir = getattr(summary_or_dir, "run_dir", summary_or_dir)
    return [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl")]


def test_a_streamed_run_resumed_mid_epoch_has_the_losses_of_an_uninterrupted_one(vector_shards, tmp_path, tiny_recipe):
    foreign = shutil.copytree(vector_shards, tmp_path / "foreign")
    (foreign / "manifest.json").unlink()  # no counts: the epoch is fixed by data.epoch_size
    full = Trainer(validate_recipe(streamed(tiny_recipe(foreign, tmp_path / "full", steps=12), str(foreign),
                                            epoch_size=256))).fit()  # fmt: skip
    recipe = validate_recipe(streamed(tiny_recipe(foreign, tmp_path / "parts", steps=12), str(foreign), epoch_size=256))
    Trainer(recipe).fit(stop_after=5)  # mid-epoch: 8 steps per epoch
    resumed = Trainer(recipe).fit(resume="latest")
    records = read_metrics(resumed.run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 13))
    assert [r["loss"] for r in records] == pytest.approx(losses(full), rel=1e-5, abs=1e-6)


def test_training_streams_our_shards_over_http(vector_shards, tmp_path, tiny_recipe, http_server):
    for path in vector_shards.iterdir():
        http_server.put(path.name, path)
    recipe = streamed(tiny_recipe(vector_shards, tmp_path, steps=10), http_server.url + "/")
    summary = Trainer(validate_recipe(recipe)).fit()
    assert summary.steps == 10 and len(losses(summary)) == 10
    indexed = Trainer(validate_recipe(tiny_recipe(vector_shards, tmp_path / "indexed", steps=10))).fit()
    assert losses(summary)[-1] < losses(summary)[0] and losses(indexed)[-1] < losses(indexed)[0]


def test_shards_without_counts_and_without_epoch_size_say_how_to_fix_it(vector_shards, tmp_path, tiny_recipe):
    foreign = shutil.copytree(vector_shards, tmp_path / "foreign")
    (foreign / "manifest.json").unlink()
    with pytest.raises(TypeError, match="shards index.*epoch_size"):
        Trainer(validate_recipe(streamed(tiny_recipe(foreign, tmp_path, steps=4), str(foreign))))
