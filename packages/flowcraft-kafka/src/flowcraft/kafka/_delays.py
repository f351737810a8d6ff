"""Delays on Kafka without blocking consumption: delay tiers, pure arithmetic.

Kafka has no per-message delay. A delayed message goes to one of a few **delay topics**, each
with a fixed hold ``T`` (:data:`TIERS`): the tier chosen is the longest hold not longer than
the delay, and the message carries its due time (epoch milliseconds) in a header. A forwarder
(one per consumer hub) reads each delay topic in order and releases a message when its hold
has passed since it was produced (``timestamp + T``): within one topic those release times
only grow, so the head of a partition is always the next due and nothing behind it waits
longer than its own hold. Released, a message that is due goes to the jobs topic; one that
is not (its delay was longer than the hold) goes to the tier of what remains. Tier 0 holds
delays shorter than a second until their due time itself: a message behind it waits at most
that second. No message is ever early: a hold never exceeds the delay it stands for.

A delay of any length works (the last tier repeats), so ``max_delay`` is unbounded; each hop
is one more produce, about one per 10 minutes of a long delay.
"""

from __future__ import annotations

__all__ = ["TIERS", "release_at", "tier_for"]

#: The holds of the delay topics, seconds (tier i is the topic ``<jobs>.delay-<i>``).
TIERS: tuple[float, ...] = (0.0, 1.0, 5.0, 30.0, 120.0, 600.0)


def tier_for(delay: float) -> int:
    """The index of the delay topic for ``delay`` seconds (> 0)."""
    chosen = 0
    for index, hold in enumerate(TIERS):
        if hold <= delay:
            chosen = index
    return chosen


def release_at(tier: int, produced_ms: int, due_ms: int) -> int:
    """When a message of ``tier`` produced at ``produced_ms`` leaves its topic (epoch ms)."""
    if tier == 0:
        return due_ms
    return min(due_ms, produced_ms + int(TIERS[tier] * 1000))
