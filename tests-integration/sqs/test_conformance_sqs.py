"""The whole conformance suite against SQS and DynamoDB (moto), coordination included."""

from __future__ import annotations

import pytest
from flowcraft.core.backends import BackendFactory
from flowcraft.core.testing.suite import *  # noqa: F403
from flowcraft.sqs import SqsBackend


@pytest.fixture
def flowcraft_backend_factory(aws_endpoint_url: str) -> BackendFactory:
    """Queues with a 2 s visibility timeout: a dead consumer's message comes back quickly."""
    return SqsBackend(endpoint_url=aws_endpoint_url, visibility_timeout=2)
