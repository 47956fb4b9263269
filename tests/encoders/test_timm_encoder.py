import pytest
import torch

import multiview.encoders as E


def test_resnet_global_and_local_shapes():
    enc = E.create("timm", model_name="test_resnet", local_scales=("s8", "s16"), out_dim=16)
    for h, w in [(32, 32), (32, 48)]:
        f = enc(torch.randn(2, 3, h, w))
        assert f.global_.shape == (2, 16)
        assert f.local["s8"].shape == (2, 48, h // 8, w // 8)
        assert f.local["s16"].shape == (2, 192, h // 16, w // 16)
    assert enc.out_dim == 16 and enc.local_dims == {"s8": 48, "s16": 192}


def test_one_trunk_pass_and_global_equals_timm_pooled_output():
    enc = E.create("timm", model_name="test_resnet", local_scales=("s4", "i-1")).eval()
    calls = []
    enc.trunk.conv1.register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 3, 32, 32)
    f = enc(x)
    assert len(calls) == 1  # global and local come from the same pass
    assert torch.equal(f.global_, enc.trunk(x))  # head "none": the model's own pooled output
    assert torch.equal(f.local["i-1"].mean(dim=(2, 3)), f.global_)  # last stage pooled = global


def test_vit_dynamic_img_size_maps():
    enc = E.create(
        "timm", model_name="test_vit", local_scales=("s16", "i2"), out_dim=8, local_dim=12,
        model_kwargs={"dynamic_img_size": True},
    )  # fmt: skip
    for side in (32, 48):
        f = enc(torch.randn(2, 3, side, side))
        assert f.global_.shape == (2, 8)
        assert f.local["s16"].shape == (2, 12, side // 16, side // 16)
        assert f.local["i2"].shape == (2, 12, side // 16, side // 16)
    assert enc.local_dims == {"s16": 12, "i2": 12}


def test_in_chans_1_spectrogram_like_input_and_backward():
    enc = E.create("timm", model_name="test_resnet", in_chans=1, local_scales=("s8",), out_dim=8, local_dim=8)
    x = torch.randn(3, 1, 64, 96)  # [B, 1, n_mels, frames]
    f = enc(x)
    assert f.global_.shape == (3, 8) and f.local["s8"].shape == (3, 8, 8, 12)
    (f.global_.sum() + f.local["s8"].sum()).backward()
    assert enc.trunk.conv1[0].weight.grad is not None
    with pytest.raises(ValueError, match=r"C=1.*\(3, 3, 64, 96\)"):
        enc(torch.randn(3, 3, 64, 96))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(model_name="no_such_model"), "no_such_model"),
        (dict(model_name="test_resnet", local_scales="s8"), "sequence of strings"),
        (dict(model_name="test_resnet", local_scales=("s3",)), r"stride 3 \(has \[2, 4, 8, 16, 32\]\)"),
        (dict(model_name="test_resnet", local_scales=("x8",)), "'x8'"),
        (dict(model_name="test_resnet", local_scales=("i7",)), "index 7"),
        (dict(model_name="test_resnet", local_scales=("s8", "s8")), "duplicates"),
        (dict(model_name="test_resnet", out_dim=4, head="none"), "out_dim=4"),
        (dict(model_name="test_resnet", model_kwargs={"num_classes": 3}), "num_classes"),
    ],
)
def test_timm_encoder_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        E.create("timm", **kwargs)
