"""The Examples blocks in the eval modules' docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["retrieval", "probes", "baselines", "embed"])
def test_docstring_examples(name):
    module = importlib.import_module(f"multiview.eval.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
