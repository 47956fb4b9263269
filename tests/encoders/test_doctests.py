import doctest
import importlib

import pytest

MODULES = ["__init__", "heads", "timm_encoder", "amdim", "dim", "mlp", "conv1d"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module("multiview.encoders" + ("" if name == "__init__" else f".{name}"))
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
