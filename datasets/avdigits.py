"""Write audio-visual digits as shards: MNIST-5k images paired within class with espeak-ng spoken digits.

Train and test use disjoint voices (recorded in the manifest); test images are unseen (80/20 split).

    python datasets/avdigits.py --out shards/avdigits [--snr 5] [--jobs 2] [--cache ~/.cache/multiview/avdigits]
"""

from multiview.builders import avdigits
from multiview.builders._common import script_main

# the command line of multiview.builders._common.run_builder, also python -m multiview.builders avdigits --help
main = script_main(avdigits, __doc__)

if __name__ == "__main__":
    raise SystemExit(main())
