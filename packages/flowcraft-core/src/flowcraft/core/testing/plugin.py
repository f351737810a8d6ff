"""The pytest plugin of the conformance suite (``pip install flowcraft-core[testing]``).

An adapter's test runner is one conftest plus one module::

    # conftest.py (the rootdir's)
    pytest_plugins = ["flowcraft.core.testing.plugin"]

    @pytest.fixture
    def flowcraft_backend_factory() -> BackendFactory:
        return MyBackendFactory(...)

    # test_conformance.py
    from flowcraft.core.testing.suite import *  # noqa: F403

Capabilities are checked both ways: a test that needs a capability the backend does not declare
runs as a strict expected failure, so under-declaring fails too.

The plugin brings its own defaults, so the suite runs the same from any directory: asyncio
mode ``auto`` (a project on pytest-asyncio's strict default runs in auto mode while the plugin
is loaded; ``--asyncio-mode`` wins), the ``function`` loop scope for async fixtures where the
ini sets no ``asyncio_default_fixture_loop_scope`` (pytest-asyncio warns when it is unset, an
INTERNALERROR under ``filterwarnings = error``), and a timeout per suite test
(``--flowcraft-timeout``, 120 s) when pytest-timeout is installed (the ``testing`` extra brings
it). Options: ``--flowcraft-duplicate`` (or ``FLOWCRAFT_CONFORMANCE_DUPLICATE=1``) runs every
session with every message delivered twice.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
from flowcraft.core.backends import (
    BACKEND_ENV,
    CAPABILITIES,
    OPTIONS_ENV,
    BackendFactory,
    load_backend_factory,
)
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.memory import MemoryBackendFactory

#: Set to 1 to deliver every message twice in every session (as ``--flowcraft-duplicate``).
DUPLICATE_ENV = "FLOWCRAFT_CONFORMANCE_DUPLICATE"

#: The suite's modules live here (``flowcraft.core.testing.suite``).
_SUITE_DIR = Path(__file__).resolve().parent / "suite"
_LOOP_SCOPE = "asyncio_default_fixture_loop_scope"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The suite's options."""
    group = parser.getgroup("flowcraft", "Flowcraft conformance suite")
    group.addoption(
        "--flowcraft-duplicate",
        action="store_true",
        help="deliver every message twice in every session (duplicate-everything mode)",
    )
    group.addoption(
        "--flowcraft-timeout",
        type=float,
        default=120.0,
        help="seconds a suite test may take before it fails (needs pytest-timeout; 0: none)",
    )


@pytest.hookimpl(tryfirst=True)  # before pytest-asyncio's, which reads the loop scope
def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; pytest-asyncio defaults where the project chose none."""
    config.addinivalue_line(
        "markers", "flowcraft_requires(*capabilities): backend capabilities the test needs"
    )
    if not config.pluginmanager.hasplugin("asyncio"):
        return
    if _asyncio_mode_unset(config):
        config.option.asyncio_mode = "auto"
    if not config.getini(_LOOP_SCOPE):
        # An ini-only setting with no public setter: seed getini's cache, as an ini line would.
        inicache = getattr(config, "_inicache", None)
        if isinstance(inicache, dict):
            inicache[_LOOP_SCOPE] = "function"


def _asyncio_mode_unset(config: pytest.Config) -> bool:
    """No ``--asyncio-mode`` and pytest-asyncio's default (strict) in the ini."""
    if getattr(config.option, "asyncio_mode", None):
        return False
    return str(config.getini("asyncio_mode")) == "strict"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark suite tests with their module's capabilities; give each a timeout.

    A suite module names the capabilities all its tests need in ``FLOWCRAFT_REQUIRES``
    (not ``pytestmark``: the suite is star-imported into one module, where a module mark
    would apply to every test). The timeout (pytest-timeout) applies unless a test has one.
    """
    seconds = config.getoption("flowcraft_timeout")
    timeouts = bool(seconds) and config.pluginmanager.hasplugin("timeout")
    for item in items:
        module = _suite_module(item)
        if module is None:
            continue
        requires = getattr(module, "FLOWCRAFT_REQUIRES", ())
        if requires:
            item.add_marker(pytest.mark.flowcraft_requires(*requires))
        if timeouts and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(seconds))


def _suite_module(item: pytest.Item) -> ModuleType | None:
    """The suite module that defines ``item``'s test, or None for any other test.

    Judged by the module's file, not its name: ``flowcraft conformance`` collects the suite
    with ``--pyargs`` in pytest's default import mode, which names the modules from the first
    directory without an ``__init__.py`` (``core.testing.suite...``: ``flowcraft`` is a
    namespace package), while a star import keeps ``flowcraft.core.testing.suite...``.
    """
    name = getattr(getattr(item, "function", None), "__module__", "")
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if module is None or path is None or Path(path).resolve().parent != _SUITE_DIR:
        return None
    return module


@pytest.fixture
def flowcraft_backend_factory() -> BackendFactory:
    """The backend under test (override in the adapter's conftest); in-memory by default."""
    name = os.environ.get(BACKEND_ENV)
    if name:
        options = json.loads(os.environ.get(OPTIONS_ENV) or "{}")
        factory: BackendFactory = load_backend_factory(name, options)
        return factory
    return MemoryBackendFactory()


def _duplicate_all(config: pytest.Config) -> bool:
    if config.getoption("flowcraft_duplicate"):
        return True
    return os.environ.get(DUPLICATE_ENV, "").lower() in ("1", "true", "yes")


@pytest.fixture
def harness(request: pytest.FixtureRequest, flowcraft_backend_factory: BackendFactory) -> Harness:
    """The harness over the backend under test; enforces declared capabilities."""
    needed = frozenset(
        capability
        for marker in request.node.iter_markers("flowcraft_requires")
        for capability in marker.args
    )
    unknown = needed - CAPABILITIES.keys()
    if unknown:
        pytest.fail(f"unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}")
    missing = needed - flowcraft_backend_factory.capabilities
    if missing:
        request.applymarker(
            pytest.mark.xfail(strict=True, reason=f"declared absent: {sorted(missing)}")
        )
    return Harness(flowcraft_backend_factory, duplicate_all=_duplicate_all(request.config))
