"""Recipe loading: extends, overrides, and an error for every bad-recipe path naming key, file and line."""

from __future__ import annotations

import pytest
from recipe_helpers import error_of, write  # tests/train is on sys.path (pytest prepend mode)

from multiview.train.recipe import RecipeError, load_recipe, validate_recipe

BASE = """\
name: tiny
data:
  path: shards/x
views: {name: amdim, size: 32}
encoders:
  image: {kind: timm, model_name: test_resnet}
objectives:
  - {name: cmc, weight: 0.5, temperature: 0.1}
train:
  steps: 10
  batch_size: 8
"""


def test_short_forms_and_overrides(tmp_path):
    recipe = load_recipe(write(tmp_path, "r.yaml", BASE), ["optimizer.lr=3e-4", "train.precision=bf16"])
    assert recipe.views.name == "amdim" and recipe.views.args == {"size": 32}
    assert recipe.encoders["image"].name == "timm"
    assert recipe.encoders["image"].args == {"model_name": "test_resnet"}
    assert recipe.objectives[0].weight == 0.5 and recipe.objectives[0].args == {"temperature": 0.1}
    assert recipe.optimizer.lr == pytest.approx(3e-4)
    assert recipe.train.precision == "bf16"


def test_extends_merges_mappings(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nname: child\ntrain:\n  steps: 99\n")
    recipe = load_recipe(child)
    assert recipe.name == "child" and recipe.train.steps == 99 and recipe.train.batch_size == 8


def test_wrong_type_names_file_line_and_key(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", "extends: base.yaml\ntrain:\n  batch_size: lots\n")
    message = error_of(child)
    assert f"{child}:3" in message and "train.batch_size" in message
    assert "expected int" in message and "'lots'" in message


def test_unknown_key_lists_expected(tmp_path):
    path = write(tmp_path, "r.yaml", BASE + "optimizer:\n  lrr: 0.1\n")
    message = error_of(path)
    assert f"{path}:13" in message and "optimizer.lrr" in message and "expected one of: name, lr" in message


def test_unknown_key_from_command_line(tmp_path):
    message = error_of(write(tmp_path, "r.yaml", BASE), ["train.bach_size=3"])
    assert "command line (train.bach_size=3)" in message and "unknown key 'bach_size'" in message


def test_missing_required_key(tmp_path):
    path = write(tmp_path, "r.yaml", BASE.replace("data:\n  path: shards/x\n", "data:\n  split: train\n"))
    message = error_of(path)
    assert "data.path" in message and "missing required key" in message and str(path) in message


def test_bad_literal(tmp_path):
    message = error_of(write(tmp_path, "r.yaml", BASE), ["train.precision=fp8"])
    assert "train.precision" in message and "'no' | 'bf16' | 'fp16'" in message and "'fp8'" in message


def test_steps_xor_epochs(tmp_path):
    message = error_of(write(tmp_path, "r.yaml", BASE), ["train.epochs=2"])
    assert "exactly one of train.steps and train.epochs" in message


def test_non_positive_batch(tmp_path):
    message = error_of(write(tmp_path, "r.yaml", BASE), ["train.batch_size=0"])
    assert "train.batch_size" in message and "positive" in message


def test_missing_file_and_bad_yaml(tmp_path):
    assert "recipe not found" in error_of(tmp_path / "nope.yaml")
    assert "not valid YAML" in error_of(write(tmp_path, "bad.yaml", "name: [unclosed\n"))


def test_override_syntax(tmp_path):
    assert "key=value" in error_of(write(tmp_path, "r.yaml", BASE), ["train.steps"])


def test_extends_cycle(tmp_path):
    a = write(tmp_path, "a.yaml", "extends: b.yaml\n")
    write(tmp_path, "b.yaml", "extends: a.yaml\n")
    assert "extends itself" in error_of(a)


def test_duplicate_key(tmp_path):
    message = error_of(write(tmp_path, "r.yaml", BASE + "name: again\n"))
    assert "appears twice" in message


def test_validate_plain_dict_names_saved_recipe():
    with pytest.raises(RecipeError, match="<recipe>: name: expected str"):
        validate_recipe({"name": 3, "data": {"path": "x"}, "views": {"name": "a"}, "encoders": {}, "objectives": []})


def test_override_into_a_list_by_index(tmp_path):
    path = write(tmp_path, "r.yaml", BASE)
    recipe = load_recipe(path, ["objectives.0.temperature=0.3", "encoders.image.model_name=test_vit"])
    assert recipe.objectives[0].args == {"temperature": 0.3}
    assert recipe.encoders["image"].args["model_name"] == "test_vit"
    recipe = load_recipe(path, ["objectives.0.args.temperature=0.4"])  # explicit args win over the short form
    assert recipe.objectives[0].args == {"temperature": 0.4}
    message = error_of(path, ["objectives.2.weight=1"])
    assert "objectives is a list of 1; '2' is not an index" in message


def test_cli_overrides_after_options(capsys):
    from multiview.cli import main

    assert main(["pretrain", "tiny_cmc", "--dry-run", "train.steps=3", "optimizer.lr=0.5"]) == 0
    out = capsys.readouterr().out
    assert "steps: 3" in out and "lr: 0.5" in out
    with pytest.raises(SystemExit):
        main(["pretrain", "tiny_cmc", "--dry-run", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_eval_entries_take_probe_features_and_check_them(tmp_path):
    path = write(tmp_path, "r.yaml", BASE + "eval:\n  - {kind: linear, features: maps, grid: 3}\n")
    entry = load_recipe(path).eval[0]
    assert (entry.features, entry.grid) == ("maps", 3)
    assert load_recipe(write(tmp_path, "g.yaml", BASE + "eval:\n  - {kind: knn}\n")).eval[0].features == "global"
    message = error_of(path, ["eval.0.features=pixels"])
    expected = "expected one of 'global' | 'maps' | 'trunk' | 'trunk_maps' | 'maps7', got 'pixels'"
    assert f"command line (eval.0.features=pixels): eval[0].features: {expected}" in message
    in_file = write(tmp_path, "f.yaml", BASE + "eval:\n  - {kind: linear, features: pixels}\n")
    assert f"{in_file}:13: eval[0].features: {expected}" in error_of(in_file)
    assert "eval[0].grid: expected a positive integer, got 0" in error_of(path, ["eval.0.grid=0"])
