"""The suite's queue port-contract tests against Kafka (KafkaAdapter), store in memory.

The queue is the real one; the run store and coordination store are core's in-memory ports,
so this module isolates the queue (the whole backend runs in test_conformance_kafka.py).
"""

from __future__ import annotations

import pytest
from flowcraft.core._distributed.memory import MemoryCoordinationStore, MemoryRunStore
from flowcraft.core.backends import Backend, BackendFactory
from flowcraft.core.testing.suite.test_ports_queue import *  # noqa: F403
from flowcraft.kafka import KafkaAdapter
from flowcraft.kafka._topics import delete_topics, ensure_topics


class _QueueOnKafka:
    """KafkaAdapter on fresh topics and group per namespace; the other ports in memory."""

    capabilities = frozenset({"coordination", "dead_letter", "delayed_delivery"})

    def __init__(self, bootstrap: str) -> None:
        self.config = {"bootstrap.servers": bootstrap}

    async def create(self, namespace: str) -> Backend:
        queue = KafkaAdapter(config=self.config, topic_name=f"{namespace}-jobs",
                             group_id=f"{namespace}-workers")  # fmt: skip
        await ensure_topics(self.config, queue.names, partitions=4)

        async def worker_queue() -> KafkaAdapter:
            return queue.consumer()

        return Backend(queue=queue, store=MemoryRunStore(), coordination=MemoryCoordinationStore(),
                       dead_letters=queue.dead_letters, inject=queue.enqueue,
                       worker_queue=worker_queue, visibility_timeout=None)  # fmt: skip

    async def close(self, backend: Backend) -> None:
        await backend.queue.close()

    async def destroy(self, backend: Backend) -> None:
        await self.close(backend)
        assert isinstance(backend.queue, KafkaAdapter)
        await delete_topics(self.config, backend.queue.names)


@pytest.fixture
def flowcraft_backend_factory(kafka_bootstrap: str) -> BackendFactory:
    return _QueueOnKafka(kafka_bootstrap)
