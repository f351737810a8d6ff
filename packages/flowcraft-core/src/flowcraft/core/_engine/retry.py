"""Retry maths: exponential backoff with deterministic jitter (pure)."""

from __future__ import annotations

import hashlib

from flowcraft.core._engine.plan import RetryPolicy


def unit_hash(seed: str) -> float:
    """A number in [0, 1) derived from ``seed``: the same seed always gives the same number."""
    digest = hashlib.blake2b(seed.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def backoff_delay(policy: RetryPolicy, failed_attempt: int, seed: str) -> float:
    """Seconds to wait after ``failed_attempt`` (1-based) before the next attempt.

    ``delay * backoff ** (failed_attempt - 1)``, capped at ``max_delay``, plus up to
    ``jitter`` times that much again, drawn from ``seed`` (the attempt's id) so that replays and
    duplicates agree on the delay while different instances still spread out.
    """
    base = policy.delay * policy.backoff ** (failed_attempt - 1)
    if policy.max_delay is not None:
        base = min(base, policy.max_delay)
    return base + base * policy.jitter * unit_hash(seed)
