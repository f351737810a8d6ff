"""The adapter contract: a backend factory, the ports of one namespace, declared capabilities.

Public for adapter authors. An adapter registers a factory class in the ``flowcraft.backends``
entry-point group, e.g. in its pyproject::

    [project.entry-points."flowcraft.backends"]
    rabbitmq = "flowcraft.rabbitmq:RabbitMqBackend"

``flowcraft worker``, ``flowcraft reconcile`` and ``flowcraft conformance`` find it by name and
pass ``--option key=value`` pairs to its constructor. ``create(namespace)`` returns a
:class:`Backend`: the three ports of a namespace (its own queue, table and key prefixes) plus
the few hooks the conformance suite needs to look inside (dead letters, raw injection).

This module is production code: it imports nothing of pytest or of ``flowcraft.core.testing``
(which imports it).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol

from flowcraft.core._distributed.watchers import (
    RunWatchers,
    notification_payload,
    read_notification_payload,
)
from flowcraft.core.errors import FlowcraftError
from flowcraft.core.ports import CoordinationStore, JobQueue, Message, RunStore

__all__ = [
    "BACKEND_ENV",
    "CAPABILITIES",
    "GROUP",
    "OPTIONS_ENV",
    "Backend",
    "BackendFactory",
    "BackendOptionError",
    "InstalledBackend",
    "RunWatchers",
    "UnknownBackendError",
    "backend_names",
    "installed_backends",
    "load_backend_factory",
    "notification_payload",
    "read_notification_payload",
]

#: The entry-point group backends register in.
GROUP = "flowcraft.backends"

#: ``flowcraft conformance --backend NAME`` passes the backend and its options in these.
BACKEND_ENV = "FLOWCRAFT_CONFORMANCE_BACKEND"
OPTIONS_ENV = "FLOWCRAFT_CONFORMANCE_OPTIONS"

#: Capabilities a backend factory may declare, and what each promises. The conformance suite
#: checks them both ways: a test that needs an undeclared one must fail (strict xfail).
CAPABILITIES: Mapping[str, str] = {
    "dead_letter": "Delivery.dead_letter keeps the message, with its reason, in a dead-letter "
    "queue (QueueCapabilities.dead_letter)",
    "delayed_delivery": "enqueue(delay=...) and nack(delay) are never delivered early "
    "(QueueCapabilities.native_delay)",
    "coordination": "Backend.coordination is a CoordinationStore (optional port)",
    "run_notifications": "Backend.store is a RunNotifier: a waiter learns of a run's end "
    "without polling (Client.result)",
    "started_runs": "Backend.store is a RunStarter: a run is created already started (its "
    "record, first decision and outbox) in one atomic, idempotent step (Client.start)",
    "result_reads": "Backend.store is a ResultReader: a run's result is read from its header, "
    "context and a few named records, not its whole state (Client.result)",
    "result_notices": "Backend.store is a ResultNotifier: the notification of a run's end "
    "carries its result, which a waiter builds without a read (Client.result)",
}


@dataclass(slots=True, kw_only=True)
class Backend:
    """The ports of one namespace, plus what the conformance suite needs to inspect them.

    Attributes:
        queue: The job queue.
        store: The run store.
        coordination: The coordination store, or None for a backend without one (then the
            factory must not declare the ``coordination`` capability).
        dead_letters: Returns ``(message_id, reason)`` of the dead-lettered messages.
        inject: Enqueue a raw message (poison-message tests); None: not supported.
        worker_queue: A queue connection of its own for each worker (brokers that redeliver a
            dead consumer's messages only when its connection closes); None: workers share
            ``queue``.
        visibility_timeout: Seconds after which an unsettled delivery of a consumer that is
            still connected becomes visible again (SQS, Azure Queue Storage); None where only
            a closed connection gives it back (AMQP). The suite uses it to check ``extend``.
        extra: Anything the adapter wants to keep with the namespace (e.g. its name).
    """

    queue: JobQueue
    store: RunStore
    coordination: CoordinationStore | None
    dead_letters: Callable[[], Awaitable[list[tuple[str, str]]]]
    inject: Callable[[Message], Awaitable[None]] | None = None
    worker_queue: Callable[[], Awaitable[JobQueue]] | None = None
    visibility_timeout: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class BackendFactory(Protocol):
    """What an adapter registers: it opens the ports of a namespace.

    Optional class attribute ``option_environment: Mapping[str, str]``: option name -> the
    environment variable the factory falls back to when the option is not given (e.g.
    ``{"amqp_url": "FLOWCRAFT_RABBITMQ_URL"}``). The CLI reads it so that its order holds
    (command line > environment > config file > defaults): a config file's value for an
    option yields to that option's variable. A factory that reads no variables leaves it out.
    """

    #: The capabilities the backend declares (keys of :data:`CAPABILITIES`).
    capabilities: frozenset[str]

    async def create(self, namespace: str) -> Backend:
        """The ports of ``namespace``, its queues and tables created if missing."""
        ...

    async def close(self, backend: Backend) -> None:
        """Release connections; keep the data (workers, reconcilers, clients)."""
        ...

    async def destroy(self, backend: Backend) -> None:
        """Release connections and drop the namespace's data (tests)."""
        ...


class UnknownBackendError(FlowcraftError, LookupError):
    """No installed backend has that name."""


class BackendOptionError(FlowcraftError, TypeError):
    """A backend was given an option it does not take (the message lists the ones it does)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InstalledBackend:
    """An installed backend: its name, the distribution that provides it, its capabilities."""

    name: str
    distribution: str
    version: str
    capabilities: frozenset[str]


def installed_backends() -> list[InstalledBackend]:
    """Every backend of the ``flowcraft.backends`` group, by name (loads their factories)."""
    found = []
    for ep in sorted(entry_points(group=GROUP), key=lambda ep: ep.name):
        dist = ep.dist
        capabilities: frozenset[str] = getattr(ep.load(), "capabilities", frozenset())
        found.append(
            InstalledBackend(
                name=ep.name,
                distribution=dist.name if dist is not None else "?",
                version=dist.version if dist is not None else "?",
                capabilities=frozenset(capabilities),
            )
        )
    return found


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
    given = dict(options or {})
    accepted = _option_names(factory_class)
    unknown = sorted(set(given) - accepted) if accepted is not None else []
    if unknown:
        listed = ", ".join(sorted(accepted or ())) or "none"
        hints = [difflib.get_close_matches(key, list(accepted or ()), n=1) for key in unknown]
        suggestion = "".join(f" (did you mean {h[0]!r}?)" for h in hints if h)
        raise BackendOptionError(
            f"backend {name!r} has no option {', '.join(map(repr, unknown))}{suggestion}; "
            f"its options: {listed}"
        )
    return factory_class(**given)


def _option_names(factory_class: Any) -> frozenset[str] | None:  # noqa: ANN401
    """The keyword options a factory takes (None: any, it takes ``**kwargs``)."""
    try:
        parameters = inspect.signature(factory_class).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return frozenset(p.name for p in parameters if p.kind in kinds)
