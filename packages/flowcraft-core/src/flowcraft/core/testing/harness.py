"""The conformance harness: a backend under test, workers, a client, and fault injection.

An adapter provides a :class:`BackendFactory`: ``create(namespace)`` returns the three ports for a
fresh namespace (own queue, table and key prefixes, so tests can run in parallel) and
``destroy`` cleans up. The suite drives everything else through :class:`Harness`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from flowcraft.core._distributed.blueprints import BlueprintSet
from flowcraft.core._distributed.client import Client, DistributedRunHandle
from flowcraft.core._distributed.reconciler import Reconciler
from flowcraft.core._distributed.worker import Worker
from flowcraft.core._model.graph import Blueprint
from flowcraft.core._runtime.result import RunResult
from flowcraft.core.ports import CoordinationStore, Delivery, JobQueue, Message, RunStore
from flowcraft.core.testing import nodes


@dataclass(slots=True, kw_only=True)
class Backend:
    """The ports of one namespace, plus what the suite needs to inspect them.

    Attributes:
        queue, store, coordination: The ports.
        dead_letters: Returns ``(message_id, reason)`` of dead-lettered messages.
        inject: Enqueue a raw message (for poison-message tests).
    """

    queue: JobQueue
    store: RunStore
    coordination: CoordinationStore | None
    dead_letters: Callable[[], Awaitable[list[tuple[str, str]]]]
    inject: Callable[[Message], Awaitable[None]] | None = None
    #: A queue connection of its own for each worker (brokers that redeliver a dead consumer's
    #: messages only when its connection closes); None: workers share ``queue``.
    worker_queue: Callable[[], Awaitable[JobQueue]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class BackendFactory(Protocol):
    """What an adapter gives the conformance suite."""

    #: Capabilities the backend declares (see ``flowcraft.core.testing.CAPABILITIES``).
    capabilities: frozenset[str]

    async def create(self, namespace: str) -> Backend:
        """Fresh ports for ``namespace``."""
        ...

    async def close(self, backend: Backend) -> None:
        """Release connections; keep the data (workers, reconcilers, clients)."""
        ...

    async def destroy(self, backend: Backend) -> None:
        """Release connections and drop the namespace's data (tests)."""
        ...


class DuplicatingQueue:
    """Wraps a queue so every message is enqueued twice (duplicate delivery of everything)."""

    def __init__(self, inner: JobQueue) -> None:
        self._inner = inner

    @property
    def capabilities(self) -> Any:  # noqa: ANN401 - the inner queue's capabilities
        """The inner queue's capabilities."""
        return self._inner.capabilities

    async def enqueue(self, message: Message, *, delay: float = 0.0, sticky: bool = False) -> None:
        """Enqueue twice (the twin never sticky: it may reach another worker)."""
        await self._inner.enqueue(message, delay=delay, sticky=sticky)
        twin = Message(id=f"{message.id}#dup", body=message.body)
        await self._inner.enqueue(twin if self._inner.capabilities.dedup else message, delay=delay)

    async def receive(self, max_messages: int, wait: float) -> Sequence[Delivery]:
        """Receive from the inner queue."""
        return await self._inner.receive(max_messages, wait)

    async def close(self) -> None:
        """Close the inner queue."""
        await self._inner.close()


class Session:
    """Workers and a client over one backend with a set of blueprints."""

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
        self.queue: JobQueue = DuplicatingQueue(backend.queue) if duplicate else backend.queue
        self.client = Client(queue=self.queue, store=backend.store, blueprints=self.blueprints)
        self.workers: list[Worker] = []
        self._tasks: dict[Worker, asyncio.Task[None]] = {}
        self._queues: dict[Worker, JobQueue] = {}
        self._duplicate = duplicate
        self._options = {"poll": 0.05, "lease": 5.0, **worker_options}

    async def start_workers(self, count: int = 2, **options: Any) -> list[Worker]:  # noqa: ANN401
        """Start ``count`` workers in this process.

        Each gets its own queue connection when the backend offers one.
        """
        started = []
        for _ in range(count):
            queue = self.queue
            if self.backend.worker_queue is not None:
                queue = await self.backend.worker_queue()
                queue = DuplicatingQueue(queue) if self._duplicate else queue
            worker = Worker(
                queue=queue,
                store=self.backend.store,
                coordination=self.backend.coordination,
                registry=self.registry,
                blueprints=self.blueprints,
                **{**self._options, **options},
            )
            self._tasks[worker] = asyncio.ensure_future(worker.run(shutdown_timeout=5))
            self._queues[worker] = queue
            self.workers.append(worker)
            started.append(worker)
        return started

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
    """Creates sessions over fresh namespaces of the backend under test."""

    def __init__(self, factory: BackendFactory) -> None:
        self.factory = factory
        self.capabilities = factory.capabilities

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
            duplicate=duplicate,
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
