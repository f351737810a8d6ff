"""The pytest plugin of the conformance suite.

An adapter's test runner is one conftest plus one module::

    # conftest.py
    pytest_plugins = ["flowcraft.core.testing.plugin"]

    @pytest.fixture
    def flowcraft_backend_factory() -> BackendFactory:
        return MyBackendFactory(...)

    # test_conformance.py
    from flowcraft.core.testing.suite import *  # noqa: F403

Capabilities are checked both ways: a test that needs a capability the backend does not declare
runs as a strict expected failure, so under-declaring fails too.
"""

from __future__ import annotations

import json
import os

import pytest
from flowcraft.core._distributed.backends import load_backend_factory
from flowcraft.core.testing.harness import BackendFactory, Harness
from flowcraft.core.testing.memory import MemoryBackendFactory

#: Capabilities a backend may declare.
CAPABILITIES = frozenset({"dead_letter", "delayed_delivery"})


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker."""
    config.addinivalue_line(
        "markers", "flowcraft_requires(*capabilities): backend capabilities the test needs"
    )


#: ``flowcraft conformance --backend NAME`` passes the backend and its options in these.
BACKEND_ENV = "FLOWCRAFT_CONFORMANCE_BACKEND"
OPTIONS_ENV = "FLOWCRAFT_CONFORMANCE_OPTIONS"


@pytest.fixture
def flowcraft_backend_factory() -> BackendFactory:
    """The backend under test (override in the adapter's conftest); in-memory by default."""
    name = os.environ.get(BACKEND_ENV)
    if name:
        options = json.loads(os.environ.get(OPTIONS_ENV) or "{}")
        factory: BackendFactory = load_backend_factory(name, options)
        return factory
    return MemoryBackendFactory()


@pytest.fixture
def harness(request: pytest.FixtureRequest, flowcraft_backend_factory: BackendFactory) -> Harness:
    """The harness over the backend under test; enforces declared capabilities."""
    marker = request.node.get_closest_marker("flowcraft_requires")
    needed = frozenset(marker.args) if marker else frozenset()
    unknown = needed - CAPABILITIES
    if unknown:
        pytest.fail(f"unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}")
    missing = needed - flowcraft_backend_factory.capabilities
    if missing:
        request.applymarker(
            pytest.mark.xfail(strict=True, reason=f"declared absent: {sorted(missing)}")
        )
    return Harness(flowcraft_backend_factory)
