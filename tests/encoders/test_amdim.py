import pytest
import timm
import torch

import multiview.encoders as E
from multiview.encoders.amdim import AmdimTrunk


def _trunk(img_size):
    return AmdimTrunk(img_size=img_size, ndf=4, embed_dim=8, n_depth=1).eval()


@pytest.mark.parametrize("img_size,sides", [(32, (32, 35, 36, 48)), (64, (64, 71, 72, 80))])
def test_map_sizes_match_the_forward_pass(img_size, sides):
    trunk = _trunk(img_size)
    for side in sides:
        maps = trunk.forward_intermediates(torch.randn(1, 3, side, side), intermediates_only=True)
        predicted = trunk.map_sizes(side)
        assert [m.shape[-1] for m in maps] == [predicted[n] for n in ("r7", "r5", "r1")]
        if side in (img_size, img_size + 3):
            assert [m.shape[-1] for m in maps] == [7, 5, 1]


def _changes(trunk, x, index, rows, cols, loc):
    """Does perturbing input rows x cols change output `index` at location `loc`?"""
    base = trunk.forward_intermediates(x, intermediates_only=True)[index][..., loc[0], loc[1]]
    y = x.clone()
    y[..., rows, cols] += 10 * torch.randn_like(y[..., rows, cols])
    new = trunk.forward_intermediates(y, intermediates_only=True)[index][..., loc[0], loc[1]]
    return not torch.allclose(base, new, rtol=0, atol=1e-6)


@pytest.mark.parametrize("img_size", [32, 64])
@pytest.mark.parametrize("index,loc", [(0, (2, 5)), (0, (0, 6)), (1, (3, 1)), (2, (0, 0))])
def test_fixed_receptive_field(img_size, index, loc):
    trunk = _trunk(img_size)
    window, jump = trunk.receptive_field(index)
    x = torch.randn(1, 3, img_size, img_size)
    r0, c0 = loc[0] * jump, loc[1] * jump
    inside = torch.zeros(img_size, img_size, dtype=torch.bool)
    inside[r0 : r0 + window, c0 : c0 + window] = True
    # Everything outside the window may change: the location's features must not.
    assert not _changes(trunk, x, index, *torch.nonzero(~inside, as_tuple=True), loc)
    # The window is tight: each of its four edges matters (a single corner pixel can hit dead ReLUs).
    span = torch.arange(window)
    edges = [(r0, c0 + span), (r0 + window - 1, c0 + span), (r0 + span, c0), (r0 + span, c0 + window - 1)]
    for rows, cols in edges:
        rows = torch.as_tensor(rows).expand(window)
        cols = torch.as_tensor(cols).expand(window)
        assert _changes(trunk, x, index, rows, cols, loc)


def test_registered_with_timm_and_features_only():
    assert {"amdim_small", "amdim_base", "amdim_large"} <= set(timm.list_models("amdim_*"))
    model = timm.create_model("amdim_base", ndf=4, embed_dim=8, num_classes=10)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    feats = timm.create_model("amdim_small", ndf=4, embed_dim=8, in_chans=1, features_only=True)
    assert [tuple(m.shape) for m in feats(torch.randn(2, 1, 32, 32))] == [(2, 16, 7, 7), (2, 16, 5, 5), (2, 8, 1, 1)]


def test_amdim_encoder_features():
    enc = E.create("amdim", model_name="amdim_base", n_rkhs=16, trunk_kwargs=dict(ndf=4, embed_dim=8))
    f = enc(torch.randn(3, 3, 64, 64))
    assert f.global_.shape == (3, 16)
    assert f.local["r5"].shape == (3, 16, 5, 5) and f.local["r7"].shape == (3, 16, 7, 7)
    assert enc.local_dims == {"r5": 16, "r7": 16}
    # BN on the embeddings (train mode): each channel of r7 has ~zero mean over (B, H, W).
    torch.testing.assert_close(f.local["r7"].mean(dim=(0, 2, 3)), torch.zeros(16), rtol=0, atol=1e-4)


def test_amdim_argument_errors():
    with pytest.raises(ValueError, match="img_size .* got 48"):
        AmdimTrunk(img_size=48)
    with pytest.raises(ValueError, match="ndf .* got 0"):
        AmdimTrunk(ndf=0)
    with pytest.raises(ValueError, match="unexpected arguments \\['bogus'\\]"):
        AmdimTrunk(bogus=1)
    with pytest.raises(ValueError, match="amdim_tiny"):
        E.create("amdim", model_name="amdim_tiny")


def test_amdim_trunk_through_the_generic_timm_kind():
    enc = E.create(
        "timm", model_name="amdim_small", local_scales=("i0", "i1"), out_dim=6,
        model_kwargs=dict(ndf=4, embed_dim=8),
    )  # fmt: skip
    f = enc(torch.randn(2, 3, 32, 32))
    assert f.global_.shape == (2, 6)
    assert f.local["i0"].shape == (2, 16, 7, 7) and f.local["i1"].shape == (2, 16, 5, 5)
