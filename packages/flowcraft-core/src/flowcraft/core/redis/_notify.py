"""``NotifyingRunStore``: runs' ends over Redis pub/sub, for a run store that cannot notify.

Spec sheet
----------
* What: wraps any ``RunStore`` (Cosmos DB, Cassandra, ...) and adds ``ports.RunNotifier``.
  Every ``RunStore`` method is forwarded unchanged; any other attribute of the inner store
  (``ensure_schema``, ``container``, ...) is reachable through the wrapper; ``inner`` is the
  wrapped store. ``close`` closes the wrapper's Redis connections, then the inner store.
* Channel: one per namespace, ``{prefix}:runs-ended``; a message is the id of a run and, for
  a settled run, the notice of its result when it fits ``notice_limit`` (``ports.
  ResultNotifier``; framed by ``flowcraft.core.backends.notification_payload``).
* Publishing: after a ``save_state`` that returned True with a terminal status
  (``completed``, ``failed``, ``cancelled``), the wrapper publishes the run id: one
  ``PUBLISH`` after the commit, so a process that dies between the commit and the publish, or
  a publish that fails (Redis unreachable: logged as a warning on ``flowcraft.redis``, never
  raised, since the save stands), loses that notification. The port allows it: waiters read
  the record now and then as a fallback. Refused saves and non-terminal saves publish nothing.
  Likewise after a ``create_started_run`` (present when the inner store is a
  ``ports.RunStarter``) that created a run with a terminal status.
* Watching: one ``SUBSCRIBE`` per wrapper, on a connection of its own (opened at the first
  watch; the watch is entered once Redis confirmed the subscription, so a save committed
  afterwards notifies it), read by one task that wakes the watches of each run id it hears.
  When that connection breaks (server restart, ``CLIENT KILL``), every watch is woken (its
  owner reads the record again) and the next watch subscribes again; messages published while
  nobody was subscribed are lost, which the port allows. The listening connection does not
  retry on its own, so a break is always seen.
* Errors: subscribing raises ``TransientBackendError`` or ``PermanentBackendError`` (redis-py
  errors translated as by ``RedisCoordinationStore``); a watch after ``close`` raises
  ``RuntimeError``.
* Connections: pass a URL (the wrapper owns and closes its client) or your own
  ``redis.asyncio.Redis`` (you close it; the listening connection is the wrapper's own, made
  with the same connection settings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from flowcraft.core._distributed.watchers import (
    RunWatchers,
    notification_payload,
    read_notification_payload,
)
from flowcraft.core._engine.state import RunStatus
from flowcraft.core.errors import BackendError
from flowcraft.core.ports import (
    AttemptClaim,
    Message,
    RunPage,
    RunRecord,
    RunStore,
    RunWatch,
    StoredState,
)
from flowcraft.core.redis._errors import redis_errors
from redis import exceptions as rx
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = ["NotifyingRunStore"]

_log = logging.getLogger("flowcraft.redis")
_TERMINAL = frozenset(status.value for status in RunStatus if status.terminal)


class NotifyingRunStore:
    """A ``RunStore`` that tells waiters when runs end, through Redis pub/sub.

    Also a ``ports.ResultNotifier``: a settled run's notification carries its result, up to
    ``notice_limit`` bytes (every subscriber of the namespace receives every run's end, so
    the notices stay small, like PostgreSQL's).

    Args:
        store: The run store to wrap.
        url_or_client: A ``redis://`` URL, or a ``redis.asyncio.Redis`` client.
        prefix: The namespace (the channel is ``{prefix}:runs-ended``).
        subscribe_timeout: Seconds to wait for Redis to confirm the subscription.
    """

    #: The largest notice a notification carries (``ports.ResultNotifier``).
    notice_limit = 7900

    def __init__(
        self,
        store: RunStore,
        url_or_client: str | Redis,
        *,
        prefix: str = "flowcraft",
        subscribe_timeout: float = 10.0,
    ) -> None:
        if not prefix:
            raise ValueError("prefix must not be empty")
        self.inner = store
        self.channel = f"{prefix}:runs-ended"
        self._owns_client = isinstance(url_or_client, str)
        self._client: Redis = (
            Redis.from_url(url_or_client) if isinstance(url_or_client, str) else url_or_client
        )
        self._subscribe_timeout = subscribe_timeout
        self._listener: Redis | None = None
        self._watchers = RunWatchers(self._listening)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - the inner store's attribute
        """Attributes of the inner store the wrapper does not define.

        ``create_started_run`` (``ports.RunStarter``) exists only where the inner store has
        it (so the wrapper is a starter exactly when its store is), and publishes as a
        terminal ``save_state`` does when it created a run with a terminal status.
        """
        if name == "inner":  # not set yet (a half-built or unpickled wrapper)
            raise AttributeError(name)
        found = getattr(self.inner, name)
        if name == "create_started_run":
            return self._notifying_start(found)
        return found

    def _notifying_start(self, start: Any) -> Any:  # noqa: ANN401 - the inner store's method
        async def create_started_run(
            record: RunRecord, *, status: str, **state: object
        ) -> tuple[RunRecord, bool]:
            created, new = await start(record, status=status, **state)
            if new and status in _TERMINAL:
                await self._publish(created.run_id)
            return created, new

        return create_started_run

    # ------------------------------------------------------------------ RunNotifier

    def watch(self, run_id: str) -> AbstractAsyncContextManager[RunWatch]:
        """Subscribe to ``run_id``'s end (subscribes to the channel first if needed)."""
        return self._watchers.watch(run_id)

    async def _listening(self) -> None:
        if self._task is not None and not self._task.done():
            return
        async with self._lock:
            if self._closed:
                raise RuntimeError("the store is closed")
            if self._task is not None and not self._task.done():
                return
            pubsub = self._listen_client().pubsub()
            try:
                with redis_errors(f"subscribe {self.channel}"):
                    async with asyncio.timeout(self._subscribe_timeout):
                        await pubsub.subscribe(self.channel)
                        await self._confirmed(pubsub)
            except BaseException:
                await _close_quietly(pubsub)
                raise
            self._task = asyncio.get_running_loop().create_task(self._read(pubsub))

    def _listen_client(self) -> Redis:
        """A client on the same server whose connections never retry (a break must show)."""
        if self._listener is None:
            pool = self._client.connection_pool
            settings = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
            own = ConnectionPool(connection_class=pool.connection_class, **settings)
            self._listener = Redis(connection_pool=own)
        return self._listener

    async def _confirmed(self, pubsub: PubSub) -> None:
        """Read until Redis confirms the subscription (run ids heard meanwhile count)."""
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            if message["type"] == "subscribe":
                return
            self._heard(message)

    async def _read(self, pubsub: PubSub) -> None:
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is not None:
                    self._heard(message)
        except (rx.RedisError, OSError):
            pass  # the connection broke: wake everyone below, subscribe again at the next watch
        finally:
            self._watchers.notify_all()
            await _close_quietly(pubsub)

    def _heard(self, message: Mapping[str, Any]) -> None:
        if message["type"] == "message":
            data = message["data"]
            payload = data.decode() if isinstance(data, bytes) else str(data)
            self._watchers.notify(*read_notification_payload(payload))

    async def _publish(self, run_id: str, notice: str | None = None) -> None:
        payload = notification_payload(run_id, notice, notice_limit=self.notice_limit)
        try:
            with redis_errors(f"publish {self.channel}"):
                await self._client.publish(self.channel, payload)
        except BackendError as exc:
            _log.warning("run %s ended, but its notification was not sent: %s", run_id, exc)

    async def close(self) -> None:
        """Stop listening, close the wrapper's connections, then the inner store (idempotent)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        listener, self._listener = self._listener, None
        with redis_errors("close"):
            if listener is not None:
                await listener.aclose(close_connection_pool=True)
            if self._owns_client:
                await self._client.aclose()
        close = getattr(self.inner, "close", None)
        if close is not None:
            await close()

    # ------------------------------------------------------------------ RunStore

    async def save_state(
        self,
        run_id: str,
        *,
        expected_version: int,
        header: Mapping[str, object],
        records: Mapping[str, object],
        context_writes: Mapping[str, object],
        outbox: Sequence[Message],
        status: str,
        output: object = None,
        errors: Sequence[Mapping[str, object]] = (),
        outcomes: Sequence[tuple[str, bytes]] = (),
        claims: Sequence[tuple[str, str, float]] = (),
        sent: Sequence[str] = (),
        notice: str | None = None,
    ) -> bool:
        """The inner store's ``save_state``; then, if saved and terminal, the notification.

        The notification carries ``notice`` (``ports.ResultNotifier``) when it fits.
        """
        saved = await self.inner.save_state(
            run_id, expected_version=expected_version, header=header, records=records,
            context_writes=context_writes, outbox=outbox, status=status, output=output,
            errors=errors, outcomes=outcomes, claims=claims, sent=sent,
        )  # fmt: skip
        if saved and status in _TERMINAL:
            await self._publish(run_id, notice)
        return saved

    async def create_run(
        self,
        record: RunRecord,
        header: Mapping[str, object],
        records: Mapping[str, object] | None = None,
    ) -> RunRecord:
        """The inner store's ``create_run``."""
        return await self.inner.create_run(record, header, records)

    async def get_run(self, run_id: str) -> RunRecord | None:
        """The inner store's ``get_run``."""
        return await self.inner.get_run(run_id)

    async def load_state(
        self, run_id: str, *, since: int | None = None, keys: Collection[str] = ()
    ) -> StoredState | None:
        """The inner store's ``load_state``."""
        return await self.inner.load_state(run_id, since=since, keys=keys)

    async def remove_outbox(self, sent: Mapping[str, Sequence[str]]) -> None:
        """The inner store's ``remove_outbox``."""
        await self.inner.remove_outbox(sent)

    async def claim_attempt(
        self, run_id: str, attempt: str, owner: str, lease: float
    ) -> AttemptClaim:
        """The inner store's ``claim_attempt``."""
        return await self.inner.claim_attempt(run_id, attempt, owner, lease)

    async def extend_attempt(self, run_id: str, attempt: str, owner: str, lease: float) -> bool:
        """The inner store's ``extend_attempt``."""
        return await self.inner.extend_attempt(run_id, attempt, owner, lease)

    async def commit_attempt(self, run_id: str, attempt: str, outcome: bytes) -> bytes:
        """The inner store's ``commit_attempt``."""
        return await self.inner.commit_attempt(run_id, attempt, outcome)

    async def list_runs(
        self, *, status: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> RunPage:
        """The inner store's ``list_runs``."""
        return await self.inner.list_runs(status=status, limit=limit, cursor=cursor)

    async def stalled_runs(self, *, updated_before: float, limit: int = 100) -> Sequence[str]:
        """The inner store's ``stalled_runs``."""
        return await self.inner.stalled_runs(updated_before=updated_before, limit=limit)


async def _close_quietly(pubsub: PubSub) -> None:
    with contextlib.suppress(rx.RedisError, OSError):
        await pubsub.aclose()
