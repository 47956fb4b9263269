"""Seeds that are the same in every process: a stable hash (blake2b, never Python's per-process salted
``hash()``) and the torch.Generators derived from it. The data layer seeds each sample's views with
``derive_generator(seed, epoch, key)``; view generators use the same function, so views are the same inside and
outside the data pipeline."""

from __future__ import annotations

import hashlib
from typing import Any

import torch


def stable_hash(*parts: Any) -> int:
    """A 63-bit integer that depends only on ``parts`` (ints, floats, strings, bytes), in every process."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        if isinstance(part, bytes):
            h.update(b"b" + len(part).to_bytes(8, "little") + part)
        else:
            text = f"{type(part).__name__}:{part}".encode()
            h.update(b"s" + len(text).to_bytes(8, "little") + text)
    return int.from_bytes(h.digest(), "little") >> 1


def derive_generator(seed: int, *parts: Any) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``seed`` and ``parts`` (e.g. ``(epoch, key)``) by a stable hash.

    Examples:
        >>> g = derive_generator(0, 3, "sample-17")
        >>> torch.rand(1, generator=g).item() == torch.rand(1, generator=derive_generator(0, 3, "sample-17")).item()
        True
    """
    return torch.Generator().manual_seed(stable_hash(seed, *parts))


def child_generator(generator: torch.Generator) -> torch.Generator:
    """A new generator seeded by one draw from ``generator`` (independent streams for sub-generators)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator().manual_seed(seed)
