"""Write BasicMotions (aeon) as shards: accelerometer [3, T] and gyroscope [3, T], official 40 / 40 split.

python datasets/basicmotions.py --out shards/basicmotions
"""

from multiview.builders import basicmotions
from multiview.builders._common import script_main

# the command line of multiview.builders._common.run_builder, also python -m multiview.builders basicmotions --help
main = script_main(basicmotions, __doc__)

if __name__ == "__main__":
    raise SystemExit(main())
