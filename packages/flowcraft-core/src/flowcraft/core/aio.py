"""Small asyncio helpers for core and for adapter authors (public, stable).

An adapter's receive loop, notification hub or clean-up tasks meet the same two asyncio
pitfalls core met; these are the answers core uses itself:

* :func:`wait_event` waits for an ``asyncio.Event`` with a timeout without the Python 3.11
  ``asyncio.wait_for`` hazard (a cancellation swallowed when it meets the event firing).
* :class:`BackgroundTasks` keeps fire-and-forget work referenced until it is done, logs its
  failures and lets ``close()`` wait for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["BackgroundTasks", "wait_event"]


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set, at most ``timeout`` seconds (None: no limit); True if set.

    Built on ``asyncio.timeout``, not ``asyncio.wait_for``: on Python 3.11 ``wait_for`` can
    swallow a cancellation that arrives while the event fires (CPython gh-86296), leaving a
    task that ignores ``cancel()`` and a ``close()`` that waits for it forever. A cancellation
    of the caller always propagates here.
    """
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


class BackgroundTasks:
    """Fire-and-forget work kept until done: a failure is logged, :meth:`wait` awaits it all.

    ``log`` and ``what`` name the warning a failed task leaves (``"<what> failed: <error>"``);
    a cancelled task leaves none. Used by adapters for clean-ups after a call has answered.
    """

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log, self._what = log, what
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a task of its own (kept referenced until it is done)."""
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.warning("%s failed: %s", self._what, task.exception())

    async def wait(self, *, until_empty: bool) -> None:
        """Wait for the running tasks (``until_empty``: and for those they spawn meanwhile)."""
        while self._tasks:
            await asyncio.gather(*set(self._tasks), return_exceptions=True)
            if not until_empty:
                return
