"""The whole conformance suite against real RabbitMQ, PostgreSQL and Redis."""

from __future__ import annotations

import pytest
from flowcraft.core.backends import BackendFactory
from flowcraft.core.testing.suite import *  # noqa: F403
from flowcraft.rabbitmq import RabbitMqBackend


@pytest.fixture
def flowcraft_backend_factory(
    rabbitmq_url: str, postgres_url: str, redis_url: str
) -> BackendFactory:
    return RabbitMqBackend(amqp_url=rabbitmq_url, postgres_dsn=postgres_url, redis_url=redis_url)
