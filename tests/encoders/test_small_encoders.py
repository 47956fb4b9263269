import pytest
import torch

import multiview.encoders as E


def test_dim_encoder_shapes_follow_the_paper():
    enc = E.create("dim")
    f = enc(torch.randn(2, 3, 32, 32))
    assert f.global_.shape == (2, 64)
    assert f.local == {"s4": f.local["s4"]} and f.local["s4"].shape == (2, 128, 8, 8)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (64, (4, 4), (2, 2)),
        (128, (4, 4), (2, 2)),
        (256, (4, 4), (2, 2)),
    ]
    with pytest.raises(ValueError, match="32x32.*\\(2, 3, 64, 64\\)"):
        enc(torch.randn(2, 3, 64, 64))


def test_dim_encoder_other_sizes():
    enc = E.create("dim", in_chans=1, img_size=64, widths=(8, 16, 32), hidden=32, out_dim=10, local_index=2)
    f = enc(torch.randn(2, 1, 64, 64))
    assert f.global_.shape == (2, 10) and f.local["s8"].shape == (2, 32, 8, 8)
    with pytest.raises(ValueError, match="multiple of 8, got 60"):
        E.create("dim", img_size=60)


def test_mlp_encoder():
    enc = E.create("mlp", in_dim=76, hidden=(32, 32), out_dim=16, modality="vector")
    f = enc(torch.randn(4, 76))
    assert f.global_.shape == (4, 16) and f.local == {} and enc.local_dims == {}
    assert enc.modality == "vector"
    with pytest.raises(ValueError, match="F=76|C=76"):
        enc(torch.randn(4, 64))
    with pytest.raises(ValueError, match="hidden must be a positive int, got 0"):
        E.create("mlp", in_dim=4, hidden=(0,))


def test_mlp_encoder_skip_adds_a_linear_map_of_the_normalised_input():
    enc = E.create("mlp", in_dim=6, hidden=(8,), out_dim=3, skip=True).eval()
    plain = E.create("mlp", in_dim=6, hidden=(8,), out_dim=3)
    assert sorted(plain.state_dict()) == sorted(k for k in enc.state_dict() if not k.startswith("skip."))
    x = torch.randn(5, 6)
    normalised = enc.net[0](x)
    assert torch.allclose(enc(x).global_, enc.net[1:](normalised) + normalised @ enc.skip.weight.T + enc.skip.bias)
    with torch.no_grad():
        enc.net[-1].weight.zero_(), enc.net[-1].bias.zero_()
    assert torch.allclose(enc(x).global_, enc.skip(normalised))  # the MLP path silenced: only the shortcut
    no_norm = E.create("mlp", in_dim=6, hidden=(), out_dim=3, input_norm=False, skip=True)
    assert torch.allclose(no_norm(x).global_, no_norm.net(x) + no_norm.skip(x))


def test_conv1d_encoder():
    enc = E.create("conv1d", in_chans=6, widths=(8, 16, 16), out_dim=12, local_scales=("s4", "s8"))
    f = enc(torch.randn(2, 6, 100))
    assert f.global_.shape == (2, 12)
    assert f.local["s4"].shape == (2, 16, 1, 25) and f.local["s8"].shape == (2, 16, 1, 13)
    with pytest.raises(ValueError, match="'s16' not available"):
        E.create("conv1d", in_chans=6, widths=(8, 16, 16), local_scales=("s16",))
    with pytest.raises(ValueError, match=r"\[B, C, T\] with C=6"):
        enc(torch.randn(2, 6, 1, 100))
