"""The package contract: registry, standalone imports, eval mode, repr, pickling, batch == per sample."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest
import torch

import multiview.views as mv
from multiview.views import ViewGenerator


def test_import_pulls_in_neither_accelerate_nor_webdataset():
    code = (
        "import sys, multiview.views as mv; mv.create('amdim', size=16); "
        "bad = [m for m in ('accelerate', 'webdataset', 'lightly', 'pytorch_lightning') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_registered_names():
    expected = {"amdim", "simclr", "multicrop", "colorsplit", "cameras", "audio", "tactile", "modalities", "fields"}
    assert expected <= set(mv.names())


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="amdim"):
        mv.create("amdm")


def test_users_register_their_own_generator(sample):
    @mv.register("test_identity_views")
    class Identity(ViewGenerator):
        def __init__(self, *, seed: int = 0, train: bool = True):
            super().__init__(seed=seed, train=train)

        @property
        def view_names(self):
            return ("view0",)

        def generate(self, sample, generator):
            return {"view0": sample["image"].float() + torch.rand(1, generator=generator)}

    gen = mv.create("test_identity_views", seed=3)
    assert torch.equal(gen(sample)["view0"], gen(sample)["view0"])
    assert repr(gen) == "Identity(seed=3, train=True)"
    assert gen.eval_transform().train is False


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("amdim", {"size": 16}),
        ("simclr", {"size": 16}),
        ("multicrop", {"global_size": 24, "local_size": 8, "n_local": 2}),
        ("colorsplit", {"size": 16}),
    ],
)
def test_eval_mode_is_deterministic_and_reprs_and_pickles(name, kwargs, sample):
    gen = mv.create(name, **kwargs)
    assert f"{type(gen).__name__}(" in repr(gen) and "train=True" in repr(gen)
    for ev in (gen.eval_transform(), mv.create(name, train=False, **kwargs)):
        a = ev(sample, generator=torch.Generator().manual_seed(1))
        b = ev(sample, generator=torch.Generator().manual_seed(2))
        for view in ev.view_names:
            assert torch.equal(a[view], b[view])
    clone = pickle.loads(pickle.dumps(gen))
    g = mv.derive_generator(5, 0, "k")
    out, out_clone = gen(sample, generator=g), clone(sample, generator=mv.derive_generator(5, 0, "k"))
    for view in gen.view_names:
        assert torch.equal(out[view], out_clone[view])


def test_random_views_differ_between_epochs_and_keys(sample):
    gen = mv.create("amdim", size=16)
    a = gen(sample, generator=mv.derive_generator(0, 0, sample["__key__"]))["view0"]
    b = gen(sample, generator=mv.derive_generator(0, 1, sample["__key__"]))["view0"]
    c = gen({**sample, "__key__": "other"})["view0"]
    assert not torch.equal(a, b) and not torch.equal(gen(sample)["view0"], c)


def test_without_key_the_content_seeds_the_views(rgb):
    gen = mv.create("amdim", size=16)
    assert torch.equal(gen(rgb)["view0"], gen(rgb.clone())["view0"])
    assert not torch.equal(gen(rgb)["view0"], gen(255 - rgb)["view0"] * -1)


@pytest.mark.parametrize(
    "name, kwargs", [("amdim", {"size": 16}), ("multicrop", {"global_size": 20, "local_size": 8, "n_local": 3})]
)
def test_batch_equals_one_call_per_sample(name, kwargs, rgb):
    gen = mv.create(name, **kwargs)
    samples = [{"__key__": f"k{i}", "image": torch.roll(rgb, i, dims=-1)} for i in range(4)]
    batched = gen.batch(samples)
    for s, out in zip(samples, batched):
        single = gen(s)
        for view in gen.view_names:
            torch.testing.assert_close(out[view], single[view], atol=1e-5, rtol=0)
            assert out["__meta__"][view]["box"] == single["__meta__"][view]["box"]


def test_batch_in_chunks_equals_one_call_per_sample(rgb):
    gen = mv.create("amdim", size=16)
    gen.batch_chunk = 3  # 7 samples: chunks of 3, 3 and 1
    samples = [{"__key__": f"k{i}", "image": torch.roll(rgb, i, dims=-2)} for i in range(7)]
    for s, out in zip(samples, gen.batch(samples), strict=True):
        torch.testing.assert_close(out["view1"], gen(s)["view1"], atol=1e-5, rtol=0)


def test_fields_batch_equals_one_call_per_sample(rgb):
    gen = mv.create("fields", fields={"image": {"name": "amdim", "size": 16}, "vec": {"name": "vector", "noise": 0.1}})
    samples = [{"__key__": f"k{i}", "image": torch.roll(rgb, i, dims=-1), "vec": torch.randn(5)} for i in range(5)]
    batched = gen.batch(samples)
    for s, out in zip(samples, batched, strict=True):
        single = gen(s)
        assert list(out) == list(single)
        for view in gen.view_names:
            torch.testing.assert_close(out[view], single[view], atol=1e-5, rtol=0)
        assert out["__meta__"]["image0"]["box"] == single["__meta__"]["image0"]["box"]


def test_batch_checks_generator_count(sample):
    with pytest.raises(ValueError, match="2 generators for 1 samples"):
        mv.create("amdim", size=16).batch([sample], generators=[torch.Generator()] * 2)


def test_works_inside_torchvision_compose_and_a_dataloader(rgb):
    from PIL import Image
    from torchvision.transforms import v2

    pipeline = v2.Compose([v2.PILToTensor(), mv.create("amdim", size=16)])
    out = pipeline(Image.fromarray(rgb.permute(1, 2, 0).numpy()))
    assert out["view0"].shape == (3, 16, 16)

    gen = mv.create("amdim", size=16)
    data = [{"__key__": f"k{i}", "image": rgb} for i in range(4)]
    loader = torch.utils.data.DataLoader(data, batch_size=2, collate_fn=None)
    views = [gen(s) for batch in loader for s in [dict(zip(batch, v)) for v in zip(*batch.values())]]
    assert len(views) == 4


def test_works_as_a_webdataset_map_stage(rgb):
    wds = pytest.importorskip("webdataset")
    gen = mv.create("amdim", size=16)
    samples = [{"__key__": f"k{i}", "image": rgb} for i in range(3)]
    out = list(wds.DataPipeline(lambda: iter(samples), wds.map(gen)))
    assert [o["view1"].shape for o in out] == [(3, 16, 16)] * 3
    assert torch.equal(out[0]["view0"], gen(samples[0])["view0"])


def test_invalid_generator_argument(sample):
    with pytest.raises(ValueError, match="torch.Generator"):
        mv.create("amdim", size=16)(sample, generator=42)
