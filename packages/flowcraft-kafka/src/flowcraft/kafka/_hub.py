"""The consumer of one process: a classic consumer-group member shared by its queue objects.

One ``Consumer`` per connection, owned by a dedicated thread (librdkafka's calls block): it
fetches ahead into a buffer of at most ``prefetch`` messages, runs the rebalance callbacks and
commits settled offsets every ``commit_interval``. The queue objects (``KafkaAdapter`` and the
consumers made from it) take from that buffer on the event loop. Queue objects of a process
share the member, so a worker joining or leaving *inside* a process never rebalances the group
(the group changes with processes): an unsettled delivery of one queue object stays with it,
however long, until it is settled or the object closes, and then it is handed to the next
``receive`` of the process with its count raised.

Offsets are tracked per partition (:mod:`flowcraft.kafka._offsets`): only the lowest unsettled
offset is committed, with the delivery counts and settled offsets above it in the commit's
metadata, committed before a batch is handed out. When a partition is revoked (another process
joined), its position and metadata are committed and its buffered messages dropped; its
deliveries still out are then settled locally only, and the new owner delivers them again
(at-least-once: the runtime's attempt leases make the node run once). An asynchronous commit
that fails (its answer comes back through ``on_commit``: the broker restarting, the
coordinator moving) is made again half a second later, so a partition whose last messages
were settled during an outage is still committed to its end.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from flowcraft.core.aio import wait_event
from flowcraft.kafka._errors import kafka_errors
from flowcraft.kafka._offsets import PartitionTracker, decode
from flowcraft.kafka._sticky import STICKY_LIMIT, StickyRoutes
from flowcraft.kafka._wire import Wire, unpack

__all__ = ["CONSUMER_FIXED", "ConsumerHub", "Fetched"]

log = logging.getLogger("flowcraft.kafka")

#: Consumer settings the adapter's bookkeeping rests on (a user config cannot change them).
CONSUMER_FIXED: Mapping[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "partition.assignment.strategy": "cooperative-sticky",
}

TP = tuple[str, int]

#: Seconds before the partitions of a failed offset commit are committed again.
COMMIT_RETRY = 0.5


@dataclass(slots=True, kw_only=True)
class Fetched:
    """A message fetched from a partition, with the count it is (or will be) delivered with."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    count: int

    @property
    def tp(self) -> TP:
        """Its partition."""
        return (self.topic, self.partition)


