import pytest
import torch

import multiview.encoders as E


def test_kinds_registered():
    assert {"timm", "amdim", "dim", "mlp", "conv1d"} <= set(E.names())


def test_unknown_kind_suggests_a_close_name():
    with pytest.raises(KeyError, match="'timn'.*did you mean 'timm'"):
        E.create("timn", model_name="test_resnet")
    with pytest.raises(ValueError, match="got 3"):
        E.create(3)


def test_config_rebuilds_the_same_architecture():
    enc = E.create("timm", model_name="test_convnext", local_scales=("s8",), out_dim=8, head="residual")
    again = E.create(**enc.config)
    shapes = {k: v.shape for k, v in enc.state_dict().items()}
    assert shapes == {k: v.shape for k, v in again.state_dict().items()}


def test_register_a_custom_kind():
    @E.register("test_linear_encoder")
    class Linear(torch.nn.Module):
        def __init__(self, in_dim):
            super().__init__()
            self.fc = torch.nn.Linear(in_dim, 2)

        def forward(self, x):
            return E.Features(self.fc(x))

    assert E.create("test_linear_encoder", in_dim=3)(torch.randn(4, 3)).global_.shape == (4, 2)
    with pytest.raises(ValueError, match="already registered"):
        E.register("test_linear_encoder")(torch.nn.Identity)
