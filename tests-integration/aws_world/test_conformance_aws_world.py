"""The blueprint conformance suite over an AwsWorld (backend ``aws-world``) on moto."""

from __future__ import annotations

import pytest
from flowcraft.aws_world._backend import AwsWorldBackend
from flowcraft.core.testing.suite import *  # noqa: F403


@pytest.fixture
def flowcraft_backend_factory(aws_endpoint_url: str) -> AwsWorldBackend:
    """Short SQS polls, so a closed World's consumers stop quickly."""
    return AwsWorldBackend(endpoint_url=aws_endpoint_url, poll_wait_seconds=1)
