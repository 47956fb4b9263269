"""Render synthetic multi-camera scenes as shards: cam0.png .. camK-1.png + cams.json + object labels.

Each scene: one main object (shape, colour, size, texture) and up to a few distractors on a ground plane, under
a light whose direction varies per scene, seen from K cameras at known poses on a ring (or a sphere) around it.

    python datasets/scenes.py --out shards/scenes [--train 3000 --test 500 --cameras 4 --size 64 --layout ring]

--masks also writes camK_mask.png per camera, what each pixel shows: 0 ground/sky, 1 the main object, 2.. the
distractors (ground truth for `multiview eval segment`).
"""

from multiview.builders import scenes
from multiview.builders._common import script_main

# the command line of multiview.builders._common.run_builder, also python -m multiview.builders scenes --help
main = script_main(scenes, __doc__)

if __name__ == "__main__":
    raise SystemExit(main())
