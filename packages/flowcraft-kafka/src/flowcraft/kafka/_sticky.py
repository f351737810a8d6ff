"""Sticky routing of one process's jobs: pure bookkeeping, no I/O (the clock is passed in).

A sticky enqueue (``enqueue(sticky=True)``: the next node attempts of a run a worker just
decided, which that worker runs ahead of their messages) is produced to a partition of the jobs
topic this process owns, chosen by the message key among the owned ones, and is *preferred* for
the queue object that sent it: the process's other queue objects leave it alone until
``timeout`` seconds have passed or that object stops receiving. The message is an ordinary
message of the jobs topic all the same: committed only once settled, and if the process dies
or its partitions move (a rebalance), the new owner delivers it like any other (at-least-once;
the attempt's lease, taken by the save, keeps it from running twice). No preference, and the
key's partition (any process), when the process owns no partition yet or ``limit`` preferred
messages are still on their way (a worker does not hoard jobs it cannot run soon).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

__all__ = ["STICKY_LIMIT", "StickyRoutes"]

#: Sticky messages a process routes to its own partitions within the sticky timeout, at most
#: (the adapter's default ``sticky_limit``). Below it, a hundred fan-out runs at once keep their
#: steps with the processes that decide them; 64 (the old bound, ``prefetch``) sent a quarter of
#: their middles to other processes at four workers: a claim, a load and a contended save each.
STICKY_LIMIT = 512


class StickyRoutes:
    """Which sticky messages are preferred for which queue object, until when."""

    def __init__(self, *, timeout: float, limit: int) -> None:
        if timeout <= 0 or limit < 1:
            raise ValueError(f"StickyRoutes: timeout {timeout} and limit {limit} must be > 0")
        self.timeout = timeout
        self.limit = limit
        self._preferred: dict[bytes, tuple[object, float]] = {}

    def __len__(self) -> int:
        return len(self._preferred)

    def route(self, key: bytes, owner: object, owned: Sequence[int], now: float) -> int | None:
        """The partition for ``owner``'s sticky message ``key`` (None: by key, no preference)."""
        self._expire(now)
        if not owned or len(self._preferred) >= self.limit:
            return None
        self._preferred[key] = (owner, now + self.timeout)
        return sorted(owned)[zlib.crc32(key) % len(owned)]

    def withheld(self, key: bytes, taker: object, now: float) -> bool:
        """Whether ``taker`` leaves this message to the queue object it is preferred for.

        A message handed out (to its owner, or to anyone once its preference ran out) is
        forgotten.
        """
        found = self._preferred.get(key)
        if found is None:
            return False
        owner, until = found
        if owner is not taker and until > now:
            return True
        del self._preferred[key]
        return False

    def drop(self, owner: object) -> None:
        """``owner`` stopped receiving: its messages go to whoever takes them."""
        for key in [k for k, (o, _) in self._preferred.items() if o is owner]:
            del self._preferred[key]

    def _expire(self, now: float) -> None:
        for key in [k for k, (_, until) in self._preferred.items() if until <= now]:
            del self._preferred[key]
