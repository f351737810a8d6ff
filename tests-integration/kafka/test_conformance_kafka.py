"""The whole conformance suite against Kafka 4.1, Cassandra 5 and Redis (tools/services)."""

from __future__ import annotations

import pytest
from flowcraft.core.backends import BackendFactory
from flowcraft.core.testing.suite import *  # noqa: F403
from flowcraft.kafka import KafkaBackend


@pytest.fixture
def flowcraft_backend_factory(
    kafka_bootstrap: str, cassandra_contact: tuple[str, int], redis_url: str
) -> BackendFactory:
    """Few partitions per namespace: topics are created per test."""
    host, port = cassandra_contact
    return KafkaBackend(bootstrap_servers=kafka_bootstrap,
                        cassandra_contact_points=f"{host}:{port}", redis_url=redis_url,
                        partitions=4, keyspace="flowcraft_tests")  # fmt: skip
