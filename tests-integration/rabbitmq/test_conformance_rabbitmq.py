"""The whole conformance suite against real RabbitMQ, PostgreSQL and Redis."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from flowcraft.core.backends import BackendFactory
from flowcraft.core.testing.suite import *  # noqa: F403
from flowcraft.rabbitmq import RabbitMqBackend

# Known issue (see the issue-6 note): after the fault tests kill workers, one pika socket is now
# and then collected unclosed (aborting half-open connections made it rarer, not gone); pytest
# reports it from whichever test runs at that moment.
pytestmark = [
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
    ),
]


@pytest.fixture
def flowcraft_backend_factory(
    rabbitmq_url: str, postgres_url: str, redis_url: str
) -> BackendFactory:
    return RabbitMqBackend(amqp_url=rabbitmq_url, postgres_dsn=postgres_url, redis_url=redis_url)


@pytest.fixture(autouse=True)
def _collect_leaked_sockets() -> Iterator[None]:
    """Collect garbage after each test, so the known leak surfaces here (filtered), not later."""
    yield
    gc.collect()
