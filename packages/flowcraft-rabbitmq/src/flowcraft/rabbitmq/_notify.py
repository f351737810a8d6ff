"""Runs' ends over PostgreSQL ``LISTEN/NOTIFY``: the ``RunNotifier`` half of ``PostgresContext``.

A save whose status is terminal calls ``pg_notify(channel, payload)`` inside its own statement,
so the notification is sent when (and only if) that save commits; the payload is the run id
and, when it fits, the notice of a settled run's result (``ports.ResultNotifier``; framed by
``notification_payload``). One connection per store
(opened at the first watch, outside the pool: a listening connection is never handed to other
work) runs ``LISTEN channel`` and reads notifications in a task, waking the watches of the
notified run id. The channel is per namespace (derived from the run table's name).

When that connection breaks, every watch is woken (its owner reads the record again: nothing
is missed by the ones that read after the break) and the next watch connects again;
notifications sent while nobody listened are lost, which the port allows (waiters poll now
and then as a fallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
from flowcraft.core.backends import RunWatchers, read_notification_payload
from flowcraft.core.ports import RunWatch
from flowcraft.rabbitmq._errors import postgres_errors
from psycopg import sql

__all__ = ["PostgresNotifications", "channel_name"]

#: A pool's connection string, or its function returning one (maybe awaitable).
ConnInfo = str | Callable[[], str] | Callable[[], Awaitable[str]]
#: A pool's connection options, or its function returning them (maybe awaitable).
ConnOptions = (
    dict[str, Any] | Callable[[], dict[str, Any]] | Callable[[], Awaitable[dict[str, Any]]]
)

_MAX_CHANNEL = 63  # NAMEDATALEN - 1: pg_notify refuses longer channel names


def channel_name(runs_table: str) -> str:
    """The channel of a namespace: readable when short enough, hashed otherwise."""
    name = f"flowcraft_done:{runs_table}"
    if len(name.encode()) <= _MAX_CHANNEL:
        return name
    digest = hashlib.sha256(runs_table.encode()).hexdigest()[:32]
    return f"flowcraft_done:{digest}"


class PostgresNotifications:
    """Listens on one channel and wakes the watches of the run ids it hears.

    Args:
        conninfo: Connection string of the listening connection (or the pool's function
            that returns one, called at each connect).
        options: Extra connection keyword arguments (those of the store's pool, likewise).
        channel: The namespace's channel (:func:`channel_name`).
        connect_timeout: Seconds to wait for the connection.
    """

    def __init__(
        self,
        conninfo: ConnInfo,
        options: ConnOptions | None,
        channel: str,
        connect_timeout: float,
    ) -> None:
        self._conninfo = conninfo
        self._options = options
        self.channel = channel
        self._connect_timeout = connect_timeout
        self._watchers = RunWatchers(self._listening)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def watch(self, run_id: str) -> AbstractAsyncContextManager[RunWatch]:
        """Subscribe to ``run_id``'s end (connects and listens first if needed)."""
        return self._watchers.watch(run_id)

    async def _listening(self) -> None:
        if self._task is not None and not self._task.done():
            return
        async with self._lock:
            if self._closed:
                raise RuntimeError("the store is closed")
            if self._task is not None and not self._task.done():
                return
            with postgres_errors("listen"):
                options: dict[str, Any] = await _resolve(self._options or {})
                skipped = {"prepare_threshold", "autocommit", "connect_timeout"}
                conn = await psycopg.AsyncConnection.connect(
                    await _resolve(self._conninfo),
                    autocommit=True,
                    connect_timeout=max(1, round(self._connect_timeout)),
                    **{k: v for k, v in options.items() if k not in skipped},
                )
                try:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                except BaseException:
                    await conn.close()
                    raise
            self._task = asyncio.get_running_loop().create_task(self._read(conn))

    async def _read(self, conn: psycopg.AsyncConnection[Any]) -> None:
        try:
            async for note in conn.notifies():
                self._watchers.notify(*read_notification_payload(note.payload))
        except psycopg.Error:
            pass  # the connection broke: wake everyone below, connect again at the next watch
        finally:
            self._watchers.notify_all()
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def close(self) -> None:
        """Stop listening and close the connection (idempotent)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _resolve(setting: Any) -> Any:  # noqa: ANN401 - a ConnInfo or ConnOptions
    """The value of a pool setting: itself, or what its function returns (awaited if needed)."""
    if not callable(setting):
        return setting
    value = setting()
    return await value if inspect.isawaitable(value) else value
