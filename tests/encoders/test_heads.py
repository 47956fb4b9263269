import pytest
import torch

from multiview.encoders.heads import MLPHead, ResidualMLP, make_head


@pytest.mark.parametrize("in_dim,out_dim", [(8, 8), (6, 10), (10, 6)])
def test_residual_mlp_is_its_identity_shortcut_at_init(in_dim, out_dim):
    head = ResidualMLP(in_dim, out_dim, hidden_dim=16, zero_init_residual=True)
    x = torch.randn(5, in_dim)
    expected = torch.zeros(5, out_dim)
    k = min(in_dim, out_dim)
    expected[:, :k] = x[:, :k]  # rectangular identity: pad with zeros or truncate
    assert torch.equal(head.shortcut.weight, torch.eye(out_dim, in_dim))
    assert torch.equal(head(x), expected)
    maps = torch.randn(2, in_dim, 3, 4)
    expected_maps = torch.zeros(2, out_dim, 3, 4)
    expected_maps[:, :k] = maps[:, :k]
    assert torch.equal(head(maps), expected_maps)


def test_residual_branch_is_live_without_zero_init():
    head = ResidualMLP(8, 8, hidden_dim=16)
    x = torch.randn(5, 8)
    assert not torch.allclose(head(x), x)  # the branch adds its own term
    assert torch.equal(head.shortcut(x), x)


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_heads_act_on_maps_as_1x1_convs(norm):
    head = ResidualMLP(4, 6, hidden_dim=5, norm=norm).eval()
    maps = torch.randn(3, 4, 2, 5)
    out = head(maps)
    assert out.shape == (3, 6, 2, 5)
    for i, j in [(0, 0), (1, 4)]:
        torch.testing.assert_close(out[:, :, i, j], head(maps[:, :, i, j]), rtol=1e-6, atol=1e-6)


def test_mlp_head_shapes_and_layers():
    head = MLPHead(8, 3, hidden_dim=16, n_layers=3)
    assert sum(isinstance(m, torch.nn.Linear) for m in head.modules()) == 3
    assert head(torch.randn(4, 8)).shape == (4, 3)
    assert head(torch.randn(4, 8, 2, 2)).shape == (4, 3, 2, 2)


def test_make_head_errors_name_the_value():
    with pytest.raises(ValueError, match="out_dim=4"):
        make_head("none", 8, 4)
    with pytest.raises(ValueError, match="'bogus'"):
        make_head("bogus", 8, 4)
    with pytest.raises(ValueError, match="'group'"):
        ResidualMLP(4, 4, norm="group")
    with pytest.raises(ValueError, match="in_dim"):
        ResidualMLP(0, 4)
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        ResidualMLP(3, 4)(torch.randn(2, 3, 4))
