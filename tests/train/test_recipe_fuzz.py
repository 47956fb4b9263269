"""Fuzz the recipe loader: every input either loads into a Recipe or raises RecipeError -- never another
exception, never more than a second.

Inputs are the shipped recipes (recipes/*.yaml) mutated three ways:

- values: a random key path of the parsed recipe gets a random value (negative, zero, huge, NaN and infinite
  numbers, number-like and empty strings, lists, mappings, nulls, booleans), or loses its key, or gains an
  unknown one; written back as YAML, sometimes with ``extends:`` to a shipped recipe;
- YAML syntax: text edits at random places (inserted YAML punctuation, anchors and aliases, tags such as
  ``!!python/object`` and ``!!binary``, merge keys, document markers, tabs, control characters, a BOM, bytes that
  are not UTF-8), deleted and duplicated lines, changed indentation, truncation;
- hostile shapes: nested alias "bombs", recursive aliases, deep nesting, long and odd ``extends:`` values.

Mix: 2/5 value, 2/5 syntax, 1/5 hostile; about half the inputs also carry random ``key=value`` overrides (the
command-line form). A second test mutates the component sections (views, encoders, objectives, view_to_encoder)
of the tiny recipes and builds them as ``--dry-run`` does: built, or a RecipeError.

Hypothesis is derandomised: EXAMPLES = 1,200 loader inputs (11-21 s on the shared 2-core machine, load 1.5-4; the
first load's plugin imports are done before timing) and COMPONENT_EXAMPLES = 400 component inputs (4-5 s).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from multiview.train.recipe import Recipe, RecipeError, load_recipe

EXAMPLES = 1200
PER_INPUT_S = 1.0
RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))
TEXTS = [p.read_text() for p in RECIPES]
DATA = [yaml.safe_load(t) for t in TEXTS]

_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


# ------------------------------------------------------------------------------------------------ strategies
scalars = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**32, 2**64, -5]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["7e-2", "1e-3", "-1", "0", "", " ", "nan", ".inf", "1_000", "0x10", "yes", "null", "~"]),
    st.text(max_size=12),
    st.none(),
    st.booleans(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=8,
)
YAML_BITS = [
    ":",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "&b [*b]",
    "!!python/object:os.system ",
    "!!binary ",
    "!!set ",
    "!!timestamp ",
    "!!int ",
    "!!float ",
    "!custom ",
    "<<: ",
    "<<: *a",
    "---\n",
    "...\n",
    "? ",
    "|",
    ">",
    '"',
    "'",
    "#",
    "%YAML 1.2\n",
    "\t",
    "\x07",
    "\x00",
    "\ufeff",
    "\x85",
    "\ud7ff",
    "\\",
    "\n",
    "  ",
    "7e-2",
    "-1",
    "nan",
    "extends: .",
    "extends: ''",
    "@",
    "`",
    "%",
]


def _paths(node, prefix=()):
    """Every key path of a parsed recipe (mappings and list indices)."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


def _set(node, path, value, action):
    for key in path[:-1]:
        node = node[key]
    last = path[-1]
    if action == "delete":
        del node[last]
    elif action == "add" and isinstance(node, dict):
        node[f"{last}_extra"] = value
    else:
        node[last] = value


@st.composite
def value_mutation(draw) -> bytes:
    import copy

    data = copy.deepcopy(draw(st.sampled_from(DATA)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        value, action = draw(values), draw(st.sampled_from(["set", "set", "set", "delete", "add"]))
        try:
            _set(data, path, value, action)
        except (KeyError, IndexError, TypeError):  # the path went away with an earlier mutation
            pass
    if draw(st.booleans()) and isinstance(data, dict):
        data["extends"] = draw(st.sampled_from([p.stem for p in RECIPES] + [".", "", "/", "x" * 5000, 5, None]))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()


@st.composite
def syntax_mutation(draw) -> bytes:
    text = draw(st.sampled_from(TEXTS))
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "insert", "delete_line", "dup_line", "indent", "replace", "truncate"]))
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "insert":
            j = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:j] + draw(st.sampled_from(YAML_BITS)) + lines[i][j:]
        elif kind == "delete_line" and len(lines) > 1:
            del lines[i]
        elif kind == "dup_line":
            lines.insert(i, lines[i])
        elif kind == "indent":
            lines[i] = " " * draw(st.integers(0, 6)) + lines[i].lstrip()
        elif kind == "replace" and lines[i]:
            j = draw(st.integers(0, len(lines[i]) - 1))
            lines[i] = lines[i][:j] + draw(st.characters(codec="utf-8")) + lines[i][j + 1 :]
        elif kind == "truncate":
            lines = lines[: i + 1]
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    raw = "\n".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 9)) == 0:  # bytes that are not UTF-8
        j = draw(st.integers(0, len(raw)))
        raw = raw[:j] + draw(st.sampled_from([b"\xe9", b"\xff\xfe", b"\xc3", b"\x80"])) + raw[j:]
    return raw


