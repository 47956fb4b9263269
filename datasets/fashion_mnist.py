"""Write Fashion-MNIST (official 60k / 10k split) as shards, from Debian's dataset-fashion-mnist package.

apt-get install -y dataset-fashion-mnist
python datasets/fashion_mnist.py --out shards/fashion_mnist [--limit 1000]
"""

from multiview.builders import fashion_mnist
from multiview.builders._common import script_main

# the command line of multiview.builders._common.run_builder, also python -m multiview.builders fashion_mnist --help
main = script_main(fashion_mnist, __doc__)

if __name__ == "__main__":
    raise SystemExit(main())
