"""Start node coroutines eagerly: run each until its first suspension, on the spot.

A node that finishes without awaiting anything (CPU-light nodes, inline sync nodes) then costs
no task and no event-loop turn. One that suspends goes on in a real asyncio Task that resumes it
exactly where it stopped, so cancellation and awaiting behave as in any task. Python 3.12's
eager task factory does the same; this keeps Python 3.11 supported.

As in an eager task, the coroutine runs in a copy of the caller's context from its first step
to its last: the task that continues it gets the same copy. A context variable it sets (a
tracing span made current, the running node for log records) is thus reset in the context it
was set in, and never leaks into the caller's.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any


def start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` to its first suspension; a Task that continues it, or None if it finished."""
    context = contextvars.copy_context()
    try:
        pending = context.run(coro.send, None)
    except StopIteration:
        return None
    loop = asyncio.get_running_loop()
    return loop.create_task(_continue(_Resume(coro, pending)), context=context)


async def _continue(resume: _Resume) -> None:
    await resume


class _Resume:
    """An awaitable that hands a half-run coroutine's suspension point to the running Task."""

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Coroutine[Any, Any, None], pending: object) -> None:
        self._coro = coro
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, None]:
        coro, pending = self._coro, self._pending
        while True:
            try:
                sent = yield pending
            except BaseException as exc:  # thrown in by the Task (cancellation): pass it on
                try:
                    pending = coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                pending = coro.send(sent)
            except StopIteration:
                return
