"""The whole suite again on the in-memory backend with run-ahead on (a ``sticky`` queue).

Workers then run the next attempts of the runs they decide at once, leased by the save that
decided them, and settle the messages when they come back; every behaviour and fault test
must hold on that path too.
"""

import pytest
from flowcraft.core.testing.memory import MemoryBackendFactory
from flowcraft.core.testing.suite import *  # noqa: F403


@pytest.fixture(scope="session")
def flowcraft_backend_factory() -> MemoryBackendFactory:
    """In-memory ports whose queue declares ``sticky``."""
    return MemoryBackendFactory(sticky=True)
