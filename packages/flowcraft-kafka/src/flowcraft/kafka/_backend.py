"""Kafka + Cassandra + Redis as one backend: ports per namespace, a reconciler.

``KafkaBackend`` is what ``flowcraft worker --backend kafka``, ``flowcraft reconcile`` and
``flowcraft conformance --backend kafka`` use (entry point ``flowcraft.backends``). Options
(strings on the command line, each defaulting from its variable): ``bootstrap_servers``
(``FLOWCRAFT_KAFKA_BOOTSTRAP``), ``cassandra_contact_points`` (``host[:port],...``,
``FLOWCRAFT_CASSANDRA_CONTACT_POINTS``), ``cassandra_local_dc`` (``FLOWCRAFT_CASSANDRA_LOCAL_DC``,
default ``datacenter1``), ``keyspace`` (``FLOWCRAFT_CASSANDRA_KEYSPACE``, default ``flowcraft``),
``redis_url`` (``FLOWCRAFT_REDIS_URL``), ``partitions`` (of the topics it creates, 12),
``prefetch`` (64) and ``sticky_limit`` (512; see ``KafkaAdapter``).
Redis holds the coordination keys and carries runs' ends (capability ``run_notifications``):
the Cassandra store is wrapped in core's ``NotifyingRunStore``, which publishes terminal saves
on the channel ``<ns>:runs-ended`` (``Backend.store.inner`` is the ``CassandraContext``).

``create(namespace)`` creates, unless they exist, the topics ``<ns>-jobs``, ``<ns>-jobs.dead`` and
``<ns>-jobs.delay-0..5`` (consumer group ``<ns>-workers``) and the keyspace's tables (shared by
namespaces; the namespace is part of every partition key), then opens the three ports;
``destroy`` (tests) deletes the topics, the namespace's rows and its Redis keys (``<ns>:*``).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy
from flowcraft.core import BlueprintSet, Reconciler
from flowcraft.core.backends import Backend
from flowcraft.core.errors import BackendError
from flowcraft.core.ports import RunStore
from flowcraft.core.redis import (
    NotifyingRunStore,
    RedisCoordinationStore,
    drop_namespace_keys,
)
from flowcraft.kafka._errors import from_cassandra
from flowcraft.kafka._queue import KafkaAdapter
from flowcraft.kafka._sticky import STICKY_LIMIT
from flowcraft.kafka._store import CassandraContext
from flowcraft.kafka._topics import delete_topics, ensure_topics

__all__ = ["KafkaBackend", "create_kafka_reconciler"]

_DEFAULTS = {
    "bootstrap_servers": ("FLOWCRAFT_KAFKA_BOOTSTRAP", "127.0.0.1:19092"),
    "cassandra_contact_points": ("FLOWCRAFT_CASSANDRA_CONTACT_POINTS", "127.0.0.1:19042"),
    "cassandra_local_dc": ("FLOWCRAFT_CASSANDRA_LOCAL_DC", "datacenter1"),
    "keyspace": ("FLOWCRAFT_CASSANDRA_KEYSPACE", "flowcraft"),
    "redis_url": ("FLOWCRAFT_REDIS_URL", "redis://127.0.0.1:16379/0"),
}

#: Socket options of the Cassandra connections: ``TCP_NODELAY``. Without it a request the driver
#: writes in more than one piece (a conditional batch of about 2 KiB and more: a fan-out's save)
#: waits for the server's delayed ACK (Nagle's algorithm): ~45 ms per save, measured.
CASSANDRA_SOCKOPTS: list[tuple[int, int, int]] = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def _option(name: str, value: str | None) -> str:
    env, default = _DEFAULTS[name]
    return value or os.environ.get(env, default)


def _contact_points(text: str) -> tuple[list[str], int]:
    hosts, ports = [], set()
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, _, port = item.partition(":")
        hosts.append(host)
        ports.add(int(port) if port else 9042)
    if not hosts or len(ports) != 1:
        raise ValueError(
            f"option cassandra_contact_points: {text!r} is not host[:port],... with one port"
        )
    return hosts, ports.pop()


class KafkaBackend:
    """Opens the adapter's three ports for a namespace (see the module docstring)."""

    capabilities = frozenset({
        "coordination", "dead_letter", "delayed_delivery", "result_notices", "result_reads",
        "run_notifications", "started_runs",
    })  # fmt: skip
    #: The variables options default from: set, they beat a CLI config file's value.
    option_environment: ClassVar[Mapping[str, str]] = {
        name: env for name, (env, _default) in _DEFAULTS.items()
    }

    def __init__(
        self, *, bootstrap_servers: str | None = None,
        cassandra_contact_points: str | None = None, cassandra_local_dc: str | None = None,
        keyspace: str | None = None, redis_url: str | None = None, partitions: int | str = 12,
        prefetch: int | str = 64, sticky_limit: int | str = STICKY_LIMIT,
    ) -> None:  # fmt: skip
        self.bootstrap_servers = _option("bootstrap_servers", bootstrap_servers)
        self.contact_points = _option("cassandra_contact_points", cassandra_contact_points)
        self.local_dc = _option("cassandra_local_dc", cassandra_local_dc)
        self.keyspace = _option("keyspace", keyspace)
        self.redis_url = _option("redis_url", redis_url)
        self.partitions = _whole("partitions", partitions, 1, 10_000)
        self.prefetch = _whole("prefetch", prefetch, 1, 100_000)
        self.sticky_limit = _whole("sticky_limit", sticky_limit, 1, 1_000_000)
        _contact_points(self.contact_points)  # a wrong option fails here, with its name

    @property
    def kafka_config(self) -> dict[str, Any]:
        """The confluent-kafka settings of the adapter."""
        return {"bootstrap.servers": self.bootstrap_servers}

    async def create(self, namespace: str) -> Backend:
        """The ports of ``namespace`` (topics and tables created if missing)."""
        queue = KafkaAdapter(config=self.kafka_config, topic_name=f"{namespace}-jobs",
                             group_id=f"{namespace}-workers", prefetch=self.prefetch,
                             sticky_limit=self.sticky_limit)  # fmt: skip
        cluster = None
        try:
            await ensure_topics(self.kafka_config, queue.names, partitions=self.partitions)
            cluster, session = await self._connect()
            store = CassandraContext(session=session, keyspace=self.keyspace, namespace=namespace)
            await store.ensure_schema()
        except BackendError as exc:  # name the servers (never credentials)
            await queue.close()
            if cluster is not None:
                await asyncio.to_thread(cluster.shutdown)
            where = f"Kafka {self.bootstrap_servers}, Cassandra {self.contact_points}"
            raise type(exc)(f"{where}: {exc}") from exc
        coordination = RedisCoordinationStore(self.redis_url, prefix=namespace)

        async def worker_queue() -> KafkaAdapter:
            return queue.consumer()

        notifying = NotifyingRunStore(store, self.redis_url, prefix=namespace)
        return Backend(queue=queue, store=notifying, coordination=coordination,
                       dead_letters=queue.dead_letters, inject=queue.enqueue,
                       worker_queue=worker_queue, visibility_timeout=None,
                       extra={"namespace": namespace, "cluster": cluster})  # fmt: skip

    async def _connect(self) -> tuple[Any, Any]:
        hosts, port = _contact_points(self.contact_points)
        profile = ExecutionProfile(
            load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=self.local_dc),
            request_timeout=30,
        )
        cluster = Cluster(
            hosts, port=port, execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            schema_metadata_enabled=False, token_metadata_enabled=False, protocol_version=5,
            # a restarted node is back within seconds: look for it again soon, not after minutes
            reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=10.0),
            sockopts=CASSANDRA_SOCKOPTS,
        )  # fmt: skip
        try:
            session = await asyncio.to_thread(cluster.connect)
        except Exception as exc:
            await asyncio.to_thread(cluster.shutdown)
            raise from_cassandra(exc, "connect") from exc
        return cluster, session

    async def close(self, backend: Backend) -> None:
        """Close the ports (unsettled deliveries go back to the group); nothing is deleted."""
        await backend.queue.close()
        await backend.store.close()  # type: ignore[attr-defined]
        if backend.coordination is not None:
            await backend.coordination.close()
        cluster = backend.extra.get("cluster")
        if cluster is not None:
            await asyncio.to_thread(cluster.shutdown)

    async def destroy(self, backend: Backend) -> None:
        """Delete the namespace's rows, topics and Redis keys, then close (tests only)."""
        store = getattr(backend.store, "inner", backend.store)
        if isinstance(store, CassandraContext):
            await store.drop_namespace()
        await self.close(backend)
        await drop_namespace_keys(self.redis_url, str(backend.extra["namespace"]))
        queue = backend.queue
        if isinstance(queue, KafkaAdapter):
            await delete_topics(self.kafka_config, queue.names)


def _whole(name: str, value: int | str, least: int, most: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"option {name}: {value!r} is not a whole number") from None
    if not least <= number <= most:
        raise ValueError(f"option {name}: {number} is outside {least}..{most}")
    return number


def create_kafka_reconciler(
    *, adapter: KafkaAdapter, context: CassandraContext | RunStore,
    blueprints: Sequence[object] | BlueprintSet, stalled_threshold_seconds: float = 60.0,
) -> Reconciler:  # fmt: skip
    """A reconciler over the Kafka adapter and the Cassandra store (or ``Backend.store``).

    ``run()`` returns ``{stalled_runs, reconciled_runs, failed_runs}`` (``.as_dict()``);
    ``run_forever(interval)`` repeats it. Stalled runs come from the active-runs table.
    """
    bset = blueprints if isinstance(blueprints, BlueprintSet) else BlueprintSet(blueprints)  # type: ignore[arg-type]
    return Reconciler(queue=adapter, store=context, blueprints=bset,
                      stalled_after=stalled_threshold_seconds)  # fmt: skip
