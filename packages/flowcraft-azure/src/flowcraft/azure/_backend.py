"""The Azure backend as one object: ports per namespace, a reconciler.

``AzureBackend`` is what ``flowcraft worker --backend azure``, ``flowcraft reconcile`` and
``flowcraft conformance --backend azure`` use (entry point ``flowcraft.backends``). Options
(strings on the command line; environment variables in brackets):

* Queue Storage: ``queue_connection_string`` (``FLOWCRAFT_AZURE_QUEUE_CONNECTION_STRING``) or
  ``queue_account_url`` (``FLOWCRAFT_AZURE_QUEUE_ACCOUNT_URL``, with DefaultAzureCredential).
* Cosmos DB: ``cosmos_connection_string`` (``FLOWCRAFT_COSMOS_CONNECTION_STRING``) or
  ``cosmos_url`` (``FLOWCRAFT_COSMOS_URL``) with ``cosmos_key`` (``FLOWCRAFT_COSMOS_KEY``; none:
  DefaultAzureCredential), ``cosmos_database_name`` (``flowcraft``), ``cosmos_ca_file`` (a CA
  bundle to verify the server with, e.g. a local server's private CA).
* ``redis_url`` (``FLOWCRAFT_REDIS_URL``): coordination through ``flowcraft.core.redis``, and
  runs' ends (capability ``run_notifications``): the store is wrapped in core's
  ``NotifyingRunStore``, which publishes terminal saves on the channel ``<ns>:runs-ended``.
* ``visibility_timeout`` (seconds, 30) and ``max_poll_interval`` (seconds, 1.0).
* ``sticky_delay`` (``FLOWCRAFT_AZURE_STICKY_DELAY``; seconds 1..50, or ``none``): how long the
  durable copy of a sticky message stays invisible in the jobs queue (run-ahead, see
  ``_queue``); default the visibility timeout, at most 30 (a crashed worker's attempts run
  ahead come back no later than a crashed consumer's plain message).

``create(namespace)`` creates, unless they exist, the queues ``<ns>-jobs`` and ``<ns>-poison``,
the database and the containers ``<ns>-contexts`` and ``<ns>-statuses`` (``flowcraft`` gives
the original adapter's names), and opens the three ports on them; ``destroy`` (tests)
deletes the queues, the containers and the namespace's Redis keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

from flowcraft.azure._clients import cosmos_client, queue_client
from flowcraft.azure._errors import edge
from flowcraft.azure._queue import AzureQueueAdapter
from flowcraft.azure._schema import Names, ensure_queues
from flowcraft.azure._store import CosmosDbContext
from flowcraft.core import BlueprintSet, Reconciler
from flowcraft.core.backends import Backend
from flowcraft.core.errors import BackendError
from flowcraft.core.redis import (
    NotifyingRunStore,
    RedisCoordinationStore,
    drop_namespace_keys,
)
from flowcraft.core.sticky import sticky_delay_option

__all__ = ["AzureBackend", "create_azure_reconciler"]

_ENV = {
    "queue_connection_string": "FLOWCRAFT_AZURE_QUEUE_CONNECTION_STRING",
    "queue_account_url": "FLOWCRAFT_AZURE_QUEUE_ACCOUNT_URL",
    "cosmos_connection_string": "FLOWCRAFT_COSMOS_CONNECTION_STRING",
    "cosmos_url": "FLOWCRAFT_COSMOS_URL",
    "cosmos_key": "FLOWCRAFT_COSMOS_KEY",
    "cosmos_ca_file": "FLOWCRAFT_COSMOS_CA_FILE",
    "redis_url": "FLOWCRAFT_REDIS_URL",
    "sticky_delay": "FLOWCRAFT_AZURE_STICKY_DELAY",
}


def _option(name: str, value: str | None) -> str | None:
    return value or os.environ.get(_ENV[name]) or None


class AzureBackend:
    """Opens the adapter's three ports for a namespace (see the module docstring)."""

    capabilities = frozenset(
        {
            "coordination",
            "dead_letter",
            "delayed_delivery",
            "result_notices",
            "run_notifications",
            "started_runs",
        }
    )
    #: The option each environment variable gives (the CLI lets a set variable beat a config
    #: file's value, as ``--option`` beats both).
    option_environment: ClassVar[Mapping[str, str]] = MappingProxyType(_ENV)

    def __init__(
        self,
        *,
        queue_connection_string: str | None = None,
        queue_account_url: str | None = None,
        cosmos_connection_string: str | None = None,
        cosmos_url: str | None = None,
        cosmos_key: str | None = None,
        cosmos_database_name: str = "flowcraft",
        cosmos_ca_file: str | None = None,
        redis_url: str | None = None,
        visibility_timeout: int | str = 30,
        max_poll_interval: float | str = 1.0,
        sticky_delay: float | str | None = "default",
    ) -> None:
        self.queue_connection_string = _option("queue_connection_string", queue_connection_string)
        self.queue_account_url = _option("queue_account_url", queue_account_url)
        self.cosmos_connection_string = _option(
            "cosmos_connection_string", cosmos_connection_string
        )
        self.cosmos_url = _option("cosmos_url", cosmos_url)
        self.cosmos_key = _option("cosmos_key", cosmos_key)
        self.cosmos_ca_file = _option("cosmos_ca_file", cosmos_ca_file)
        self.cosmos_database_name = cosmos_database_name
        self.redis_url = _option("redis_url", redis_url) or "redis://127.0.0.1:16379/0"
        self.visibility_timeout = _number("visibility_timeout", visibility_timeout, 1, 604_800)
        self.max_poll_interval = float(max_poll_interval)
        if sticky_delay == "default":
            sticky_delay = os.environ.get(_ENV["sticky_delay"]) or "default"
        self.sticky_delay = sticky_delay_option(
            sticky_delay, visibility_timeout=self.visibility_timeout
        )
        if not (self.queue_connection_string or self.queue_account_url):
            raise ValueError("Queue Storage: give queue_connection_string or queue_account_url "
                             f"(or set {_ENV['queue_connection_string']})")  # fmt: skip
        if not (self.cosmos_connection_string or self.cosmos_url):
            raise ValueError("Cosmos DB: give cosmos_connection_string or cosmos_url "
                             f"(or set {_ENV['cosmos_url']})")  # fmt: skip

    def _queue(self, name: str) -> Any:  # noqa: ANN401
        return queue_client(name, connection_string=self.queue_connection_string,
                            account_url=self.queue_account_url)  # fmt: skip

    def _cosmos(self) -> Any:  # noqa: ANN401
        return cosmos_client(connection_string=self.cosmos_connection_string, url=self.cosmos_url,
                             key=self.cosmos_key, ca_file=self.cosmos_ca_file)  # fmt: skip

    async def create(self, namespace: str) -> Backend:
        """The ports of ``namespace`` (queues, database and containers created if missing)."""
        names = Names.of(namespace)
        jobs, poison, cosmos = self._queue(names.jobs), self._queue(names.poison), self._cosmos()
        store = CosmosDbContext(
            cosmos_client=cosmos, cosmos_database_name=self.cosmos_database_name,
            context_container_name=names.contexts, status_container_name=names.statuses,
        )  # fmt: skip
        try:
            await ensure_queues(jobs, poison)
            await store.ensure_schema()
        except BackendError as exc:  # name the endpoints (never the credentials)
            for client in (jobs, poison, cosmos):
                await client.close()
            where = self.cosmos_url or "from its connection string"
            raise type(exc)(f"Azure (queues {jobs.url}, Cosmos DB {where}): {exc}") from exc

        def adapter() -> AzureQueueAdapter:
            return AzureQueueAdapter(
                queue_client=jobs, poison_queue_client=poison, offload_container=store.container,
                visibility_timeout=self.visibility_timeout,
                max_poll_interval=self.max_poll_interval,
                sticky_delay=self.sticky_delay,  # (sticks only once it receives: a worker's)
            )  # fmt: skip

        queue = adapter()

        async def worker_queue() -> AzureQueueAdapter:
            """A consumer of its own (its own stop and close), on the shared clients."""
            return adapter()

        coordination = RedisCoordinationStore(self.redis_url, prefix=namespace)
        notifying = NotifyingRunStore(store, self.redis_url, prefix=namespace)
        return Backend(queue=queue, store=notifying, coordination=coordination,
                       dead_letters=queue.dead_letters, inject=queue.enqueue,
                       worker_queue=worker_queue,
                       visibility_timeout=float(self.visibility_timeout),
                       extra={"namespace": namespace, "names": names,
                              "clients": (jobs, poison, cosmos)})  # fmt: skip

    async def close(self, backend: Backend) -> None:
        """Close the ports and the clients (unsettled deliveries become visible)."""
        await backend.queue.close()
        await backend.store.close()  # type: ignore[attr-defined]
        if backend.coordination is not None:
            await backend.coordination.close()
        for client in backend.extra.get("clients", ()):
            await client.close()

    async def destroy(self, backend: Backend) -> None:
        """Close, then delete the namespace's queues, containers and keys (tests only)."""
        names: Names = backend.extra["names"]
        await self.close(backend)
        await drop_namespace_keys(self.redis_url, backend.extra["namespace"])
        jobs, poison, cosmos = self._queue(names.jobs), self._queue(names.poison), self._cosmos()
        try:
            for client in (jobs, poison):
                with edge(f"delete queue {client.queue_name}"):
                    await client.delete_queue()
            database = cosmos.get_database_client(self.cosmos_database_name)
            for container in (names.contexts, names.statuses):
                with edge(f"delete container {container}"):
                    await database.delete_container(container)
        finally:
            for client in (jobs, poison, cosmos):
                await client.close()


def _number(name: str, value: int | str, least: int, most: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"option {name}: {value!r} is not a whole number of seconds") from None
    if not least <= number <= most:
        raise ValueError(f"option {name}: {number} is outside {least}..{most}")
    return number


def create_azure_reconciler(
    *,
    adapter: AzureQueueAdapter,
    context: CosmosDbContext,
    blueprints: Sequence[object] | BlueprintSet,
    stalled_threshold_seconds: float = 60.0,
) -> Reconciler:
    """A reconciler over the adapter's queue and Cosmos DB store.

    ``run()`` returns ``{stalled_runs, reconciled_runs, failed_runs}`` (``.as_dict()``);
    ``run_forever(interval)`` repeats it. Stalled runs come from a query on the run items'
    indexed ``active`` and ``updated`` fields.
    """
    bset = blueprints if isinstance(blueprints, BlueprintSet) else BlueprintSet(blueprints)  # type: ignore[arg-type]
    return Reconciler(queue=adapter, store=context, blueprints=bset,
                      stalled_after=stalled_threshold_seconds)  # fmt: skip
