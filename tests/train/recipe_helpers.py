"""Helpers shared by the recipe tests: write a recipe file, and the RecipeError message a bad one raises."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from multiview.train.recipe import RecipeError, load_recipe


def write(tmp_path: Path, name: str, text: str) -> Path:
    """``text`` (dedented) as ``tmp_path / name``."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path, overrides=()) -> str:
    """The message of the RecipeError that loading ``path`` with ``overrides`` raises (fails if none)."""
    with pytest.raises(RecipeError) as info:
        load_recipe(path, list(overrides))
    return str(info.value)
