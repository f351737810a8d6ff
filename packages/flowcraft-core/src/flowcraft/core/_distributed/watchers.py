"""Watches of runs' ends by run id: the in-process half of every ``RunNotifier``.

A store that can be told when a run ends (PostgreSQL ``LISTEN``, Redis pub/sub, the memory
store's own saves) keeps one :class:`RunWatchers` and calls :meth:`RunWatchers.notify` with the
run id of each notification it receives (and the notice it carried, for a
``ports.ResultNotifier``), or :meth:`RunWatchers.notify_all` when it may have missed some (its
connection broke): every watch wakes and its owner reads the record again. ``watch`` is what
the store's ``RunNotifier.watch`` returns. Everything runs on the event loop that owns the
store; nothing here does I/O except the optional ``ready`` callback.

Stores whose notifications are text on a channel every listener hears (``pg_notify``, Redis
``PUBLISH``) frame the run id and its notice with :func:`notification_payload` and read them
back with :func:`read_notification_payload`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

__all__ = ["RunWatchers", "notification_payload", "read_notification_payload"]

#: Between the run id and the notice in a payload. JSON text never holds it raw (control
#: characters are escaped), so the last one in a payload is the separator.
_SEPARATOR = "\x1f"


def notification_payload(
    run_id: str, notice: str | None, *, notice_limit: int, payload_limit: int | None = None
) -> str:
    """The text that says ``run_id`` ended, with ``notice`` if it fits.

    The notice goes along if it takes at most ``notice_limit`` bytes (the store's
    ``ports.ResultNotifier.notice_limit``) and the whole payload at most ``payload_limit``
    (the channel's: under 8,000 for ``pg_notify``); otherwise the run id goes alone.
    """
    if notice and len(notice.encode()) <= notice_limit:
        payload = f"{run_id}{_SEPARATOR}{notice}"
        if payload_limit is None or len(payload.encode()) <= payload_limit:
            return payload
    return f"{run_id}{_SEPARATOR}"


def read_notification_payload(payload: str) -> tuple[str, str | None]:
    """The run id and the notice (None: none) of a payload (a bare run id is read as one)."""
    run_id, separator, notice = payload.rpartition(_SEPARATOR)
    if not separator:
        return payload, None
    return run_id, notice or None


class _Watch:
    """One subscriber's wake-up flag (``ports.RunWatch``)."""

    __slots__ = ("_event", "notice")

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.notice: str | None = None

    def set(self, notice: str | None = None) -> None:
        if notice is not None:
            self.notice = notice
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        if not self._event.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await self._event.wait()
            except TimeoutError:
                return False
        self._event.clear()
        return True


class RunWatchers:
    """Subscribers by run id.

    Args:
        ready: Awaited when a watch begins, before it counts as subscribed: the store makes
            sure it is listening (connects and subscribes once; later calls return at once).
            It may raise the store's backend errors; the watch is then not entered.
    """

    def __init__(self, ready: Callable[[], Awaitable[None]] | None = None) -> None:
        self._ready = ready
        self._by_run: dict[str, set[_Watch]] = {}

    @asynccontextmanager
    async def watch(self, run_id: str) -> AsyncIterator[_Watch]:
        """Subscribe to ``run_id`` for the duration of the block."""
        if self._ready is not None:
            await self._ready()
        watch = _Watch()
        subscribers = self._by_run.setdefault(run_id, set())
        subscribers.add(watch)
        try:
            yield watch
        finally:
            subscribers.discard(watch)
            if not subscribers and self._by_run.get(run_id) is subscribers:
                del self._by_run[run_id]

    def notify(self, run_id: str, notice: str | None = None) -> None:
        """Wake the watches of ``run_id``, handing them ``notice`` if any (none: no-op)."""
        for watch in self._by_run.get(run_id, ()):
            watch.set(notice)

    def notify_all(self) -> None:
        """Wake every watch (notifications may have been lost)."""
        for subscribers in self._by_run.values():
            for watch in subscribers:
                watch.set()

    def __len__(self) -> int:
        """Run ids watched now."""
        return len(self._by_run)
