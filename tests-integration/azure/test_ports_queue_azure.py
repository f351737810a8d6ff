"""The suite's queue port-contract tests against Azurite (AzureQueueAdapter), store in memory.

The queue is the real one; the run store and coordination store are core's in-memory ports,
so this module isolates the queue (the whole backend runs in test_conformance_azure.py).
"""

from __future__ import annotations

import pytest
from flowcraft.azure import AzureQueueAdapter
from flowcraft.azure._clients import queue_client
from flowcraft.azure._schema import Names, ensure_queues
from flowcraft.core._distributed.memory import MemoryCoordinationStore, MemoryRunStore
from flowcraft.core.backends import Backend, BackendFactory
from flowcraft.core.testing.suite.test_ports_queue import *  # noqa: F403


class _QueueOnAzurite:
    """AzureQueueAdapter on fresh queues per namespace; the other ports in memory."""

    capabilities = frozenset({"coordination", "dead_letter", "delayed_delivery"})

    def __init__(self, connection_string: str) -> None:
        self.connection_string = connection_string

    async def create(self, namespace: str) -> Backend:
        names = Names.of(namespace)
        jobs = queue_client(names.jobs, connection_string=self.connection_string)
        poison = queue_client(names.poison, connection_string=self.connection_string)
        await ensure_queues(jobs, poison)

        def adapter() -> AzureQueueAdapter:
            return AzureQueueAdapter(queue_client=jobs, poison_queue_client=poison,
                                     visibility_timeout=2, max_poll_interval=0.25)  # fmt: skip

        queue = adapter()

        async def worker_queue() -> AzureQueueAdapter:
            return adapter()

        return Backend(queue=queue, store=MemoryRunStore(), coordination=MemoryCoordinationStore(),
                       dead_letters=queue.dead_letters, inject=queue.enqueue,
                       worker_queue=worker_queue, visibility_timeout=2.0,
                       extra={"clients": (jobs, poison)})  # fmt: skip

    async def close(self, backend: Backend) -> None:
        await backend.queue.close()

    async def destroy(self, backend: Backend) -> None:
        await self.close(backend)
        for client in backend.extra["clients"]:
            await client.delete_queue()
            await client.close()


@pytest.fixture
def flowcraft_backend_factory(azure_queue_connection_string: str) -> BackendFactory:
    return _QueueOnAzurite(azure_queue_connection_string)
