"""The shipped scenes recipes validate, make 64 px camera views and run their encoder on them.

They train for minutes on real shards, so no test runs them; this one catches a recipe that no longer loads or
whose views and encoder no longer fit together (e.g. after a rename of a view or encoder option).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from multiview.train.build import build_encoders, build_views
from multiview.train.recipe import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def scene_sample(seed: int = 0) -> dict:
    """A fake scene like shards/scenes: four 64 px cameras on a ring, their poses and the two labels."""
    g = torch.Generator().manual_seed(seed)
    sample = {f"cam{i}": torch.randint(0, 256, (3, 64, 64), generator=g, dtype=torch.uint8) for i in range(4)}
    sample["cams"] = [{"azimuth": 10.0 + 80.0 * i, "elevation": 30.0} for i in range(4)]
    return {"__key__": f"scene{seed:06d}", "label": 1, "colour": 2, **sample}


@pytest.mark.parametrize("name", ["cmc_scenes", "cmc_cmi_scenes"])
def test_scene_recipe_views_fit_its_encoder(name):
    recipe = load_recipe(RECIPES / f"{name}.yaml")
    views = build_views(recipe)
    batch = [views(scene_sample(i), torch.Generator().manual_seed(i)) for i in range(4)]
    x = torch.stack([b["view0"] for b in batch])
    cameras = {b["__meta__"]["view0"]["camera"] for b in batch} | {b["__meta__"]["view1"]["camera"] for b in batch}
    assert cameras <= {0, 1, 2, 3}
    encoder = next(iter(build_encoders(recipe).values())).eval()
    with torch.no_grad():
        out = encoder(x)
    assert out.global_.shape == (4, recipe.encoders["image"].args["out_dim"])
    assert torch.isfinite(out.global_).all()


def test_cmc_scenes_trains_and_evaluates_on_whole_64px_images():
    """The main object is small: train crops keep most of the image and evaluation sees all of it."""
    recipe = load_recipe(RECIPES / "cmc_scenes.yaml")
    sample = scene_sample()
    train_view = build_views(recipe)(sample, torch.Generator().manual_seed(0))["view0"]
    eval_views = build_views(recipe, train=False)
    eval_view = eval_views.camera_view(sample, 0)
    assert train_view.shape == eval_view.shape == (3, 64, 64)
    assert torch.equal(eval_view, eval_views.camera_view(sample, 0))  # deterministic
    # a whole-image view: the corner pixels are the image's corners, normalised (no centre crop cut them off)
    plain = sample["cam0"].float() / 255.0
    corr = torch.corrcoef(torch.stack([eval_view.flatten(), plain.flatten()]))[0, 1]
    assert corr > 0.99
