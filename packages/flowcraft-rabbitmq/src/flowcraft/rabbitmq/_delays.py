"""Delayed delivery on plain RabbitMQ: a ladder of TTL queues and exact hops (pure helpers).

RabbitMQ has no per-message delay without a plugin. The adapter declares, on first use, one
durable *delay queue* per rung of ``LADDER_MS`` (``{prefix}.delay.{ms}``) with
``x-message-ttl = ms`` and dead-lettering (default exchange) back to the jobs queue. All messages
of a delay queue share one TTL, so they expire in FIFO order, exactly when due, and no consumer
is ever held.

A delay is split greedily over the ladder (``plan_hop``): the message first waits in the largest
rung not longer than the delay, carrying the rest in its ``x-flowcraft-delay-ms`` header; when it
reaches the jobs queue with a rest left, the receiving adapter re-publishes it for the rest
(publish with confirm, then ack: no consumer slot is held) instead of handing it to the runtime.
A rest shorter than the smallest rung waits the smallest rung. Hence:

* never early: every hop waits at least its rung's TTL and the hops add up to at least the delay;
* late by at most ``LADDER_MS[0]`` (50 ms) plus a few milliseconds of broker latency per hop;
* few hops: 1.3 s = 1 s + 250 ms + 50 ms (3), never more than 20 up to an hour, then one more
  per hour; each costs one confirmed publish and one ack (~1.5 ms on loopback). ``max_delay``
  is therefore unlimited (``None``): the runtime need not chain, the hops do it.

Delays are integer milliseconds (rounded up) so that float arithmetic never shortens one.
"""

from __future__ import annotations

import math

__all__ = ["LADDER_MS", "delay_ms", "plan_hop"]

#: The rungs of the delay ladder, in milliseconds (50 ms ... 1 h).
LADDER_MS: tuple[int, ...] = (
    50, 100, 250, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000, 900_000, 3_600_000,
)  # fmt: skip


def delay_ms(seconds: float) -> int:
    """A delay in whole milliseconds, rounded up (never shorter than asked); 0 for none."""
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"delay must be a finite number of seconds, got {seconds!r}")
    return max(0, math.ceil(seconds * 1000))


def plan_hop(remaining_ms: int) -> tuple[int, int]:
    """The rung to wait in next and what remains after it, for a delay of ``remaining_ms``.

    The largest rung not longer than the delay; the smallest rung when the delay is shorter
    than every rung (the rest is then 0).
    """
    if remaining_ms <= 0:
        raise ValueError(f"remaining delay must be positive, got {remaining_ms}")
    fitting = [rung for rung in LADDER_MS if rung <= remaining_ms]
    rung = fitting[-1] if fitting else LADDER_MS[0]
    return rung, max(0, remaining_ms - rung)
