"""Write UCI mfeat (bundled with multiview) as shards: six instance-paired views, stratified 50/50 split.

python datasets/mfeat.py --out shards/mfeat
"""

import argparse

from multiview.builders import mfeat


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--maxcount", type=int, default=1000, help="samples per shard (default: 1000)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    manifest = mfeat.build(args.out, maxcount=args.maxcount, show_progress=not args.quiet)
    print({name: entry["count"] for name, entry in manifest["splits"].items()}, "->", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
