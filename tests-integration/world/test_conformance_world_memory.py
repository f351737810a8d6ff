"""Every behavioural and fault test of the blueprint suite, on blueprints over an InMemoryWorld."""

import pytest
from flowcraft.core.testing.suite import *  # noqa: F403
from flowcraft.core.world.blueprints import WorldMemoryBackendFactory


@pytest.fixture(scope="session")
def flowcraft_backend_factory() -> WorldMemoryBackendFactory:
    """Backend ``world-memory``: the ports over a fresh InMemoryWorld per namespace."""
    return WorldMemoryBackendFactory()
