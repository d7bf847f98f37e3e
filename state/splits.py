"""Deterministic weighted splits (A/B variants of deliveries and journey steps)."""
from __future__ import annotations

import hashlib


def pick(options, *key: str):
    """The option for this key: the same on every worker and after every restart. Options have
    integer `weight`s summing to 100 (validated); blake2b, not hash(), which Python salts per
    process."""
    digest = hashlib.blake2b("\0".join(key).encode(), digest_size=8).digest()
    bucket = int.from_bytes(digest, "big") % 100
    cumulative = 0
    for option in options:
        cumulative += option.weight
        if bucket < cumulative:
            return option
    return options[-1]  # unreachable when the weights sum to 100
