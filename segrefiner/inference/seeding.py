"""Per-item random generators derived from (global seed, item key)."""

from __future__ import annotations

import hashlib

import torch


def item_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed from a global seed and an item's identity (stable across processes)."""
    text = "\x1f".join([str(int(seed)), *map(str, keys)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def item_generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from (seed, keys): the same item gets the same noise
    whatever else shares its batch, shard or device."""
    return torch.Generator().manual_seed(item_seed(seed, *keys))
