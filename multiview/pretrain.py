"""``multiview pretrain`` (training, then the recipe's evaluations) and ``multiview export``.

A command of the application layer: it composes ``multiview.train`` and ``multiview.eval``, which never import
each other in that direction (docs/architecture.md)."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    pretrain = subparsers.add_parser(
        "pretrain",
        help="pretrain encoders from a recipe (YAML)",
        description=(
            "Pretrain per-modality encoders by maximising cross-view MI, as a recipe says. Runs on one CPU or GPU, "
            "or on many processes with: accelerate launch --multi_gpu --num_processes N -m multiview pretrain ... "
            "(see docs/training.md)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  multiview pretrain recipes/cmc_mfeat.yaml train.steps=200 optimizer.lr=3e-4\n"
        "  multiview pretrain recipes/cmc_mfeat.yaml --resume latest",
    )
    pretrain.add_argument("recipe", help="a recipe file, or the name of a shipped recipe (e.g. cmc_mfeat)")
    pretrain.add_argument("overrides", nargs="*", metavar="key=value", help="override recipe keys (YAML values)")
    pretrain.add_argument(
        "--resume", metavar="CKPT", help="'latest' (newest checkpoint of the run) or a checkpoint folder"
    )
    pretrain.add_argument("--run-dir", help="where the run writes (default: <log.dir>/<name>)")
    pretrain.add_argument("--no-eval", action="store_true", help="skip the recipe's evaluation at the end")
    pretrain.add_argument("--dry-run", action="store_true", help="validate the recipe, print it resolved, and stop")
    pretrain.set_defaults(func=run_pretrain)

    export = subparsers.add_parser(
        "export",
        help="export a trained encoder as safetensors (loads back in multiview and timm)",
        description="Export one encoder of a checkpoint: weights plus its config, loadable with "
        "multiview.load_encoder(path) and, for timm trunks, timm.create_model(name, pretrained=True, "
        "pretrained_cfg_overlay=dict(file=path)).",
    )
    export.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its newest checkpoint)")
    export.add_argument(
        "--modality", "-m", required=True, help="the encoder key (a view or modality name of the recipe)"
    )
    export.add_argument("--out", "-o", required=True, help="output .safetensors path")
    export.set_defaults(func=run_export)


def run_pretrain(args) -> int:
    from multiview.train.recipe import RecipeError, check_batch_split, load_recipe, recipe_to_dict

    try:
        recipe = load_recipe(args.recipe, args.overrides)
        check_batch_split(recipe, _launched_processes())
        if args.dry_run:  # build every component on the CPU, without data: a recipe that will fail says so now
            from multiview.train.build import check_components

            check_components(recipe)
    except RecipeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        import yaml

        print(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
        return 0
    from multiview.train.loop import TrainingDiverged, TrainingInterrupted, pretrain

    try:
        summary = pretrain(recipe, resume=args.resume, run_dir=args.run_dir)
    except RecipeError as err:  # a component the recipe names cannot be built (the Trainer builds them first)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except TrainingInterrupted as err:
        print(str(err), file=sys.stderr)
        return 128 + err.signum
    if summary.main_process:  # once per run, not once per process
        print(
            json.dumps(
                {
                    "run_dir": str(summary.run_dir),
                    "steps": summary.steps,
                    "checkpoint": str(summary.final_checkpoint),
                    "last": summary.last_metrics,
                }
            )
        )
    if recipe.eval and not args.no_eval:
        from multiview.eval.recipe_eval import run_recipe_eval
        from multiview.eval.report import markdown_table

        for report in run_recipe_eval(recipe, summary.final_checkpoint):
            print(markdown_table(report["rows"]))
    return 0


def _launched_processes() -> int:
    """How many processes this run has: WORLD_SIZE as torchrun and ``accelerate launch`` set it, else 1."""
    import os

    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def run_export(args) -> int:
    from multiview.train.export import export_encoder

    path = export_encoder(args.checkpoint, args.modality, args.out)
    print(f"wrote {path}")
    return 0
