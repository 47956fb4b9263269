"""From a checkpoint to reusable parts: the trained model, and exported encoders (safetensors; timm trunks load in timm)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from multiview.train.checkpoint import find_checkpoint, load_model_state
from multiview.train.recipe import Recipe, load_recipe


def load_trained_model(checkpoint: str | Path) -> tuple[Any, Recipe, Path]:
    """Rebuild the model of a checkpoint (or of a run folder's newest checkpoint) and load its weights."""
    from multiview.train.build import build_model

    path = find_checkpoint(checkpoint, Path(checkpoint))
    recipe = load_recipe(path / "recipe.yaml")
    model = build_model(recipe)
    model.load_state_dict(load_model_state(path))
    return model.eval(), recipe, path


def export_encoder(checkpoint: str | Path, key: str, out: str | Path) -> Path:
    """Write the encoder ``key`` of a checkpoint as safetensors (plus a timm trunk file for timm trunks)."""
    from multiview.encoders.export import save_encoder

    model, recipe, path = load_trained_model(checkpoint)
    if key not in model.encoders:
        by_view = model.view_to_encoder.get(key)
        if by_view is None:
            raise ValueError(
                f"--modality {key!r}: checkpoint {path} has encoders {sorted(model.encoders)} "
                f"(views: {sorted(model.view_to_encoder)})"
            )
        key = by_view
    extra = {"recipe": recipe.name, "checkpoint": str(path), "encoder_key": key}
    save_encoder(model.encoders[key], out, extra_metadata=extra)
    return Path(out)
