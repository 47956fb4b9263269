"""The evaluations a recipe asks for at the end of pretraining (``eval:`` entries, any registered evaluation), on
the final checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from multiview.core.dist import rank_and_world
from multiview.train.recipe import EvalConfig, Recipe

if TYPE_CHECKING:
    from multiview.eval.cache import EvalCache


def run_eval_entry(
    entry: EvalConfig, recipe: Recipe, bundle, checkpoint: Path, out_root: Path, cache: EvalCache | None = None
) -> dict:
    """Run one ``eval:`` entry of a recipe with the trained encoders; returns the report dict. Entries given the
    same ``cache`` share embeddings and raw inputs (each split read once for all of them); progress bars follow
    the recipe's ``log.progress``."""
    from multiview.eval.base import EvalContext, get_evaluation

    evaluation = get_evaluation(entry.kind)
    options = entry.options if entry.options is not None else evaluation.options(**entry.args)
    ctx = EvalContext(
        data=recipe.data.path,
        checkpoint=str(checkpoint),
        bundle=bundle,
        split=entry.split,
        train_split=entry.train_split,
        out_dir=out_root / entry.kind,
        command=f"multiview pretrain (recipe {recipe.name}, eval {entry.kind})",
        progress=recipe.log.progress,
        **({"cache": cache} if cache is not None else {}),
    )
    return evaluation.run(ctx, options)


def run_recipe_eval(recipe: Recipe, checkpoint: Path, out_root: Path | None = None) -> list[dict]:
    """Every ``eval:`` entry of ``recipe`` on ``checkpoint``; only the main process evaluates."""
    if rank_and_world()[0] != 0 or not recipe.eval:
        return []
    from multiview.core.threads import configure_threads
    from multiview.eval.cache import EvalCache
    from multiview.eval.load import load_for_eval

    # the evaluation runs no loader workers: the threads the trainer left to them go back to torch
    logging.getLogger("multiview.eval").info(configure_threads(recipe.train.threads).line())

    bundle = load_for_eval(checkpoint)
    out_root = out_root or Path(checkpoint).parents[1] / "eval"
    cache = EvalCache()  # the entries evaluate the same data with the same encoders: embed once
    return [run_eval_entry(entry, recipe, bundle, Path(checkpoint), out_root, cache) for entry in recipe.eval]
