"""Issue 14 item 4: every bad recipe value is a RecipeError naming the key, the file and line, the value seen and
what was expected -- never a traceback, never a silent acceptance, never a hang."""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from recipe_helpers import error_of
from recipe_helpers import write as write_recipe

from multiview.train.recipe import RecipeError, load_recipe

# fields/vector views and MLP encoders: building the components on CPU takes milliseconds
BASE = """\
name: tiny
data:
  path: shards/x
  keep: [label]
views:
  name: fields
  fields:
    a: {name: vector, noise: 0.1}
    b: {name: vector}
encoders:
  a: {kind: mlp, in_dim: 12, hidden: [32], out_dim: 16}
  b: {kind: mlp, in_dim: 12, hidden: [32], out_dim: 16}
objectives:
  - {name: cmc, views: [a, b], temperature: 0.1}
train:
  steps: 10
  batch_size: 8
"""
OBJECTIVE_LINE = 14  # the "- {name: cmc, ...}" line of BASE
TRAIN_LINE = 15


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    return write_recipe(tmp_path, name, text)


@contextmanager
def within(seconds: float):
    """Fail (instead of hanging the suite) when the body runs longer than ``seconds``."""

    def alarm(*_):
        raise TimeoutError(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------ values accepted silently before


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("train.grad_clip=-1", "train.grad_clip", "expected a positive number (the max gradient norm) or null"),
        ("train.grad_clip=0", "train.grad_clip", "expected a positive number (the max gradient norm) or null"),
        ("checkpoint.every=-1", "checkpoint.every", "expected an integer >= 0 (0: only at the end)"),
        ("train.threads=0", "train.threads", "expected a positive integer or null"),
        ("train.steps=0", "train.steps", "expected a positive integer"),
        ("train.epochs=0", "train.epochs", "expected a positive integer"),
        ("train.seed=-5", "train.seed", "expected an integer in [0, 2**32 - 1]"),
        ("data.num_workers=-1", "data.num_workers", "expected an integer >= 0"),
        ("optimizer.lr=.nan", "optimizer.lr", "expected a positive finite number"),
        ("optimizer.betas=[0.9]", "optimizer.betas", "expected two numbers in [0, 1)"),
        ("optimizer.weight_decay=-0.1", "optimizer.weight_decay", "expected a finite number >= 0"),
        ("schedule.warmup_steps=-1", "schedule.warmup_steps", "expected an integer >= 0"),
        ("schedule.min_lr_ratio=2", "schedule.min_lr_ratio", "expected a number in [0, 1]"),
        ("objectives.0.weight=-1", "objectives[0].weight", "expected a finite number >= 0"),
        ("train.batch_size=9", "train.batch_size", "divisible by train.grad_accum"),
    ],
)
def test_bad_numbers_name_key_value_and_expectation(tmp_path, override, key, expected):
    overrides = [override, "train.grad_accum=2"] if key == "train.batch_size" else [override]
    if key == "train.epochs":
        overrides = ["train.steps=null", override]
    message = error_of(write(tmp_path, BASE), overrides)
    value = override.partition("=")[2]
    assert f"command line ({override}): {key}: " in message, message
    assert expected in message and value.lstrip(".") in message, message


def test_bad_number_in_the_file_names_its_line(tmp_path):
    path = write(tmp_path, BASE.replace("  batch_size: 8\n", "  batch_size: 8\n  grad_clip: -1\n"))
    message = error_of(path)
    assert f"{path}:{TRAIN_LINE + 3}: train.grad_clip: expected a positive number" in message and "-1" in message
    path = write(tmp_path, BASE + "checkpoint: {every: -1}\n", "c.yaml")
    assert f"{path}:{TRAIN_LINE + 3}: checkpoint.every:" in error_of(path)


def test_zero_and_null_keep_their_documented_meaning(tmp_path):
    recipe = load_recipe(write(tmp_path, BASE), ["checkpoint.every=0", "train.grad_clip=null", "train.threads=null"])
    assert (recipe.checkpoint.every, recipe.train.grad_clip, recipe.train.threads) == (0, None, None)


# ------------------------------------------------------------------------ YAML: numbers, errors, encoding


