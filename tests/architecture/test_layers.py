"""The package's imports follow the data flow of docs/architecture.md: every import (top-level or inside a
function) points to the same layer or one below it, never up. And the light layers stay light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "multiview"

# bottom to top: a module may import its own layer and the layers below it
LAYERS = {
    "multiview.core": 0,
    "multiview.registry": 0,
    "multiview.data": 1,
    "multiview.builders": 2,  # data sets -> shards (the data layer's writer)
    "multiview.views": 3,
    "multiview.encoders": 4,
    "multiview.objectives": 5,
    "multiview.train": 6,
    "multiview.eval": 7,  # loads the trainer's checkpoints; the trainer never imports it
    "multiview": 8,  # the application: the package's front, cli, pretrain, quickstart (they compose the rest)
}


def layer_of(module: str) -> tuple[str, int]:
    """The layer holding ``module`` (the longest matching prefix)."""
    best = max((name for name in LAYERS if module == name or module.startswith(name + ".")), key=len)
    return best, LAYERS[best]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every import statement in a file, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base) for alias in node.names]
    return [(line, name) for line, name in found if name == "multiview" or name.startswith("multiview.")]


def upward_edges(root: Path = PACKAGE) -> list[str]:
    edges = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(path, root)
        own, own_level = layer_of(importer)
        for line, imported in imports_of(path, root):
            if imported.startswith(importer + ".") and own != "multiview":
                continue  # a package importing its own modules
            target, level = layer_of(imported)
            if level > own_level:
                edges.append(f"{path.relative_to(root.parent)}:{line}: {own} imports {imported} ({target} is above it)")
    return edges


def test_no_import_points_up_the_data_flow():
    edges = upward_edges()
    assert not edges, "imports against the layering of docs/architecture.md:\n" + "\n".join(edges)


def test_the_check_sees_an_upward_import_inside_a_function(tmp_path):
    fake = tmp_path / "multiview"
    (fake / "data").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "data" / "__init__.py").write_text("")
    (fake / "data" / "reader.py").write_text("def f():\n    from ..views.base import derive_generator\n")
    assert upward_edges(fake) == [
        "multiview/data/reader.py:2: multiview.data imports multiview.views.base.derive_generator (multiview.views is "
        "above it)"
    ]


@pytest.mark.parametrize("module", ["multiview.objectives", "multiview.views", "multiview.core", "multiview.data"])
def test_light_layers_do_not_import_heavy_libraries(module):
    heavy = ["timm", "accelerate", "lightly"] + ([] if module == "multiview.data" else ["webdataset"])
    code = f"import sys, {module}; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"import {module} loaded {done.stdout.strip()}"
