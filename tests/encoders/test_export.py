import json

import pytest
import timm
import torch

import multiview
import multiview.encoders as E
from multiview.encoders.export import create_timm_trunk, read_metadata, trunk_path

CASES = {
    "resnet": (dict(kind="timm", model_name="test_resnet", in_chans=1, local_scales=["s8"], out_dim=8), (1, 32, 32)),
    "vit": (
        dict(
            kind="timm",
            model_name="test_vit",
            local_scales=["s16"],
            out_dim=8,
            local_dim=8,
            model_kwargs={"dynamic_img_size": True},
        ),
        (3, 48, 48),
    ),  # fmt: skip
    "amdim": (
        dict(kind="amdim", model_name="amdim_small", n_rkhs=8, trunk_kwargs={"ndf": 4, "embed_dim": 8}),
        (3, 32, 32),
    ),
    "dim": (dict(kind="dim", widths=[4, 8, 8], hidden=16, out_dim=8), (3, 32, 32)),
    "mlp": (dict(kind="mlp", in_dim=10, hidden=[8], out_dim=4), (10,)),
    "mlp_skip": (dict(kind="mlp", in_dim=10, hidden=[8], out_dim=4, skip=True), (10,)),
    "conv1d": (dict(kind="conv1d", in_chans=3, widths=[4, 8], out_dim=4, local_scales=["s4"]), (3, 40)),
}


def _trained_like(config):
    """An encoder whose weights (and BN statistics) differ from a fresh init, so loading must really load."""
    enc = E.create(**config)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return enc


def _same(f, g):
    assert torch.equal(f.global_, g.global_) and f.local.keys() == g.local.keys()
    assert all(torch.equal(f.local[k], g.local[k]) for k in f.local)


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip(case, tmp_path):
    config, shape = CASES[case]
    enc = _trained_like(config)
    enc(torch.randn(4, *shape))  # move BN running stats
    files = E.save_encoder(enc, tmp_path / "enc.safetensors", extra_metadata={"step": 7})
    enc.eval()
    x = torch.randn(2, *shape)
    loaded = E.load_encoder(files[0])
    assert loaded.config == enc.config
    assert {k: enc.config[k] for k in config} == config
    assert not loaded.training
    _same(loaded(x), enc(x))
    _same(multiview.load_encoder(files[0])(x), enc(x))
    assert json.loads(read_metadata(files[0])["multiview.extra"]) == {"step": 7}
    assert (len(files) == 2) == (case in ("resnet", "vit", "amdim"))


@pytest.mark.parametrize("case", ["resnet", "vit", "amdim"])
def test_trunk_file_loads_through_timm(case, tmp_path):
    config, shape = CASES[case]
    enc = _trained_like(config).eval()
    files = E.save_encoder(enc, tmp_path / "enc.safetensors")
    assert files[1] == trunk_path(files[0]) == tmp_path / "enc.trunk.safetensors"
    x = torch.randn(2, *shape)
    # The plain timm call a user would write, with the name and kwargs from the file's metadata.
    meta = read_metadata(files[1])
    kwargs = json.loads(meta["timm.kwargs"])
    model = timm.create_model(
        meta["timm.model_name"], pretrained=True, pretrained_cfg_overlay=dict(file=str(files[1])), num_classes=0,
        **kwargs,
    ).eval()  # fmt: skip
    assert torch.equal(model(x), enc.trunk(x))
    assert torch.equal(create_timm_trunk(files[0]).eval()(x), enc.trunk(x))
    # Both load paths agree on the encoder's trunk output.
    assert torch.equal(E.load_encoder(files[0]).trunk(x), model(x))


def test_export_errors(tmp_path):
    enc = E.create("mlp", in_dim=4, hidden=[], out_dim=2)
    with pytest.raises(ValueError, match="'.safetensors'.*enc.pt"):
        E.save_encoder(enc, tmp_path / "enc.pt")
    with pytest.raises(ValueError, match="config"):
        E.save_encoder(torch.nn.Linear(2, 2), tmp_path / "lin.safetensors")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        E.load_encoder(tmp_path / "missing.safetensors")
    files = E.save_encoder(E.create(**CASES["resnet"][0]), tmp_path / "r.safetensors")
    with pytest.raises(ValueError, match="r.trunk.safetensors.*multiview.format"):
        E.load_encoder(files[1])