class ConsumerHub:
    """A consumer-group member fetching ``topic`` for the queue objects of one connection."""

    def __init__(
        self, config: Mapping[str, Any], *, topic: str, group_id: str, prefetch: int,
        poll_interval: float = 0.02, sticky_timeout: float = 2.0,
        sticky_limit: int = STICKY_LIMIT,
    ) -> None:  # fmt: skip
        self._config = {"auto.offset.reset": "earliest", "session.timeout.ms": 10_000,
                        **config, "group.id": group_id, **CONSUMER_FIXED,
                        "on_commit": self._answered}  # fmt: skip
        self.topic = topic
        self.prefetch = prefetch
        self._poll_interval = poll_interval
        self._lock = threading.Lock()  # trackers and counters, across the two sides
        self._commit_lock = threading.Lock()  # one commit at a time (positions never go back)
        self._trackers: dict[TP, PartitionTracker] = {}
        self._dirty: set[TP] = set()
        #: When the dirty partitions may be committed again after a commit failed (monotonic).
        self._retry_at = 0.0
        self._ready: deque[Fetched] = deque()
        self._arrived = asyncio.Event()
        self._stop = threading.Event()
        self._held = False  # every queue object stopped receiving: fetch nothing more
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer: Any = None
        self._failure: BaseException | None = None
        self.commits = 0  # commit requests (benchmarks count them)
        self._routes = StickyRoutes(timeout=sticky_timeout, limit=sticky_limit)

    # ------------------------------------------------------------------ loop side

    def start(self) -> None:
        """Join the group (once), from the event loop that will receive."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        with kafka_errors("create consumer"):
            self._consumer = Consumer(self._config)
        self._thread = threading.Thread(target=self._serve, name="flowcraft-kafka-consumer",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    async def take(self, max_messages: int, wait: float, taker: object) -> list[Fetched]:
        """Up to ``max_messages`` buffered messages for ``taker``, waiting up to ``wait``.

        ``taker`` is the queue object receiving: messages preferred for another one are left.
        """
        self.start()
        deadline = time.monotonic() + wait
        while True:
            batch = self._hand_out(max_messages, taker)
            if batch:
                return batch
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.is_set():
                return []
            self._arrived.clear()
            await wait_event(self._arrived, min(left, 0.5))

    def _hand_out(self, max_messages: int, taker: object) -> list[Fetched]:
        batch: list[Fetched] = []
        left: list[Fetched] = []
        now = time.monotonic()
        with self._lock:
            while self._ready and len(batch) < max_messages:
                fetched = self._ready.popleft()
                if self._routes.withheld(fetched.key, taker, now):
                    left.append(fetched)
                    continue
                tracker = self._trackers.get(fetched.tp)
                if tracker is not None and tracker.handed_out(fetched.offset):
                    batch.append(fetched)
                    self._dirty.add(fetched.tp)  # its count, committed at once
            self._ready.extendleft(reversed(left))
        return batch

    def route(self, key: bytes, owner: object) -> int | None:
        """The partition for ``owner``'s sticky message ``key`` (None: the key's partition).

        A partition this process owns; the message is then preferred for ``owner``.
        """
        with self._lock:
            return self._routes.route(key, owner, self._owned(), time.monotonic())

    def owned(self) -> list[int]:
        """The partitions of the topic assigned to this process now."""
        with self._lock:
            return self._owned()

    def _owned(self) -> list[int]:
        return sorted(p for (topic, p) in self._trackers if topic == self.topic)

    def unroute(self, owner: object) -> None:
        """``owner`` stopped receiving: the messages preferred for it go to any queue object."""
        with self._lock:
            self._routes.drop(owner)
        self._arrived.set()

    def settle(self, fetched: Fetched) -> None:
        """The delivery is done: its offset may be committed (soon, by the consumer thread)."""
        with self._lock:
            tracker = self._trackers.get(fetched.tp)
            if tracker is not None:  # else revoked: the new owner delivers it again
                tracker.settle(fetched.offset)
                self._dirty.add(fetched.tp)

    def give_back(self, deliveries: Sequence[Fetched]) -> None:
        """Unsettled deliveries of a closed queue object: hand them out again, count + 1."""
        again: list[Fetched] = []
        with self._lock:
            for fetched in deliveries:
                tracker = self._trackers.get(fetched.tp)
                count = None if tracker is None else tracker.redelivered(fetched.offset)
                if count is not None:
                    fetched.count = count
                    again.append(fetched)
            self._ready.extendleft(reversed(again))
        if again:
            self._arrived.set()

    def untake(self, batch: Sequence[Fetched]) -> None:
        """Put a batch that was taken but never delivered back in front (counts unchanged)."""
        with self._lock:
            for fetched in batch:
                tracker = self._trackers.get(fetched.tp)
                if tracker is not None and fetched.offset in tracker.states:
                    tracker.buffered.add(fetched.offset)
            self._ready.extendleft(reversed(batch))
        if batch:
            self._arrived.set()

    def hold(self, held: bool) -> None:
        """Stop (or resume) fetching ahead: no queue object of the process receives any more.

        What is buffered stays for the process's other queue objects, and goes back to the
        group when the process leaves it (``close``).
        """
        self._held = held

    async def close(self) -> None:
        """Commit what is settled, leave the group, stop the thread."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    def _arrive(self, batch: list[Fetched]) -> None:
        with self._lock:
            self._ready.extend(batch)
        self._arrived.set()

    # ------------------------------------------------------------------ consumer thread

    def _serve(self) -> None:
        consumer = self._consumer
        consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked,
                           on_lost=self._lost)  # fmt: skip
        paused = False
        try:
            while not self._stop.is_set():
                want_pause = self._held or len(self._ready) >= self.prefetch
                if want_pause != paused:
                    self._pause(want_pause)
                    paused = want_pause
                wanted = max(1, self.prefetch - len(self._ready))
                self._fetched(self._consume(consumer, wanted))
                if self._dirty and time.monotonic() >= self._retry_at:
                    self._commit(None, asynchronous=True)
        except BaseException as exc:
            log.exception("flowcraft-kafka consumer thread failed")
            self._failure = exc
        finally:
            self._shutdown(consumer)

    def _consume(self, consumer: Any, wanted: int) -> list[Message]:  # noqa: ANN401
        """What has arrived, up to ``wanted``: waits up to the poll interval for the first only.

        ``consume(wanted, interval)`` alone returns when ``wanted`` messages came or the interval
        is over, so one job would wait out the interval (10 ms per hop on average with 20 ms).
        """
        first = consumer.poll(self._poll_interval)
        if first is None:
            return []
        return [first, *consumer.consume(wanted - 1, 0)] if wanted > 1 else [first]

    def _shutdown(self, consumer: Any) -> None:  # noqa: ANN401
        try:
            self._commit(None)
        except Exception:
            log.warning("flowcraft-kafka: final commit failed", exc_info=True)
        consumer.close()

    def _pause(self, pause: bool) -> None:
        assignment = self._consumer.assignment()
        if assignment:
            (self._consumer.pause if pause else self._consumer.resume)(assignment)

    def _fetched(self, messages: list[Message]) -> None:
        batch: list[Fetched] = []
        with self._lock:
            for message in messages:
                if (error := message.error()) is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("flowcraft-kafka consume: %s", error.str())
                    continue
                wire = unpack(message)
                tracker = self._trackers.get(wire.tp)
                if tracker is None:
                    continue
                count = tracker.fetched(wire.offset, int(wire.header("flowcraft-count") or b"0"))
                if count is not None:
                    batch.append(_fetched(wire, count))
                else:
                    self._dirty.add(wire.tp)
        if batch and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._arrive, batch)

    def _assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:  # noqa: ANN401
        committed = consumer.committed(partitions, timeout=30) if partitions else []
        with self._lock:
            for tp in committed:
                position = tp.offset if tp.offset >= 0 else -1
                inherited = decode(position, tp.metadata) if position >= 0 else {}
                self._trackers[(tp.topic, tp.partition)] = PartitionTracker(
                    position=position, inherited=inherited
                )

    def _revoked(self, consumer: Any, partitions: list[TopicPartition]) -> None:  # noqa: ANN401
        gone = {(tp.topic, tp.partition) for tp in partitions}
        try:
            self._commit(gone)
        except Exception:
            log.warning("flowcraft-kafka: commit on revocation failed", exc_info=True)
        self._forget(gone)

    def _lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:  # noqa: ANN401
        self._forget({(tp.topic, tp.partition) for tp in partitions})

    def _forget(self, gone: set[TP]) -> None:
        """Drop revoked partitions and what is buffered of them (the new owner delivers it)."""
        with self._lock:
            for tp in gone:
                self._trackers.pop(tp, None)
                self._dirty.discard(tp)
            kept = [fetched for fetched in self._ready if fetched.tp not in gone]
            self._ready.clear()
            self._ready.extend(kept)

    def _answered(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """A commit's answer (served by ``poll`` on the consumer thread).

        A commit that failed (the broker restarting, the group coordinator moving) makes its
        partitions dirty again, committed once :data:`COMMIT_RETRY` seconds passed: without
        that, a partition on which nothing more is settled would keep its last message
        uncommitted (delivered again after the next rebalance) for good.
        """
        failed = {
            (tp.topic, tp.partition)
            for tp in partitions
            if error is not None or tp.error is not None
        }
        if not failed:
            return
        with self._lock:
            again = {tp for tp in failed if tp in self._trackers}
            if again:
                self._dirty |= again
                self._retry_at = time.monotonic() + COMMIT_RETRY
        log.info("flowcraft-kafka: offset commit failed (%s), retrying", error or "partition")

    def _commit(self, which: set[TP] | None, *, asynchronous: bool = False) -> None:
        """Commit the position and metadata of ``which`` partitions (None: the dirty ones)."""
        with self._commit_lock:
            with self._lock:
                chosen = set(self._dirty) if which is None else which
                offsets = [
                    TopicPartition(topic, partition, tracker.position, metadata=tracker.metadata())
                    for (topic, partition) in chosen
                    if (tracker := self._trackers.get((topic, partition))) is not None
                    and tracker.position >= 0
                ]
                self._dirty -= chosen
            if offsets:
                with kafka_errors("commit offsets"):
                    self._consumer.commit(offsets=offsets, asynchronous=asynchronous)
                self.commits += 1


def _fetched(wire: Wire, count: int) -> Fetched:
    return Fetched(
        topic=wire.topic, partition=wire.partition, offset=wire.offset, key=wire.key,
        value=wire.value, headers=wire.headers, count=count,
    )  # fmt: skip
