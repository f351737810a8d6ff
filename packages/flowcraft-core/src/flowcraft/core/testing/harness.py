"""The conformance harness: a backend under test, workers, a client, and fault injection.

An adapter provides a :class:`~flowcraft.core.backends.BackendFactory`: ``create(namespace)``
returns the three ports for a fresh namespace (own queue, table and key prefixes, so tests can
run in parallel) and ``destroy`` cleans up. The suite drives everything else through
:class:`Harness`. Every session's queue is wrapped in a :class:`RecordingQueue` (what was sent,
and messages to lose on purpose) and, in duplicate-everything mode, a :class:`DuplicatingQueue`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from flowcraft.core._distributed.blueprints import BlueprintSet
from flowcraft.core._distributed.client import Client, DistributedRunHandle
from flowcraft.core._distributed.reconciler import Reconciler
from flowcraft.core._distributed.worker import Worker
from flowcraft.core._model.graph import Blueprint
from flowcraft.core._runtime.events import EventBus
from flowcraft.core._runtime.result import RunResult
from flowcraft.core.backends import Backend, BackendFactory
from flowcraft.core.ports import Delivery, JobQueue, Message, QueueCapabilities
from flowcraft.core.testing import nodes

__all__ = [
    "Backend",
    "BackendFactory",
    "DuplicatingQueue",
    "Harness",
    "Recording",
    "RecordingQueue",
    "Session",
]


class _Wrapped:
    """A queue around another: everything but ``enqueue`` goes to the inner queue."""

    def __init__(self, inner: JobQueue) -> None:
        self._inner = inner

    @property
    def capabilities(self) -> QueueCapabilities:
        """The inner queue's capabilities."""
        return self._inner.capabilities

    async def receive(self, max_messages: int, wait: float) -> Sequence[Delivery]:
        """Receive from the inner queue."""
        return await self._inner.receive(max_messages, wait)

    async def stop_receiving(self) -> None:
        """Stop the inner queue's receiving."""
        await self._inner.stop_receiving()

    async def close(self) -> None:
        """Close the inner queue."""
        await self._inner.close()


class DuplicatingQueue(_Wrapped):
    """Wraps a queue so every message is enqueued twice (duplicate delivery of everything)."""

    async def enqueue(self, message: Message, *, delay: float = 0.0, sticky: bool = False) -> None:
        """Enqueue twice (the twin never sticky: it may reach another worker)."""
        await self._inner.enqueue(message, delay=delay, sticky=sticky)
        twin = Message(id=f"{message.id}#dup", body=message.body)
        await self._inner.enqueue(twin if self._inner.capabilities.dedup else message, delay=delay)


class Recording:
    """What the queues of one session sent, and which messages they are to lose."""

    def __init__(self) -> None:
        #: ``(message id, delay)`` of every enqueue, lost ones included, in order.
        self.sent: list[tuple[str, float]] = []
        #: ``time.monotonic()`` of each enqueue of ``sent`` (same order).
        self.sent_at: list[float] = []
        #: Ids of the messages that were lost.
        self.lost: list[str] = []
        self.which: Callable[[Message], bool] | None = None
        #: A lower ``max_delay`` for the session's queues to declare (None: the queue's own);
        #: an enqueue with a longer delay is recorded in ``too_long`` (and still enqueued).
        self.max_delay: float | None = None
        self.too_long: list[tuple[str, float]] = []

    def lose(self, which: Callable[[Message], bool] | None) -> None:
        """Lose every message ``which`` is true of from now on (None: lose nothing)."""
        self.which = which


class RecordingQueue(_Wrapped):
    """Wraps a queue: records every enqueue and loses the messages it is told to lose.

    A lost message is one whose ``enqueue`` returned as if it were durable but that never
    reached the broker: after the save that produced it, only the reconciler (which sends a
    stalled run's outbox and running attempts again) can bring its work back.
    """

    def __init__(self, inner: JobQueue, recording: Recording) -> None:
        super().__init__(inner)
        self.recording = recording

    @property
    def capabilities(self) -> QueueCapabilities:
        """The inner queue's capabilities (with the recording's ``max_delay``, if lower)."""
        inner = self._inner.capabilities
        cap = self.recording.max_delay
        if cap is None or (inner.max_delay is not None and inner.max_delay <= cap):
            return inner
        return dataclasses.replace(inner, max_delay=cap)

    async def enqueue(self, message: Message, *, delay: float = 0.0, sticky: bool = False) -> None:
        """Record, then enqueue (or silently drop) the message."""
        recording = self.recording
        recording.sent.append((message.id, delay))
        recording.sent_at.append(time.monotonic())
        if recording.max_delay is not None and delay > recording.max_delay:
            recording.too_long.append((message.id, delay))
        if recording.which is not None and recording.which(message):
            recording.lost.append(message.id)
            return
        await self._inner.enqueue(message, delay=delay, sticky=sticky)


