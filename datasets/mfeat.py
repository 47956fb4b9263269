"""Write UCI mfeat (bundled with multiview) as shards: six instance-paired views, stratified 50/50 split.

python datasets/mfeat.py --out shards/mfeat
"""

from multiview.builders import mfeat
from multiview.builders._common import script_main

# the command line of multiview.builders._common.run_builder, also python -m multiview.builders mfeat --help
main = script_main(mfeat, __doc__)

if __name__ == "__main__":
    raise SystemExit(main())
