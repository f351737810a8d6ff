"""The RabbitMQ + PostgreSQL + Redis backend as one object: ports per namespace, a reconciler.

``RabbitMqBackend`` is what ``flowcraft worker --backend rabbitmq``, ``flowcraft reconcile`` and
``flowcraft conformance --backend rabbitmq`` use (entry point ``flowcraft.backends``), with
options ``amqp_url``, ``postgres_dsn`` and ``redis_url``. ``create(namespace)`` opens the three
ports with the namespace as queue, table and key prefix (creating queues and tables if missing);
``destroy`` is for tests: it also deletes the namespace's queues, tables and keys.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import ClassVar

import pika
import psycopg
from flowcraft.core import BlueprintSet, Reconciler
from flowcraft.core.backends import Backend
from flowcraft.core.errors import BackendError
from flowcraft.core.redis import RedisCoordinationStore
from flowcraft.rabbitmq._delivery import DEAD_REASON
from flowcraft.rabbitmq._queue import RabbitMqAdapter
from flowcraft.rabbitmq._store import PostgresContext

_DEFAULTS = {
    "amqp_url": ("FLOWCRAFT_RABBITMQ_URL", "amqp://flowcraft:flowcraft@127.0.0.1:15673/%2F"),
    "postgres_dsn": (
        "FLOWCRAFT_POSTGRES_URL",
        "postgresql://flowcraft:flowcraft@127.0.0.1:15432/flowcraft",
    ),
    "redis_url": ("FLOWCRAFT_REDIS_URL", "redis://127.0.0.1:16379/0"),
}


def _endpoint(dsn: str) -> str:
    """``host:port/dbname`` of a libpq connection string (no user, no password)."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(an unreadable connection string)"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


def _option(name: str, value: str | None) -> str:
    env, default = _DEFAULTS[name]
    return value or os.environ.get(env, default)


class RabbitMqBackend:
    """Opens the adapter's three ports for a namespace."""

    capabilities = frozenset(
        {
            "coordination",
            "dead_letter",
            "delayed_delivery",
            "result_notices",
            "result_reads",
            "run_notifications",
            "started_runs",
        }
    )

    #: The variables options default from: set, they beat a CLI config file's value.
    option_environment: ClassVar[Mapping[str, str]] = {
        name: env for name, (env, _default) in _DEFAULTS.items()
    }

    def __init__(self, *, amqp_url: str | None = None, postgres_dsn: str | None = None,
                 redis_url: str | None = None) -> None:  # fmt: skip
        self.amqp_url = _option("amqp_url", amqp_url)
        self.postgres_dsn = _option("postgres_dsn", postgres_dsn)
        self.redis_url = _option("redis_url", redis_url)

    async def create(self, namespace: str) -> Backend:
        """The ports of ``namespace`` (queues and tables created if missing)."""
        queue = RabbitMqAdapter(self.amqp_url, prefix=namespace, connect_timeout=30.0)
        store = PostgresContext(self.postgres_dsn, table_prefix=namespace, max_size=8)
        try:
            await store.ensure_schema()
        except BackendError as exc:  # name the server (never the credentials)
            await store.close()
            await queue.close()
            where = f"{_endpoint(self.postgres_dsn)} ({_DEFAULTS['postgres_dsn'][0]})"
            raise type(exc)(f"PostgreSQL at {where}: {exc}") from exc
        coordination = RedisCoordinationStore(self.redis_url, prefix=namespace)

        async def dead_letters() -> list[tuple[str, str]]:
            return await asyncio.to_thread(self._peek_dead, queue.dead_letter_queue_name)

        async def worker_queue() -> RabbitMqAdapter:
            return RabbitMqAdapter(self.amqp_url, prefix=namespace, connect_timeout=30.0)

        return Backend(queue=queue, store=store, coordination=coordination,
                       dead_letters=dead_letters, inject=queue.enqueue, worker_queue=worker_queue,
                       extra={"namespace": namespace})  # fmt: skip

    async def close(self, backend: Backend) -> None:
        """Close the ports' connections; nothing is deleted."""
        await backend.queue.close()
        await backend.store.close()  # type: ignore[attr-defined]
        if backend.coordination is not None:
            await backend.coordination.close()

    async def destroy(self, backend: Backend) -> None:
        """Close, then delete the namespace's queues, tables and keys (tests only)."""
        queue = backend.queue
        store = backend.store
        await self.close(backend)
        if isinstance(queue, RabbitMqAdapter):
            await queue.delete_queues()
        if isinstance(store, PostgresContext):
            cleanup = PostgresContext(self.postgres_dsn, table_prefix=backend.extra["namespace"])
            await cleanup.drop_schema()
            await cleanup.close()

    def _peek_dead(self, queue_name: str) -> list[tuple[str, str]]:
        connection = pika.BlockingConnection(pika.URLParameters(self.amqp_url))
        try:
            channel = connection.channel()
            found: list[tuple[str, str]] = []
            tags: list[int] = []
            while True:
                method, properties, _body = channel.basic_get(queue_name, auto_ack=False)
                if method is None:
                    break
                tags.append(method.delivery_tag)
                reason = (properties.headers or {}).get(DEAD_REASON, "")
                found.append((str(properties.message_id), str(reason)))
            for tag in tags:
                channel.basic_nack(tag, requeue=True)  # a peek: leave them there
            return found
        except pika.exceptions.ChannelClosedByBroker:
            return []  # the dead-letter queue does not exist yet: nothing was dead-lettered
        finally:
            connection.close()


def create_rabbitmq_reconciler(
    *,
    adapter: RabbitMqAdapter,
    pg: PostgresContext,
    blueprints: Sequence[object] | BlueprintSet,
    stalled_threshold_seconds: float = 60.0,
    status_table: str | None = None,
) -> Reconciler:
    """A reconciler over the adapter's queue and PostgreSQL store (name from the original).

    ``run()`` returns ``{stalled_runs, reconciled_runs, failed_runs}`` (``.as_dict()``);
    ``run_forever(interval)`` repeats it. ``status_table`` is accepted for compatibility with
    the original signature: the store's own tables (``pg``) are the source of truth.
    """
    del status_table
    bset = blueprints if isinstance(blueprints, BlueprintSet) else BlueprintSet(blueprints)  # type: ignore[arg-type]
    return Reconciler(queue=adapter, store=pg, blueprints=bset,
                      stalled_after=stalled_threshold_seconds)  # fmt: skip