def test_exponent_floats_are_floats_everywhere(tmp_path):
    """YAML 1.1 reads 7e-2 (no dot) as a string; recipes read it as the number it looks like, as YAML 1.2 does."""
    text = BASE.replace("temperature: 0.1", "temperature: 7e-2") + "optimizer: {lr: 3E-4}\n"
    recipe = load_recipe(write(tmp_path, text), ["objectives.0.momentum=5e-1"])
    assert recipe.objectives[0].args["temperature"] == pytest.approx(0.07)
    assert recipe.objectives[0].args["momentum"] == pytest.approx(0.5)
    assert recipe.optimizer.lr == pytest.approx(3e-4)
    quoted = load_recipe(write(tmp_path, BASE.replace("path: shards/x", 'path: "1e5"'), "q.yaml"))
    assert quoted.data.path == "1e5"  # quoted stays a string


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("name: [unclosed\n", 2, "while parsing a flow sequence"),
        ("name: x\n  bad: indent\n", 2, "mapping values are not allowed here"),
        ("name: !!python/object:os.system x\n", 1, "could not determine a constructor"),
        ("a: 1\n---\nb: 2\n", 2, "expected a single document"),
        ("name: !!float ''\n", 1, "not a valid YAML value: '' tagged 'tag:yaml.org,2002:float'"),
        ("name: !!timestamp x\n", 1, "not a valid YAML value: 'x' tagged 'tag:yaml.org,2002:timestamp'"),
        ("name: !!set {a, b}\n", 1, "YAML tag 'tag:yaml.org,2002:set' is not supported"),
        ("name: x\n<<: {a: 1}\n", 2, "merge keys (<<) are not supported"),
        ("name: x\nkey: \x07bell\n", 2, "control characters are not allowed"),
    ],
)
def test_yaml_errors_name_the_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    message = error_of(path)
    assert message.startswith(f"{path}:{line}:"), message
    assert what in message and "<unicode string>" not in message, message


def test_non_utf8_bytes_name_the_line_and_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(BASE.encode() + "description: caf\xe9\n".encode("latin-1"))
    message = error_of(path)
    assert message.startswith(f"{path}:18:") and "not UTF-8" in message and "0xe9" in message


def test_recursive_alias_is_refused(tmp_path):
    path = write(tmp_path, BASE + "description: &a [*a]\n")
    message = error_of(path)
    assert f"{path}:18:" in message and "refers to itself" in message


