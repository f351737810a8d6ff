"""The whole conformance suite against Azurite, the Cosmos server and Redis."""

from __future__ import annotations

import pytest
from flowcraft.azure import AzureBackend
from flowcraft.core.backends import BackendFactory
from flowcraft.core.testing.suite import *  # noqa: F403


@pytest.fixture
def flowcraft_backend_factory(
    azure_queue_connection_string: str, cosmos_endpoint: dict[str, str], redis_url: str
) -> BackendFactory:
    """A 2 s visibility timeout (a dead consumer's message comes back quickly)."""
    return AzureBackend(
        queue_connection_string=azure_queue_connection_string,
        cosmos_url=cosmos_endpoint["url"], cosmos_key=cosmos_endpoint["key"],
        cosmos_ca_file=cosmos_endpoint["ca_file"], redis_url=redis_url,
        visibility_timeout=2, max_poll_interval=0.25,
    )  # fmt: skip
