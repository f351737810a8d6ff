"""``flowcraft.core.aio.wait_event``: set, timed out, and cancelled while the event fires."""

from __future__ import annotations

import asyncio

import pytest
from flowcraft.core.aio import wait_event


async def test_it_answers_whether_the_event_was_set() -> None:
    event = asyncio.Event()
    assert not await wait_event(event, 0.01)
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await wait_event(event, 5)
    assert await wait_event(event, 0)  # already set: no wait at all


async def test_a_cancellation_that_meets_the_event_firing_is_never_swallowed() -> None:
    # asyncio.wait_for on Python 3.11 returned normally here in some interleavings, and the
    # cancelled task went on as if nothing had happened (a close that waited forever).
    for _ in range(200):
        event = asyncio.Event()
        task = asyncio.ensure_future(wait_event(event, 10))
        await asyncio.sleep(0)
        event.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