class Session:
    """Workers and a client over one backend with a set of blueprints.

    They all share :attr:`events`, one lifecycle-event bus: subscribe to it to see the events
    of every run of the session, whichever worker (or the client) emitted them.
    """

    def __init__(
        self,
        backend: Backend,
        blueprints: Sequence[Blueprint],
        *,
        duplicate: bool = False,
        worker_options: dict[str, Any],
        registry: Mapping[str, object] | None = None,
    ) -> None:
        self.backend = backend
        self.registry = dict(registry) if registry is not None else nodes.registry()
        self.blueprints = BlueprintSet(blueprints)
        self.recording = Recording()
        #: The lifecycle events of the client, every worker and the reconcilers of the session.
        self.events = EventBus()
        self.queue: JobQueue = self._wrap(backend.queue, duplicate)
        self.client = Client(
            queue=self.queue, store=backend.store, blueprints=self.blueprints, events=self.events
        )
        self.workers: list[Worker] = []
        self._tasks: dict[Worker, asyncio.Task[None]] = {}
        self._queues: dict[Worker, JobQueue] = {}
        self._duplicate = duplicate
        self._options = {"poll": 0.05, "lease": 5.0, **worker_options}

    async def start_workers(
        self,
        count: int = 2,
        *,
        blueprints: Sequence[Blueprint] | None = None,
        **options: Any,  # noqa: ANN401 - Worker keyword options
    ) -> list[Worker]:
        """Start ``count`` workers in this process.

        Each gets its own queue connection when the backend offers one. ``blueprints``: what
        these workers know instead of the session's blueprints (a worker of another release).
        """
        known = self.blueprints if blueprints is None else BlueprintSet(blueprints)
        started = []
        for _ in range(count):
            queue = self.queue
            if self.backend.worker_queue is not None:
                queue = self._wrap(await self.backend.worker_queue(), self._duplicate)
            worker = Worker(
                queue=queue,
                store=self.backend.store,
                coordination=self.backend.coordination,
                registry=self.registry,
                blueprints=known,
                **{"events": self.events, **self._options, **options},
            )
            self._tasks[worker] = asyncio.ensure_future(worker.run(shutdown_timeout=5))
            self._queues[worker] = queue
            self.workers.append(worker)
            started.append(worker)
        return started

    def _wrap(self, queue: JobQueue, duplicate: bool) -> JobQueue:
        return RecordingQueue(DuplicatingQueue(queue) if duplicate else queue, self.recording)

    async def crash_worker(self, worker: Worker) -> None:
        """Kill a worker without any cleanup: no ack, no nack, no lease renewal.

        Its own connection (if any) drops, as when a process dies.
        """
        worker.kill()
        self._tasks.pop(worker).cancel()
        queue = self._queues.pop(worker)
        if queue is not self.queue:
            with contextlib.suppress(Exception):
                await queue.close()

    async def stop_worker(self, worker: Worker, *, timeout: float = 15.0) -> None:
        """Stop a worker gracefully, as SIGTERM does, and wait until it is gone.

        Sets :attr:`Worker.stopping` (it takes no new job; running ones finish and commit),
        waits for it to drain, then closes its own queue connection, as its process would
        on exit (whatever it still held goes back to the broker).
        """
        worker.stopping.set()
        await asyncio.wait_for(self._tasks.pop(worker), timeout)
        queue = self._queues.pop(worker)
        if queue is not self.queue:
            await queue.close()

    async def start(
        self, blueprint_id: str, input: object = None, *, idempotency_key: str | None = None
    ) -> DistributedRunHandle:
        """Start a run through the client."""
        return await self.client.start(blueprint_id, input, idempotency_key=idempotency_key)

    async def run(
        self, blueprint_id: str, input: object = None, *, timeout: float = 20.0
    ) -> RunResult:
        """Start a run and wait for its final result."""
        handle = await self.start(blueprint_id, input)
        return await handle.result(timeout=timeout)

    def reconciler(self, *, stalled_after: float = 0.0) -> Reconciler:
        """A reconciler over this backend."""
        return Reconciler(
            queue=self.queue,
            store=self.backend.store,
            blueprints=self.blueprints,
            stalled_after=stalled_after,
            events=self.events,
        )

    async def stop(self) -> None:
        """Stop the workers gracefully (and close the client)."""
        with contextlib.suppress(Exception):
            await self.client.close()
        for worker in self._tasks:
            worker.stopping.set()
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=10)
        self._tasks.clear()
        for queue in self._queues.values():
            if queue is not self.queue:
                with contextlib.suppress(Exception):
                    await queue.close()
        self._queues.clear()


class Harness:
    """Creates sessions over fresh namespaces of the backend under test.

    ``duplicate_all``: every session delivers every message twice (the suite's
    duplicate-everything mode, ``--flowcraft-duplicate``), whatever the test asked for.
    """

    def __init__(self, factory: BackendFactory, *, duplicate_all: bool = False) -> None:
        self.factory = factory
        self.capabilities = factory.capabilities
        self.duplicate_all = duplicate_all

    @contextlib.asynccontextmanager
    async def backend(self) -> AsyncIterator[Backend]:
        """A bare backend on a fresh namespace (port-level tests), destroyed afterwards."""
        backend = await self.factory.create(f"t{uuid.uuid4().hex[:10]}")
        try:
            yield backend
        finally:
            await self.factory.destroy(backend)

    @contextlib.asynccontextmanager
    async def session(
        self,
        *blueprints: Blueprint,
        workers: int = 2,
        duplicate: bool = False,
        registry: Mapping[str, object] | None = None,
        **worker_options: Any,  # noqa: ANN401 - Worker keyword options
    ) -> AsyncIterator[Session]:
        """A session with ``workers`` workers already running."""
        backend = await self.factory.create(f"t{uuid.uuid4().hex[:10]}")
        session = Session(
            backend,
            blueprints,
            duplicate=duplicate or self.duplicate_all,
            worker_options=worker_options,
            registry=registry,
        )
        if workers:
            await session.start_workers(workers)
        try:
            yield session
        finally:
            await session.stop()
            await self.factory.destroy(backend)
