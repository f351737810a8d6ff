"""Requests of one event-loop turn handled together, each caller answered alone.

``TurnBatch`` gathers what is submitted in one turn of the event loop (the first ``submit``
schedules the flush with ``call_soon``), hands the lot (at most ``limit`` per call) to
``handle`` in a task of its own, and gives each caller its own answer: a result, or the
exception ``handle`` put in that caller's place. The run store uses it to send the attempt
claims of one turn (a fan-out's jobs received together) in one ``TransactWriteItems``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["TurnBatch"]

_T = TypeVar("_T")
_R = TypeVar("_R")


class TurnBatch(Generic[_T, _R]):
    """Entries submitted in one event-loop turn go to ``handle`` together.

    ``handle`` returns one answer per entry, in order: the entry's result, or an exception
    raised to that entry's caller. An exception ``handle`` raises is every caller's.
    """

    def __init__(
        self,
        handle: Callable[[list[_T]], Awaitable[Sequence[_R | BaseException]]],
        *,
        limit: int,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._handle, self._limit, self._spawn = handle, limit, spawn
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
        for start in range(0, len(pending), self._limit):
            self._spawn(self._answer(pending[start : start + self._limit]))

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
