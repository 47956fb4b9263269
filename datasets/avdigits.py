"""Write audio-visual digits as shards: MNIST-5k images paired within class with espeak-ng spoken digits.

Train and test use disjoint voices (recorded in the manifest); test images are unseen (80/20 split).

    python datasets/avdigits.py --out shards/avdigits [--snr 5] [--jobs 2] [--cache ~/.cache/multiview/avdigits]
"""

import argparse
import sys

from multiview.builders import avdigits


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def main(argv=None) -> int:
    defaults = avdigits.AVDigitsConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--snr", type=float, default=None, help="mix sonic-pi noise at this SNR in dB (default: none)")
    parser.add_argument("--speeds", type=_ints, default=defaults.speeds, help="espeak words/min, comma separated")
    parser.add_argument("--pitches", type=_ints, default=defaults.pitches, help="espeak pitches 0-99, comma separated")
    parser.add_argument(
        "--accents", default=",".join(defaults.accents), help="espeak-ng English voices, comma separated"
    )
    parser.add_argument("--test-variant-fraction", type=float, default=defaults.test_variant_fraction)
    parser.add_argument("--max-variants", type=int, default=None, help="cap voice variants per split (small builds)")
    parser.add_argument("--limit", type=int, default=None, help="keep the first N images of each split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None, help="clip cache folder (default: ~/.cache/multiview/avdigits)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel espeak-ng / sox processes (default: 2)")
    parser.add_argument("--maxcount", type=int, default=1000, help="samples per shard (default: 1000)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        config = avdigits.AVDigitsConfig(
            speeds=args.speeds,
            pitches=args.pitches,
            accents=tuple(args.accents.split(",")),
            test_variant_fraction=args.test_variant_fraction,
            max_variants=args.max_variants,
            snr_db=args.snr,
            seed=args.seed,
            limit=args.limit,
        )
        manifest = avdigits.build(
            args.out, config, cache=args.cache, jobs=args.jobs, maxcount=args.maxcount, show_progress=not args.quiet
        )
    except (RuntimeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    voices = manifest["extra"]["voices"]
    print({name: entry["count"] for name, entry in manifest["splits"].items()}, "->", args.out)
    print({name: len(v) for name, v in voices.items()}, "voices (disjoint)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
