"""The suite's store port-contract tests against Cassandra 5 (CassandraContext)."""

from __future__ import annotations

import pytest
from flowcraft.core.backends import BackendFactory
from flowcraft.core.testing.suite.test_ports_store import *  # noqa: F403
from flowcraft.kafka import KafkaBackend


@pytest.fixture
def flowcraft_backend_factory(
    kafka_bootstrap: str, cassandra_contact: tuple[str, int], redis_url: str
) -> BackendFactory:
    host, port = cassandra_contact
    return KafkaBackend(bootstrap_servers=kafka_bootstrap,
                        cassandra_contact_points=f"{host}:{port}", redis_url=redis_url,
                        partitions=2, keyspace="flowcraft_tests")  # fmt: skip
