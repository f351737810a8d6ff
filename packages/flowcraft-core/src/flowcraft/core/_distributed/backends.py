"""Backends discoverable by name through the ``flowcraft.backends`` entry-point group.

An adapter registers a factory class (``create(namespace) -> Backend``, ``destroy``,
``capabilities``), e.g. in its pyproject::

    [project.entry-points."flowcraft.backends"]
    rabbitmq = "flowcraft.rabbitmq.testing:RabbitMqBackendFactory"

``flowcraft worker``, ``flowcraft reconcile`` and ``flowcraft conformance`` find it by name and
pass ``--option key=value`` pairs to its constructor.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from flowcraft.core.errors import FlowcraftError

GROUP = "flowcraft.backends"


class UnknownBackendError(FlowcraftError, LookupError):
    """No installed backend has that name."""


def backend_names() -> list[str]:
    """Names of the installed backends."""
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load_backend_factory(name: str, options: Mapping[str, str] | None = None) -> Any:  # noqa: ANN401
    """Instantiate the named backend's factory with ``options`` as keyword arguments."""
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    if name not in found:
        hint = difflib.get_close_matches(name, list(found), n=1)
        suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
        known = ", ".join(sorted(found)) or "none"
        raise UnknownBackendError(f"no backend {name!r}{suffix}; installed: {known}")
    factory_class = found[name].load()
    return factory_class(**dict(options or {}))
