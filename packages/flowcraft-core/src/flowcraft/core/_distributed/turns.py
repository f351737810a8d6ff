"""Turns: the decides of a contended run, across processes, one at a time.

Every decide is a compare-and-set on the run's header, so two processes deciding one run at once
(workers completing branches of one wide fan-in) are always correct, but the loser of each race
has done its decide for nothing, and a loser that keeps losing to a busy winner starves. Once a
process sees a run contended (``threshold`` of its saves refused within the window, or the run's
turn taken by another), its decides of that run take turns through a fenced lock of the
coordination store (``run:{run_id}:decide``): the holder catches up with what others saved,
decides everything queued for the run meanwhile (a bigger group commit the longer it waited) and
saves without a race; the others queue events and wait their turn. A holder with more events of
the run queued keeps its turn for up to ``hold`` seconds (its state stays current: no catch-up
between its saves), then lets the others have it.

The lock is only an optimisation: the compare-and-set still guards every save, so a lock that
expires under a slow holder, a holder that dies, or a coordination store that fails costs a
refused save at worst. A process waits for its turn at most ``max_wait`` seconds and then
decides without one. A run nobody contends for takes no lock at all (no round trip).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from flowcraft.core.ports import CoordinationStore

_log = logging.getLogger("flowcraft.coordinator")


class Turns:
    """Per-run decide turns of one process over a coordination store (None: never).

    Args:
        coordination: Where the locks live; None turns taking turns off.
        window: Seconds a run counts as contended after contention was last seen.
        threshold: Refused saves within the window that make a run contended (a run of a few
            nodes meets a conflict now and then: a retry is cheaper than turns for it).
        lock_ttl: Seconds a turn lasts at most (a dead holder's lock frees itself).
        max_wait: Seconds to wait for a turn before deciding without one.
        hold: Seconds a holder with more to decide keeps its turn.
        clock: Monotonic clock.
    """

    def __init__(
        self,
        coordination: CoordinationStore | None,
        *,
        window: float = 2.0,
        threshold: int = 3,
        lock_ttl: float = 5.0,
        max_wait: float = 1.0,
        hold: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._coordination = coordination
        self._window = window
        self._threshold = threshold
        self._lock_ttl = lock_ttl
        self._max_wait = max_wait
        self._hold = hold
        self._clock = clock
        self._held: dict[str, tuple[int, float]] = {}  # run id -> (token, taken at)
        self._contended: dict[str, tuple[float, int]] = {}  # run id -> (last seen, count)
        self._released: dict[str, float] = {}

    def contended(self, run_id: str) -> None:
        """Note contention on ``run_id`` (a refused save): its next decides take turns."""
        if self._coordination is None:
            return
        now = self._clock()
        seen, count = self._contended.get(run_id, (now, 0))
        self._contended[run_id] = (now, count + 1 if now - seen <= self._window else 1)
        if len(self._contended) > _PRUNE_AT:  # runs that ended while contended
            stale = [r for r, (at, _) in self._contended.items() if now - at > self._window]
            for old in stale:
                del self._contended[old]
                self._released.pop(old, None)

    def held(self, run_id: str) -> int | None:
        """The token of the turn this process holds on ``run_id`` (None: none)."""
        held = self._held.get(run_id)
        return None if held is None else held[0]

    def wanted(self, run_id: str) -> bool:
        """Whether a decide of ``run_id`` should take a turn now."""
        contention = self._contended.get(run_id)
        if contention is None:
            return False
        if self._clock() - contention[0] > self._window:
            del self._contended[run_id]
            self._released.pop(run_id, None)
            return False
        return contention[1] >= self._threshold

    async def take(self, run_id: str) -> int | None:
        """Wait for the run's turn; its fencing token, or None (gave up, or no store)."""
        store = self._coordination
        if store is None:
            return None
        name = f"run:{run_id}:decide"
        released = self._released.get(run_id)
        if released is not None and self._clock() - released < _GAP:
            await asyncio.sleep(_GAP)  # let a process that waits have the next turn
        deadline = self._clock() + self._max_wait
        poll = _POLL
        try:
            while True:
                token = await store.acquire_lock(name, ttl=self._lock_ttl)
                if token is not None:
                    self._held[run_id] = (token, self._clock())
                    return token
                # Someone else decides: contended, whatever the count.
                self._contended[run_id] = (self._clock(), self._threshold)
                if self._clock() >= deadline:
                    return None
                await asyncio.sleep(poll)
                poll = min(poll * 2, _MAX_POLL)
        except Exception:  # an optimisation only: decide without a turn
            _log.warning("run %s: no decide turn (coordination store failed)", run_id)
            return None

    def keep(self, run_id: str) -> bool:
        """Whether a holder with more of ``run_id`` to decide may keep its turn."""
        held = self._held.get(run_id)
        return held is not None and self._clock() - held[1] < self._hold

    async def give(self, run_id: str) -> None:
        """End this process's turn of ``run_id`` (if it holds one)."""
        held = self._held.pop(run_id, None)
        if held is None or self._coordination is None:
            return
        token = held[0]
        self._released[run_id] = self._clock()
        try:
            await self._coordination.release_lock(f"run:{run_id}:decide", token)
        except Exception:  # it expires on its own
            _log.warning("run %s: decide turn not released (coordination store failed)", run_id)


#: Seconds between polls of a busy turn (doubling up to the max: a waiting decide holds no
#: node slot, it only gathers more events), and the pause before a process takes the turn of
#: a run again right after its own (so a waiting process gets it: the lock is not a queue).
_POLL = 0.0005
#: How many contended runs are remembered before those not seen within the window are dropped.
_PRUNE_AT = 4096
_MAX_POLL = 0.008
_GAP = 0.001