@st.composite
def hostile(draw) -> bytes:
    text = draw(st.sampled_from(TEXTS))
    kind = draw(st.sampled_from(["bomb", "recursive", "deep", "extends", "alias_ok"]))
    if kind == "bomb":
        width, depth = draw(st.integers(2, 12)), draw(st.integers(2, 12))
        lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
        lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, depth)]
        extra = "\n".join(lines)
    elif kind == "recursive":
        extra = draw(st.sampled_from(["description: &a [*a]", "data: &a {x: *a}", "views: &v {name: *v}"]))
    elif kind == "deep":
        n = draw(st.integers(10, 5000))
        extra = "description: " + draw(st.sampled_from(["[" * n + "]" * n, "{a: " * n + "1" + "}" * n]))
    elif kind == "extends":
        extra = "extends: " + draw(st.sampled_from(["x" * 5000, ".", "..", "/", "~", "'\\0'", '"a\\0b"', "[x]"]))
    else:
        extra = "description: &d hello\nname: *d"
    return (
        extra + "\n" + text if kind != "alias_ok" else text.replace("name:", "description: &d x\nname:", 1)
    ).encode()


overrides = st.lists(
    st.one_of(
        st.builds(
            lambda k, v: f"{k}={v}",
            st.sampled_from(
                [
                    "train.steps",
                    "train.grad_clip",
                    "objectives.0.temperature",
                    "objectives.9.x",
                    "data.path",
                    "encoders",
                    "train",
                    "eval.0.kind",
                    "views.name",
                    "a..b",
                    "",
                    "extends",
                ]
            ),
            st.sampled_from(["0", "-1", "7e-2", "&a [*a]", "[", "{a: 1}", "!!python/name:os.system", "", "null"]),
        ),
        st.text(max_size=20),
    ),
    max_size=2,
)


# ------------------------------------------------------------------------------------------------ the test
@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    load_recipe(RECIPES[0])  # the first load imports the evaluation plugins: not part of any input's time
    return tmp_path_factory.mktemp("recipe_fuzz")


def _load(path: Path, extra: list[str]) -> None:
    start = time.perf_counter()
    try:
        recipe = load_recipe(path, extra)
    except RecipeError as err:
        assert str(err).strip(), "an empty RecipeError"
        event("RecipeError")
    else:
        event("Recipe")
        assert isinstance(recipe, Recipe)
        assert recipe.train.steps is None or recipe.train.steps > 0
        assert recipe.optimizer.lr > 0 and math.isfinite(recipe.optimizer.lr)
    elapsed = time.perf_counter() - start
    assert elapsed < PER_INPUT_S, f"{elapsed:.2f} s for one recipe"


@_SETTINGS
@given(
    raw=st.one_of(value_mutation(), value_mutation(), syntax_mutation(), syntax_mutation(), hostile()), extra=overrides
)
def test_recipe_loader_only_raises_recipe_error(workdir, raw, extra):
    path = workdir / "fuzz.yaml"
    path.write_bytes(raw)
    _load(path, extra)


# ------------------------------------------------------------------------------------------------ components
# The component sections of the tiny recipes mutated (small numbers only: a dry run allocates what it is told),
# then built as `--dry-run` builds them: a Recipe whose components build, or a RecipeError -- never another
# exception from a constructor, an objective's view list or the view/encoder wiring.
COMPONENT_EXAMPLES = 400
TINY = [
    yaml.safe_load((RECIPES[0].parent / f"{n}.yaml").read_text())
    for n in ("tiny_cmc", "tiny_dim", "tiny_amdim", "tiny_cmi")
]
small_values = st.recursive(
    st.one_of(
        st.integers(-3, 70),
        st.floats(-2, 2),
        st.just(math.nan),
        st.sampled_from(["", "x", "pix", "fac", "view0", "s8", "global", "nope", "full", "none", "mlp", "timm"]),
        st.none(),
        st.booleans(),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def component_mutation(draw) -> dict:
    import copy

    data = copy.deepcopy(draw(st.sampled_from(TINY)))
    parts = {k: data[k] for k in ("views", "encoders", "objectives", "view_to_encoder") if k in data}
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from([p for p in _paths(parts) if p]))
        value, action = draw(small_values), draw(st.sampled_from(["set", "set", "delete", "add"]))
        try:
            _set(parts, path, value, action)
        except (KeyError, IndexError, TypeError):  # the path went away with an earlier mutation
            pass
    return {**data, **parts}


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(_SETTINGS, max_examples=COMPONENT_EXAMPLES)
@given(data=component_mutation())
def test_dry_run_components_only_raise_recipe_error(data):
    from multiview.train.build import check_components
    from multiview.train.recipe import validate_recipe

    try:
        check_components(validate_recipe(data))
        event("built")
    except RecipeError as err:
        assert str(err).strip()
        event("RecipeError")
