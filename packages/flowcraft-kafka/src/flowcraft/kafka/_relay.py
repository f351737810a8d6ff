"""Hand-over of driver-thread completions to the event loop, one wake-up per batch.

cassandra-driver's I/O thread and the producer's poll thread finish requests outside the event
loop. ``loop.call_soon_threadsafe`` per completion writes the loop's self-pipe (a system call
on each side) every time; a :class:`Relay` queues completions and wakes the loop only when its
queue was empty, so the completions that arrive while the loop is busy or asleep are run by one
wake-up, in the order they came.

Guarantee: every callable :meth:`Relay.post` accepts runs exactly once on the loop, unless the
loop is closed first (then none runs, as with ``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Relay"]


class Relay:
    """Runs callables posted from any thread on ``loop``, batched per wake-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._pending: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._scheduled = False
        self.wakeups = 0  # loop wake-ups asked for (tests and benchmarks read it)

    def post(self, call: Callable[..., None], *args: Any) -> None:  # noqa: ANN401
        """Run ``call(*args)`` on the loop soon (thread-safe; dropped if the loop is closed)."""
        self._pending.append((call, args))
        if self._scheduled:
            return  # the drain to come pops it: it clears the flag before it pops
        self._scheduled = True
        self.wakeups += 1
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: nothing will run (and nothing piles up)
            self._pending.clear()
            self._scheduled = False

    def forward(self, value: object, call: Callable[..., None], *args: Any) -> None:  # noqa: ANN401
        """:meth:`post` of ``call(value, *args)``.

        The shape of a driver's callback, which passes its value first and the registered
        arguments after.
        """
        self.post(call, value, *args)

    def _drain(self) -> None:
        self._scheduled = False
        pending = self._pending
        try:
            while pending:
                call, args = pending.popleft()
                call(*args)
        except BaseException:  # the rest still runs, on the next turn
            if pending and not self._scheduled:
                self._scheduled = True
                self.loop.call_soon(self._drain)
            raise
