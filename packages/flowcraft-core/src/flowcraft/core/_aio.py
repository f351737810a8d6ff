"""Small asyncio helpers shared by core's modules (private)."""

from __future__ import annotations

import asyncio


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
