"""Names and idempotent creation of the queues, the database and the containers.

Per namespace ``ns`` (``flowcraft`` gives the original adapter's container names)::

    queues       <ns>-jobs, <ns>-poison          (lower case, digits and single hyphens)
    database     cosmos_database_name (shared by namespaces; created if missing)
    containers   <ns>-contexts   partition key /runId, TTL on (no default: offloaded bodies
                                 carry their own ``ttl``), indexing: the run header's
                                 ``kind``, ``status``, ``active``, ``created``, ``updated``
                                 with composite indexes (status, created DESC, runId DESC) and
                                 (active, updated); large values excluded (``/d/*``, ``/h/*``,
                                 ``/log/*``, ``/out/*``, ``/err/*``, ``/input/*``)
                 <ns>-statuses   partition key /key: idempotency keys of runs

The README shows the same definitions as ``az`` CLI commands.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flowcraft.azure._errors import edge

from azure.core.exceptions import ResourceExistsError
from azure.cosmos import PartitionKey

_T = TypeVar("_T")

__all__ = ["INDEXING_POLICY", "Names", "ensure_containers", "ensure_queues"]

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-))*$")

#: What the contexts container indexes (everything else is stored, not indexed).
INDEXING_POLICY: dict[str, Any] = {
    "indexingMode": "consistent",
    "automatic": True,
    "includedPaths": [
        {"path": "/kind/?"},
        {"path": "/status/?"},
        {"path": "/active/?"},
        {"path": "/created/?"},
        {"path": "/updated/?"},
        {"path": "/runId/?"},
    ],
    "excludedPaths": [{"path": "/*"}],
    "compositeIndexes": [
        [
            {"path": "/created", "order": "descending"},
            {"path": "/runId", "order": "descending"},
        ],
        [
            {"path": "/status", "order": "ascending"},
            {"path": "/created", "order": "descending"},
            {"path": "/runId", "order": "descending"},
        ],
        [
            {"path": "/active", "order": "ascending"},
            {"path": "/updated", "order": "ascending"},
        ],
    ],
}


@dataclass(frozen=True, slots=True)
class Names:
    """The queue and container names of one namespace."""

    jobs: str
    poison: str
    contexts: str
    statuses: str

    @classmethod
    def of(cls, namespace: str) -> Names:
        """Names for ``namespace`` (``ValueError`` if Azure cannot take them)."""
        ns = namespace.lower()
        if not _NAME.match(ns) or len(ns) > 56 or ns.endswith("-"):
            raise ValueError(
                f"namespace {namespace!r}: queue names take lower-case letters, digits and "
                "single hyphens, up to 56 characters here (the suffix takes the rest)"
            )
        if ns == "flowcraft":
            return cls("flowcraft-jobs", "flowcraft-poison", "workflow-contexts",
                       "workflow-statuses")  # fmt: skip
        return cls(f"{ns}-jobs", f"{ns}-poison", f"{ns}-contexts", f"{ns}-statuses")


async def ensure_queues(*clients: Any) -> None:  # noqa: ANN401 (aio QueueClients)
    """Create each queue unless it exists."""
    for client in clients:
        with edge(f"create queue {client.queue_name}"), contextlib.suppress(ResourceExistsError):
            await client.create_queue()


async def if_not_exists(create: Callable[[], Awaitable[_T]]) -> _T:
    """Run a ``create_*_if_not_exists`` call, safe against a concurrent creator.

    The SDK reads, then creates: when another process creates the same resource in between,
    this one gets 409. The resource then exists, so asking again finds it.
    """
    try:
        return await create()
    except ResourceExistsError:
        return await create()


async def ensure_containers(
    database: Any,  # noqa: ANN401 (azure.cosmos.aio.DatabaseProxy)
    contexts: str,
    statuses: str,
) -> tuple[Any, Any]:
    """Create the two containers unless they exist; their proxies."""
    with edge(f"create container {contexts}"):
        context_container = await if_not_exists(
            lambda: database.create_container_if_not_exists(
                id=contexts, partition_key=PartitionKey(path="/runId"),
                indexing_policy=INDEXING_POLICY, default_ttl=-1,
            )
        )  # fmt: skip
    with edge(f"create container {statuses}"):
        status_container = await if_not_exists(
            lambda: database.create_container_if_not_exists(
                id=statuses, partition_key=PartitionKey(path="/key")
            )
        )
    return context_container, status_container
