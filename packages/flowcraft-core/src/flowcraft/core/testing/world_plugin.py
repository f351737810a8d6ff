"""The pytest plugin of the World conformance suite (``pip install flowcraft-core[testing]``).

A World implementation's test runner is one conftest line, one fixture and one module::

    # conftest.py (the rootdir's)
    pytest_plugins = ["flowcraft.core.testing.world_plugin"]

    @pytest.fixture
    def flowcraft_world_factory() -> WorldFactory:
        return MyWorldFactory(...)

    # test_world_conformance.py
    from flowcraft.core.testing.world_suite import *  # noqa: F403

Tests that need an optional capability (``WORLD_CAPABILITIES``) carry
``@pytest.mark.flowcraft_world_requires(...)``: where the factory does not declare it they
run as strict expected failures, so under-declaring fails too. Every suite test gets a
timeout (``--flowcraft-world-timeout``, 60 s) when pytest-timeout is installed, and every
wait inside a test has a deadline of its own. The plugin can be loaded beside the blueprint
suite's (``flowcraft.core.testing.plugin``) or alone (``-p flowcraft.core.testing.world_plugin``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from flowcraft.core.testing.world_memory import (
    WORLD_CAPABILITIES,
    InMemoryWorldFactory,
    WorldFactory,
)
from flowcraft.core.world import World

_SUITE = "flowcraft.core.testing.world_suite"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The suite's option."""
    group = parser.getgroup("flowcraft-world", "Flowcraft World conformance suite")
    group.addoption(
        "--flowcraft-world-timeout",
        type=float,
        default=60.0,
        help="seconds a World suite test may take (needs pytest-timeout; 0: none)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the capability marker."""
    config.addinivalue_line(
        "markers", "flowcraft_world_requires(*capabilities): World capabilities the test needs"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every World suite test a timeout, unless it has one."""
    seconds = config.getoption("flowcraft_world_timeout")
    if not seconds or not config.pluginmanager.hasplugin("timeout"):
        return
    for item in items:
        module = getattr(getattr(item, "function", None), "__module__", "")
        if module.startswith(_SUITE) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(seconds))


@pytest.fixture
def flowcraft_world_factory() -> WorldFactory:
    """The World under test (override in the implementation's conftest); in-memory here."""
    return InMemoryWorldFactory()


@pytest.fixture
def world_factory(
    request: pytest.FixtureRequest, flowcraft_world_factory: WorldFactory
) -> WorldFactory:
    """The factory, with the test's declared capabilities enforced both ways."""
    marker = request.node.get_closest_marker("flowcraft_world_requires")
    needed = frozenset(marker.args) if marker else frozenset()
    unknown = needed - WORLD_CAPABILITIES.keys()
    if unknown:
        pytest.fail(
            f"unknown World capabilities {sorted(unknown)}; known: {sorted(WORLD_CAPABILITIES)}"
        )
    missing = needed - flowcraft_world_factory.capabilities
    if missing:
        request.applymarker(
            pytest.mark.xfail(strict=True, reason=f"declared absent: {sorted(missing)}")
        )
    return flowcraft_world_factory


@pytest.fixture
def world_namespace() -> str:
    """A fresh namespace per test."""
    return f"w{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def world(world_factory: WorldFactory, world_namespace: str) -> AsyncIterator[World]:
    """A started World on a fresh namespace, closed and destroyed afterwards."""
    created = await world_factory.create(world_namespace)
    async with created:
        yield created
    await world_factory.destroy(created)
