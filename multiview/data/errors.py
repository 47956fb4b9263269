"""What goes wrong reading shards, and what to do about it: :class:`ShardError` and the ``on_error`` policy.

Every reader (the indexed one and the streaming one) raises ShardError for bad data -- a missing or truncated
shard, an unreachable URL, a sample lacking a field, bytes that do not decode -- naming the shard (file or URL),
the key and the field. :class:`ErrorPolicy` applies the user's choice: re-raise, or count, log and skip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("multiview.data")
ON_ERROR = ("raise", "skip")
T = TypeVar("T")


class ShardError(ValueError):
    """A shard, a sample or a field cannot be read or decoded.

    Attributes ``shard`` (a file name or URL), ``key``, ``field`` and ``cause`` hold the parts of the message.
    """

    def __init__(self, shard: str, cause: str, key: str | None = None, field: str | None = None):
        self.shard, self.key, self.field, self.cause = shard, key, field, cause
        where = shard + (f", key {key!r}" if key is not None else "") + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {cause}")

    def __reduce__(self):  # DataLoader workers send exceptions to the main process by pickling them
        return type(self), (self.shard, self.cause, self.key, self.field)


class ErrorPolicy:
    """Applies ``on_error``: re-raise, or log the skip and count it (``report()`` logs the total).

    A count is of distinct bad samples (and bad shard remainders): an error of a sample already counted -- a
    slot reading its shards again to pad its rank, a resampled shard drawn again -- is skipped again but
    neither counted nor logged twice. A sample is known by ``ident`` where the caller gives one, else by the
    error's shard and key; a keyless error without ``ident`` counts every time.

    Args:
        on_error: "raise" or "skip".
        where: what is being read (a folder and split, a URL pattern): the prefix of the end-of-epoch total.
    """

    def __init__(self, on_error: str, where: str):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error is {on_error!r}; expected one of {ON_ERROR}")
        self.on_error, self.where, self.skipped = on_error, where, 0
        self._logged: set[str] = set()
        self._counted: set = set()

    def handle(self, err: ShardError, what: str = "sample", count: int = 1, ident: Any = None) -> None:
        """Re-raise ``err`` (raise mode) or count ``count`` skipped items and log the error, once per sample."""
        if self.on_error == "raise":
            raise err
        if ident is None and err.key is not None:
            ident = (err.shard, err.key)
        if ident is not None:
            if ident in self._counted:
                return
            self._counted.add(ident)
        self.skipped += count
        if err.key is not None or str(err) not in self._logged:  # a bad shard is logged once, not per sample
            self._logged.add(str(err))
            log.warning("skipped %s: %s", what, err)

    def attempt(self, read: Callable[..., T], *args: Any, what: str = "sample", ident: Any = None) -> T | None:
        """``read(*args)``, or None after handling its ShardError (``ident``: see :meth:`handle`)."""
        try:
            return read(*args)
        except ShardError as err:
            self.handle(err, what, ident=ident)
            return None

    def report(self) -> None:
        if self.skipped:
            log.warning("%s: skipped %d bad sample(s) this epoch", self.where, self.skipped)
