"""Write Fashion-MNIST (official 60k / 10k split) as shards, from Debian's dataset-fashion-mnist package.

apt-get install -y dataset-fashion-mnist
python datasets/fashion_mnist.py --out shards/fashion_mnist [--limit 1000]
"""

import argparse
import sys

from multiview.builders import fashion_mnist


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--root", default=str(fashion_mnist.DEFAULT_ROOT), help="folder of the idx .gz files")
    parser.add_argument("--limit", type=int, default=None, help="keep the first N samples of each split")
    parser.add_argument("--maxcount", type=int, default=10000, help="samples per shard (default: 10000)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        manifest = fashion_mnist.build(
            args.out, root=args.root, limit=args.limit, maxcount=args.maxcount, show_progress=not args.quiet
        )
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print({name: entry["count"] for name, entry in manifest["splits"].items()}, "->", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
