"""The combinators: one generator per field / modality, built from plain dicts (YAML recipes)."""

from __future__ import annotations

import pytest
import torch
import yaml

import multiview.views as mv

RECIPE = """
image: {name: amdim, size: 16}
audio: {name: audio, n_views: 2, sample_rate: 8000, n_fft: 256, hop_length: 80, n_mels: 16, duration: 0.25}
tactile: {name: tactile, window: 20}
"""


def _sample(rgb) -> dict:
    return {
        "__key__": "av-12",
        "image": rgb,
        "audio": torch.randn(1, 4000, generator=torch.Generator().manual_seed(0)) * 0.1,
        "audio.sample_rate": 8000,
        "tactile": torch.randn(6, 50, generator=torch.Generator().manual_seed(1)),
    }


def test_modalities_from_a_yaml_recipe(rgb):
    gen = mv.create("modalities", modalities=yaml.safe_load(RECIPE), seed=7)
    assert gen.view_names == ("image", "audio0", "audio1", "tactile")
    assert [gen.modality_of(v) for v in gen.view_names] == ["image", "audio", "audio", "tactile"]
    out = gen(_sample(rgb))
    assert out["image"].shape == (3, 16, 16) and out["audio1"].shape == (1, 16, 26) and out["tactile"].shape == (6, 20)
    assert set(out["__meta__"]) == set(gen.view_names)
    assert "box" in out["__meta__"]["image"]
    with pytest.raises(ValueError, match="emits views"):
        gen.modality_of("video")


def test_modality_override_and_field_redirect(rgb):
    gen = mv.create(
        "modalities",
        modalities={
            "acc": {"name": "tactile", "field": "tactile", "modality": "sensor"},
            "rgb": {"name": "amdim", "field": "image", "size": 8},
        },
    )
    out = gen(_sample(rgb))
    assert gen.modality_of("acc") == "sensor" and gen.modality_of("rgb") == "rgb" and out["rgb"].shape == (3, 8, 8)


def test_fields_keeps_each_generators_view_count_and_modality(rgb):
    gen = mv.create("fields", fields={"image": {"name": "amdim", "size": 8}, "tactile": {"name": "tactile"}})
    assert gen.view_names == ("image0", "image1", "tactile0", "tactile1")
    assert gen.modality_of("tactile1") == "sensor" and gen.modality_of("image0") == "image"
    assert gen(_sample(rgb))["image1"].shape == (3, 8, 8)


def test_appending_a_modality_leaves_earlier_views_unchanged(rgb):
    spec = yaml.safe_load(RECIPE)
    small = mv.create("modalities", modalities={"image": spec["image"]})
    full = mv.create("modalities", modalities=spec)
    g = mv.derive_generator(0, 3, "av-12")
    assert torch.equal(
        small(_sample(rgb), generator=g)["image"],
        full(_sample(rgb), generator=mv.derive_generator(0, 3, "av-12"))["image"],
    )


def test_eval_mode_propagates_to_every_modality(rgb):
    gen = mv.create("modalities", modalities=yaml.safe_load(RECIPE)).eval_transform()
    assert all(not g.train for g in gen.generators.values())
    a = gen(_sample(rgb), generator=torch.Generator().manual_seed(0))
    b = gen(_sample(rgb), generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a[v], b[v]) for v in gen.view_names)


def test_ready_generators_are_accepted(rgb):
    gen = mv.create("modalities", modalities={"image": mv.create("amdim", size=8, n_views=1)})
    assert gen(_sample(rgb))["image"].shape == (3, 8, 8)


@pytest.mark.parametrize(
    "spec, match",
    [
        ({}, "non-empty mapping"),
        ({"image": {"size": 8}}, "a dict with a 'name' key"),
        ({"image": {"name": "amdim", "bogus": 1}}, "bad arguments for view generator 'amdim'"),
        ({"a": {"name": "amdim", "n_views": 2}, "a0": {"name": "tactile"}}, "view names collide"),
    ],
)
def test_bad_specs_are_refused(spec, match):
    with pytest.raises(ValueError, match=match):
        mv.create("modalities", modalities=spec)


def test_needs_a_sample_dict(rgb):
    with pytest.raises(ValueError, match="needs a sample dict, got Tensor"):
        mv.create("modalities", modalities={"image": {"name": "amdim", "size": 8}})(rgb)
