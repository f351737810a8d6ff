"""Small asyncio helpers for core and for adapter authors (public, stable).

An adapter's receive loop, notification hub or clean-up tasks meet the same two asyncio
pitfalls core met; these are the answers core uses itself:

* :func:`wait_event` waits for an ``asyncio.Event`` with a timeout without the Python 3.11
  ``asyncio.wait_for`` hazard (a cancellation swallowed when it meets the event firing).
* :class:`BackgroundTasks` keeps fire-and-forget work referenced until it is done, logs its
  failures and lets ``close()`` wait for it.
* :class:`TurnBatch` hands what callers submit in one event-loop turn to one handler call
  (e.g. the attempt claims of a fan-out's jobs received together, in one transaction) and
  answers each caller alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["BackgroundTasks", "TurnBatch", "wait_event"]

_T = TypeVar("_T")
_R = TypeVar("_R")


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


class TurnBatch(Generic[_T, _R]):
    """Entries submitted in one event-loop turn go to ``handle`` together.

    The first ``submit`` of a turn schedules the hand-over with ``call_soon``; ``handle``
    gets the lot (at most ``limit`` entries per call, each call in a task of ``spawn``) and
    returns one answer per entry, in order: the entry's result, or an exception raised to
    that entry's caller. An exception ``handle`` raises is every caller's of that call.
    Instead of ``limit``, ``split`` may cut a turn's entries into the calls' lists (e.g. by
    count and total size): in order, consecutive, every entry once.
    """

    def __init__(
        self,
        handle: Callable[[list[_T]], Awaitable[Sequence[_R | BaseException]]],
        *,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        limit: int | None = None,
        split: Callable[[list[_T]], list[list[_T]]] | None = None,
    ) -> None:
        if split is None:
            if limit is None:
                raise TypeError("TurnBatch takes limit or split")
            split = _by_count(limit)
        elif limit is not None:
            raise TypeError("TurnBatch takes limit or split, not both")
        self._handle, self._spawn, self._split = handle, spawn, split
        self._pending: list[tuple[_T, asyncio.Future[_R]]] = []

    async def submit(self, entry: _T) -> _R:
        """Handle ``entry`` with the others of this turn; its answer (or its exception)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_R] = loop.create_future()
        self._pending.append((entry, future))
        if len(self._pending) == 1:
            loop.call_soon(self.flush)
        return await future

    def flush(self) -> None:
        """Hand over what is pending now (idempotent)."""
        pending, self._pending = self._pending, []
        start = 0
        for entries in self._split([entry for entry, _ in pending]):
            self._spawn(self._answer(pending[start : start + len(entries)]))
            start += len(entries)

    async def _answer(self, batch: list[tuple[_T, asyncio.Future[_R]]]) -> None:
        try:
            answers = await self._handle([entry for entry, _ in batch])
        except Exception as exc:  # the whole call failed: so did each entry
            answers = [exc] * len(batch)
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)


def _by_count(limit: int) -> Callable[[list[_T]], list[list[_T]]]:
    def split(entries: list[_T]) -> list[list[_T]]:
        return [entries[i : i + limit] for i in range(0, len(entries), limit)]

    return split
