"""What an evaluation shows while it runs: a tqdm bar on stderr for every phase that can take more than a few
seconds (embedding a split, in samples/s; fitting CCA per pair; each probe's weight-decay search; scoring;
plots), as training shows its steps, and one log line at the end with the seconds each phase took.

Bars are drawn only when asked (:attr:`multiview.eval.base.EvalContext.progress`, ``--quiet`` on the command
line, ``log.progress`` in a recipe) and stderr is a terminal (or a notebook), so logs and pipes stay clean.
They never change a result: they wrap iterables and count.

Examples:
    >>> timer = PhaseTimer()
    >>> with timer.phase("embed"):
    ...     pass
    >>> list(timer.seconds)
    ['embed']
    >>> with progress_bar(range(3), desc="demo", enabled=False) as bar:
    ...     sum(bar)
    3
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


def interactive() -> bool:
    """Whether a person watches stderr: a terminal, or a notebook kernel."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str = "it",
    enabled: bool = True,
):
    """A tqdm bar on stderr (disabled unless ``enabled`` and :func:`interactive`); it is removed when done, the
    phase's time goes to the log line of :class:`PhaseTimer`. Use it as an iterable or call ``update(n)``."""
    from tqdm.auto import tqdm

    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        leave=False,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=not (enabled and interactive()),
    )


class PhaseTimer:
    """Wall-clock seconds per named phase of one evaluation (``embed``, ``fit``, ``score``, ``plots``); a phase
    entered twice adds up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def rounded(self) -> dict[str, float]:
        """``{phase: seconds}`` rounded to 0.01 s (for the report)."""
        return {name: round(s, 2) for name, s in self.seconds.items()}

    def line(self, task: str) -> str:
        """``"retrieval took 12.3 s: embed 1.0 s, fit 0.4 s, ..."``."""
        parts = ", ".join(f"{name} {s:.1f} s" for name, s in self.seconds.items())
        return f"{task} took {sum(self.seconds.values()):.1f} s: {parts}"
