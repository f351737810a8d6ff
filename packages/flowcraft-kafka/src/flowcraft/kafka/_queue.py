"""The job queue on Apache Kafka (``ports.JobQueue``), a classic consumer group underneath.

**Design: a classic consumer group with contiguous-offset commits, not a share group.** Share
groups (KIP-932, "queues for Kafka": per-record acknowledgement, broker-side delivery counts
and acquisition locks) are a preview in Kafka 4.1, the broker ``tools/services`` runs in CI
(disabled unless the ``share.version`` feature is switched on, not for production), become
production-ready only with 4.2, and most managed services (MSK, Confluent Cloud, Aiven, Event
Hubs) do not offer them yet. A classic group works on every Kafka since 2.4, managed or not.
What the port needs and Kafka lacks is built on the group:

* **Per-message settlement**: many messages of a partition are in flight at once (no
  head-of-line blocking by a slow node); only the lowest unsettled offset is committed
  (:mod:`flowcraft.kafka._offsets`), so no rebalance ever commits unsettled work.
* **Delivery counts**: kept above the committed offset in the commit's metadata (committed
  before a batch is handed out) and carried in a ``flowcraft-count`` header by re-produced
  copies (``nack``): a consumer killed mid-node leaves its counts to the next owner.
* **Delays**: delay topics with fixed holds and a forwarder (:mod:`flowcraft.kafka._delays`),
  never early, never blocking the jobs topic; ``max_delay`` is unbounded (the last tier
  repeats).
* **Dead letters**: a dead-letter topic, the reason in the ``flowcraft-reason`` header.
* **Visibility**: none is needed. A delivery stays with its consumer until it is settled, so
  ``extend`` has nothing to renew; the deliveries of a queue object that closes are handed
  to the process's next ``receive`` at once, and those of a process that dies come back when
  the group notices (``session.timeout.ms``, 10 s by default) and rebalances.

**One group member per process.** The queue objects of a connection (``KafkaAdapter`` and the
consumers made with :meth:`KafkaAdapter.consumer`, one per worker) share one ``Consumer``
(:mod:`flowcraft.kafka._hub`) and one idempotent ``Producer`` (``acks=all``,
:mod:`flowcraft.kafka._producer`), each driven by a thread of its own; asyncio never blocks on
librdkafka. ``enqueue`` returns once the broker acknowledged the write. A message's key is its
id, so a run's jobs spread over the partitions by the default partitioner (murmur2).

**Sticky delivery** (capability ``sticky``, :mod:`flowcraft.kafka._sticky`): a worker's
``enqueue(sticky=True)`` (the next steps of a run it just decided, which it runs ahead of their
messages with the leases its save took) goes to a partition this process owns and is left for
that worker by the process's other queue objects for ``sticky_timeout`` seconds; it stays an
ordinary message of the jobs topic (committed once settled, delivered again by the next owner
if the process dies or the partition moves), so at-least-once and crash recovery are those of
any job. At most ``sticky_limit`` sticky messages are routed this way within
``sticky_timeout`` (beyond, by key).

Limits: order is not kept (the port promises none); a partition is consumed by one process at
a time, so ``partitions`` bounds how many processes share the work (default 12); a process that
joins or leaves the group moves partitions, and their deliveries still in flight elsewhere are
delivered again to the new owner (at-least-once; the runtime's attempt leases keep a node from
running twice); messages larger than the broker's ``message.max.bytes`` (1 MiB by default) are
refused with ``PermanentBackendError``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.ports import Message, QueueCapabilities
from flowcraft.kafka._delays import tier_for
from flowcraft.kafka._delivery import KafkaDelivery
from flowcraft.kafka._errors import kafka_errors
from flowcraft.kafka._forwarder import DUE_HEADER, DelayForwarder
from flowcraft.kafka._hub import ConsumerHub
from flowcraft.kafka._producer import Headers, KafkaProducer
from flowcraft.kafka._sticky import STICKY_LIMIT
from flowcraft.kafka._topics import TopicNames
from flowcraft.kafka._wire import unpack

__all__ = ["KafkaAdapter"]


class _Connection:
    """What the queue objects of one ``KafkaAdapter`` share: producer, member, forwarder."""

    def __init__(
        self, config: Mapping[str, Any], names: TopicNames, group_id: str, prefetch: int,
        sticky: tuple[float | None, int],
    ) -> None:  # fmt: skip
        sticky_timeout, sticky_limit = sticky
        self.config = dict(config)
        self.names = names
        self.group_id = group_id
        self.sticky_timeout = sticky_timeout
        self.producer = KafkaProducer(config)
        self.hub = ConsumerHub(config, topic=names.jobs, group_id=group_id, prefetch=prefetch,
                               sticky_timeout=sticky_timeout or 1.0,
                               sticky_limit=sticky_limit)  # fmt: skip
        self.forwarder = DelayForwarder(
            config, jobs_topic=names.jobs, delay_topics=names.delays,
            group_id=f"{group_id}.delays", producer=self.producer,
        )  # fmt: skip
        self.receiving: set[KafkaAdapter] = set()
        self.closed = False

    def started(self, queue: KafkaAdapter) -> None:
        self.receiving.add(queue)
        self.hub.hold(False)
        self.forwarder.start()

    def stopped(self, queue: KafkaAdapter) -> None:
        if queue in self.receiving:
            self.receiving.discard(queue)
            self.hub.unroute(queue)
            if not self.receiving:
                self.hub.hold(True)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self.hub.close()
        await asyncio.to_thread(self.forwarder.close)
        await asyncio.to_thread(self.producer.close)


class KafkaAdapter:
    """The job queue on a Kafka topic (see the module for the design and its limits).

    Args:
        config: confluent-kafka (librdkafka) settings shared by the producer and consumers,
            at least ``bootstrap.servers``; security settings go here too. The adapter fixes
            ``enable.idempotence``, ``acks=all``, manual commits and the cooperative-sticky
            assignor.
        topic_name: The jobs topic; the dead-letter and delay topics are named after it.
        group_id: The consumer group of the workers (the forwarder uses ``<group_id>.delays``).
        prefetch: How many messages the process's consumer fetches ahead at most.
        sticky_timeout: Seconds a sticky message waits for the queue object that sent it
            before any queue object of the process takes it (see the module); None turns
            sticky enqueues off (capability ``sticky`` False).
        sticky_limit: How many sticky messages the process routes to its own partitions
            within ``sticky_timeout`` at most; beyond, by key (any process), so that one wide
            fan-out is shared with other processes. Many runs at once keep their steps with
            the process that decides them below it (no claim, load or contended save
            elsewhere).
    """

    def __init__(
        self, *, config: Mapping[str, Any], topic_name: str = "flowcraft-jobs",
        group_id: str = "flowcraft-workers", prefetch: int = 64,
        sticky_timeout: float | None = 2.0, sticky_limit: int = STICKY_LIMIT,
    ) -> None:  # fmt: skip
        if "bootstrap.servers" not in config:
            raise ValueError("KafkaAdapter: config needs 'bootstrap.servers'")
        if prefetch < 1:
            raise ValueError(f"KafkaAdapter: prefetch {prefetch} is not positive")
        if sticky_timeout is not None and sticky_timeout <= 0:
            raise ValueError(f"KafkaAdapter: sticky_timeout {sticky_timeout} is not positive")
        if sticky_limit < 1:
            raise ValueError(f"KafkaAdapter: sticky_limit {sticky_limit} is not positive")
        self._connection = _Connection(
            config, TopicNames(topic_name), group_id, prefetch, (sticky_timeout, sticky_limit)
        )
        self._owner = True
        self._open: set[KafkaDelivery] = set()
        self._stopped = False
        self._closed = False

    @property
    def names(self) -> TopicNames:
        """The topics this queue uses."""
        return self._connection.names

    @property
    def group_id(self) -> str:
        """The consumer group of the workers."""
        return self._connection.group_id

    @property
    def capabilities(self) -> QueueCapabilities:
        """Delays, dead letters, sticky delivery (unless off); no dedup, unbounded delays."""
        return QueueCapabilities(
            native_delay=True, max_delay=None, dead_letter=True, dedup=False,
            sticky=self._connection.sticky_timeout is not None,
        )  # fmt: skip

    def consumer(self) -> KafkaAdapter:
        """A queue object of its own (one per worker) on this adapter's connection.

        Its ``stop_receiving`` and ``close`` are its own; closing it hands its unsettled
        deliveries to the connection's next ``receive``. The connection closes with the
        adapter that made it.
        """
        view = KafkaAdapter.__new__(KafkaAdapter)
        view._connection = self._connection
        view._owner = False
        view._open = set()
        view._stopped = False
        view._closed = False
        return view

    async def enqueue(self, message: Message, *, delay: float = 0.0, sticky: bool = False) -> None:
        """Produce ``message`` (to a delay topic when ``delay`` > 0) and await the broker's ack.

        ``sticky`` (a job due now, on a queue object that receives): to a partition this
        process owns, preferred for this queue object (see the module).
        """
        if delay < 0:
            raise ValueError(f"enqueue: delay {delay} is negative")
        key = message.id.encode()
        partition = self._sticky_partition(key) if sticky and delay == 0 else None
        await self._produce(key, message.body, (), delay, partition)

    def _sticky_partition(self, key: bytes) -> int | None:
        connection = self._connection
        if connection.sticky_timeout is None or self not in connection.receiving:
            return None
        return connection.hub.route(key, self)

    async def _produce(
        self, key: bytes, value: bytes, headers: Headers, delay: float,
        partition: int | None = None,
    ) -> None:  # fmt: skip
        connection = self._usable()
        names = connection.names
        if delay <= 0:
            await connection.producer.send(names.jobs, key, value, headers, partition)
            return
        due = int((time.time() + delay) * 1000) + 1  # rounded up: never early
        topic = names.delays[tier_for(delay)]
        await connection.producer.send(
            topic, key, value, [*headers, (DUE_HEADER, str(due).encode())]
        )

    async def receive(self, max_messages: int, wait: float) -> Sequence[KafkaDelivery]:
        """Up to ``max_messages`` deliveries, waiting up to ``wait`` seconds for the first."""
        if not self._receiving():
            return []
        connection = self._usable()
        connection.started(self)
        batch = await connection.hub.take(max_messages, wait, self)
        if not self._receiving():  # stopped meanwhile: the others take them
            connection.hub.untake(batch)
            return []
        deliveries = [KafkaDelivery(fetched, self) for fetched in batch]
        self._open.update(deliveries)
        return deliveries

    async def stop_receiving(self) -> None:
        """Take no more messages on this object (its deliveries stay settleable)."""
        self._stopped = True
        self._connection.stopped(self)

    async def close(self) -> None:
        """Hand the unsettled deliveries back; the adapter that owns it closes the connection."""
        if self._closed:
            return
        self._closed = True
        self._connection.stopped(self)
        self._connection.hub.give_back([d.fetched for d in self._open if not d.settled])
        self._open.clear()
        if self._owner:
            await self._connection.close()

    async def dead_letters(self) -> list[tuple[str, str]]:
        """``(message id, reason)`` of every message in the dead-letter topic (tests, tools).

        A read-only look: a transient broker answer (a partition whose leader is still being
        elected right after the topic's first message, ``NOT_LEADER_FOR_PARTITION``) is
        retried for up to ``_DEAD_READ_PATIENCE`` seconds before it is raised.
        """
        connection = self._connection
        deadline = time.monotonic() + _DEAD_READ_PATIENCE
        while True:
            try:
                return await asyncio.to_thread(_read_dead, connection.config, connection.names.dead)
            except TransientBackendError:
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(0.2)

    def _receiving(self) -> bool:
        return not (self._stopped or self._closed)

    # ------------------------------------------------------------------ Settler

    def _usable(self) -> _Connection:
        if self._connection.closed:
            raise TransientBackendError("KafkaAdapter: the connection is closed")
        return self._connection

    def _held(self, delivery: KafkaDelivery) -> None:
        if delivery not in self._open:
            raise TransientBackendError(
                f"KafkaAdapter: {delivery!r} was handed back when its consumer closed"
            )

    async def settle_ack(self, delivery: KafkaDelivery) -> None:
        """Mark the offset settled (committed by the consumer thread soon)."""
        self._held(delivery)
        self._usable().hub.settle(delivery.fetched)
        self._open.discard(delivery)

    async def settle_again(self, delivery: KafkaDelivery, delay: float) -> None:
        """Produce a copy due in ``delay`` seconds with the count so far, then settle."""
        self._held(delivery)
        fetched = delivery.fetched
        kept = [(k, v) for k, v in fetched.headers if k not in ("flowcraft-count", DUE_HEADER)]
        kept.append(("flowcraft-count", str(fetched.count).encode()))
        await self._produce(fetched.key, fetched.value, kept, max(0.0, delay))
        await self.settle_ack(delivery)

    async def settle_dead(self, delivery: KafkaDelivery, reason: str) -> None:
        """Produce a copy to the dead-letter topic with the reason, then settle."""
        self._held(delivery)
        fetched = delivery.fetched
        source = f"{fetched.topic}/{fetched.partition}/{fetched.offset}"
        headers = [*fetched.headers, ("flowcraft-reason", reason.encode()),
                   ("flowcraft-source", source.encode())]  # fmt: skip
        connection = self._usable()
        await connection.producer.send(connection.names.dead, fetched.key, fetched.value, headers)
        await self.settle_ack(delivery)


#: Seconds ``dead_letters`` retries a transient failure of its read.
_DEAD_READ_PATIENCE = 10.0


def _read_dead(config: Mapping[str, Any], topic: str) -> list[tuple[str, str]]:
    """Every message of ``topic`` from its start to its end (an unnamed reader, no group)."""
    settings = {**config, "group.id": "flowcraft-dead-letter-reader", "enable.auto.commit": False}
    with kafka_errors(f"read {topic}"):
        reader = Consumer(settings)
        try:
            return _read_partitions(reader, topic)
        finally:
            reader.close()


def _read_partitions(reader: Consumer, topic: str) -> list[tuple[str, str]]:
    metadata = reader.list_topics(topic, timeout=10).topics[topic]
    ends: dict[int, int] = {}
    for partition in metadata.partitions:
        low, high = reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if high > low:
            ends[partition] = high
    reader.assign([TopicPartition(topic, p, 0) for p in ends])
    found: list[tuple[int, int, str, str]] = []
    deadline = time.monotonic() + 10
    done = {p: False for p in ends}
    while not all(done.values()) and time.monotonic() < deadline:
        for message in reader.consume(500, 0.2):
            if message.error() is not None:
                continue
            wire = unpack(message)
            reason = (wire.header("flowcraft-reason") or b"").decode()
            found.append((wire.partition, wire.offset, wire.key.decode(), reason))
            if wire.offset + 1 >= ends[wire.partition]:
                done[wire.partition] = True
    return [(key, reason) for _, _, key, reason in sorted(found)]
