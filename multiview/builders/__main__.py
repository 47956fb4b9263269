"""Write a data set's shards: ``python -m multiview.builders NAME --out DIR [options]``.

NAME is one of avdigits, basicmotions, fashion_mnist, mfeat, scenes; ``NAME --help`` lists its options. The
scripts ``datasets/NAME.py`` run the same command line.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from multiview.builders._common import BUILDERS, run_builder


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in BUILDERS:
        asked = bool(argv) and argv[0] in ("-h", "--help")
        if not asked:
            print(f"error: expected a builder name, one of {', '.join(BUILDERS)}; got {argv[:1]}", file=sys.stderr)
        print(__doc__.strip(), file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    return run_builder(argv[0], argv[1:], prog=f"python -m multiview.builders {argv[0]}")


if __name__ == "__main__":
    raise SystemExit(main())
