"""Run a recipe under torchrun and record the sample keys each process trains on (for test_distributed)."""

import json
import os
import sys

from multiview.train.loop import Trainer
from multiview.train.recipe import load_recipe


def main(recipe_path: str, out_dir: str, mode: str = "fit") -> None:
    """``mode``: "fit" (the whole run), "stop:N" (stop after N steps, saving a checkpoint) or "resume"."""
    trainer = Trainer(load_recipe(recipe_path))
    seen: list[list[str]] = []
    original = trainer._micro_step

    def recording(batch):
        seen.append([str(k) for k in batch["__key__"]])
        return original(batch)

    trainer._micro_step = recording
    if mode.startswith("stop:"):
        trainer.fit(stop_after=int(mode.split(":")[1]))
    else:
        trainer.fit(resume="latest" if mode == "resume" else None)
    rank = int(os.environ.get("RANK", 0))
    with open(os.path.join(out_dir, f"keys_rank{rank}_{mode.replace(':', '')}.json"), "w") as f:
        json.dump(seen, f)


if __name__ == "__main__":
    main(*sys.argv[1:4])