def test_exponential_aliases_are_refused_quickly(tmp_path):
    """Nine levels of nine aliases: 9**9 nodes once expanded. Before, 314 bytes like these took 29.5 s."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = write(tmp_path, BASE + "\n".join(lines) + "\n")
    start = time.perf_counter()
    with within(10):
        message = error_of(path)
    assert time.perf_counter() - start < 2
    assert str(path) in message and "aliases expand to more than" in message


def test_a_few_aliases_still_work(tmp_path):
    text = BASE.replace(
        "    a: {name: vector, noise: 0.1}\n    b: {name: vector}\n",
        "    a: &v {name: vector, noise: 0.1}\n    b: *v\n",
    )
    recipe = load_recipe(write(tmp_path, text))
    assert recipe.views.args["fields"]["b"] == {"name": "vector", "noise": 0.1}


def test_deep_nesting_is_refused(tmp_path):
    path = write(tmp_path, BASE + "description: " + "[" * 3000 + "]" * 3000 + "\n")
    message = error_of(path)
    assert str(path) in message and "nested deeper than" in message


def test_huge_recipe_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(BASE + "description: [" + ",".join(["1"] * 600_000) + "]\n")
    with within(5):
        message = error_of(path)
    assert f"{path}: the recipe is 1,2" in message and "expected at most 1,000,000" in message


def test_override_values_use_the_same_yaml_rules():
    message = error_of(Path("recipes/tiny_cmc.yaml"), ["description=&a [*a]"])
    assert "command line (description=&a [*a])" in message and "refers to itself" in message


# ------------------------------------------------------------------------ extends and shapes


@pytest.mark.parametrize("parent", [".", "''", "x" * 5000, "/", '"nul\\0byte"', "[a.yaml]"])
def test_bad_extends_names_its_line(tmp_path, parent):
    path = write(tmp_path, f"name: x\nextends: {parent}\n")
    message = error_of(path)
    assert message.startswith(f"{path}:2: extends:"), message
    assert "expected" in message or "not found" in message, message


def test_encoder_that_is_not_a_mapping(tmp_path):
    path = write(tmp_path, BASE.replace("  b: {kind: mlp, in_dim: 12, hidden: [32], out_dim: 16}\n", "  b: 5\n"))
    message = error_of(path)
    assert f"{path}:12: encoders.b: expected a mapping (ComponentConfig), got 5" in message


# ------------------------------------------------------------------------ components, checked at --dry-run


def dry_run(path, *overrides) -> tuple[int, str]:
    import contextlib
    import io

    from multiview.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["pretrain", str(path), "--dry-run", *overrides])
    return code, err.getvalue()


@pytest.mark.parametrize(
    ("override", "where", "expected"),
    [
        ("views.name=nope", "views.name", "unknown view generator 'nope'"),
        ("views.fields.b.name=nope", "views.fields.b.name", "unknown view generator 'nope'"),
        ("views.fields.a.noise=-1", "views.fields.a.noise", "noise must be >= 0, got -1"),
        ("encoders.a.bogus=3", "encoders.a.bogus", "unexpected keyword argument 'bogus'"),
        ("encoders.a.kind=nope", "encoders.a.kind", "unknown encoder 'nope'"),
        ("objectives.0.bogus=1", "objectives[0].bogus", "unexpected keyword argument 'bogus'"),
        ("objectives.0.name=nope", "objectives[0].name", "unknown objective 'nope'"),
        ("objectives.0.temperature=-1", "objectives[0].temperature", "temperature: expected > 0, got -1"),
        (
            "objectives.0.views=[a,zzz]",
            "objectives[0].views",
            "needs view 'zzz'; the view generator 'fields' emits ['a', 'b']",
        ),
        ("view_to_encoder.a=nope", "view_to_encoder.a", "no encoder 'nope'"),
        ("view_to_encoder.c=a", "view_to_encoder.c", "no view 'c'; the views are ['a', 'b']"),
        ("imports=[no_such_module_xyz]", "imports", "cannot import 'no_such_module_xyz' (imports[0])"),
    ],
)
def test_dry_run_builds_components_and_names_the_recipe_line(tmp_path, override, where, expected):
    path = write(tmp_path, BASE)
    start = time.perf_counter()
    code, err = dry_run(path, override)
    assert time.perf_counter() - start < 5
    assert code == 2, err
    assert f"command line ({override}): {where}: " in err and expected in err, err


def test_dry_run_names_the_file_line_of_a_component_error(tmp_path):
    path = write(tmp_path, BASE.replace("temperature: 0.1", "temperature: 0.1, bogus: 1"))
    code, err = dry_run(path)
    assert code == 2 and f"{path}:{OBJECTIVE_LINE}: objectives[0].bogus: cannot build objective 'cmc'" in err, err
    path = write(tmp_path, BASE.replace("views: [a, b]", "views: [a, zzz]"), "v.yaml")
    code, err = dry_run(path)
    assert code == 2 and f"{path}:{OBJECTIVE_LINE}: objectives[0].views: objective 'cmc' needs view 'zzz'" in err, err
    long_form = BASE.replace(
        "- {name: cmc, views: [a, b], temperature: 0.1}",
        "- name: cmc\n    args:\n      views: [a, b]\n      temperature: -1",
    )
    path = write(tmp_path, long_form, "l.yaml")
    code, err = dry_run(path)
    assert code == 2 and f"{path}:{OBJECTIVE_LINE + 3}: objectives[0].args.temperature: cannot build" in err, err


def test_dry_run_names_a_missing_local_map(tmp_path):
    text = BASE.replace("- {name: cmc, views: [a, b], temperature: 0.1}", "- {name: dim, view: a, local: s8}")
    code, err = dry_run(write(tmp_path, text))
    assert code == 2 and "objectives[0]" in err and "'s8'" in err and "encoders.a" in err, err


def test_dry_run_accepts_the_shipped_recipes():
    for path in sorted(Path("recipes").glob("*.yaml")):
        code, err = dry_run(path)
        assert code == 0, (path, err)


def test_batch_split_over_processes(tmp_path, monkeypatch):
    from multiview.train.recipe import check_batch_split

    path = write(tmp_path, BASE)
    recipe = load_recipe(path, ["train.batch_size=6"])
    check_batch_split(recipe, 2)
    with pytest.raises(RecipeError) as info:
        check_batch_split(recipe, 4)
    message = str(info.value)
    assert "command line (train.batch_size=6): train.batch_size:" in message
    assert "6 is not divisible by processes x train.grad_accum = 4 x 1" in message
    monkeypatch.setenv("WORLD_SIZE", "4")
    code, err = dry_run(path, "train.batch_size=6")
    assert code == 2 and "4 x 1" in err, err
