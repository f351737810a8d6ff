"""The delay forwarder: a consumer of the delay topics that releases messages when due.

See :mod:`flowcraft.kafka._delays` for the tiers. One forwarder runs per connection that
receives (a member of the group ``<group_id>.delays``, so the delay topics' partitions are
shared between processes like the jobs topic's). It runs in a thread of its own: it holds what
it fetched per partition, in order, pauses a partition whose head is not due yet (consumption
of the others goes on), and when heads are due it produces them onward (the jobs topic, or the
tier of what remains), waits for the broker's acknowledgements, and only then commits their
offsets: a crash in between forwards a message twice (the runtime dedupes), never loses one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from flowcraft.kafka._delays import release_at, tier_for
from flowcraft.kafka._errors import kafka_errors
from flowcraft.kafka._hub import CONSUMER_FIXED
from flowcraft.kafka._producer import KafkaProducer
from flowcraft.kafka._wire import Wire, unpack

__all__ = ["DUE_HEADER", "DelayForwarder"]

log = logging.getLogger("flowcraft.kafka")

#: The header that carries a delayed message's due time (epoch milliseconds, ASCII).
DUE_HEADER = "flowcraft-due"

TP = tuple[str, int]


class DelayForwarder:
    """Moves due messages from the delay topics to the jobs topic (a thread of its own)."""

    def __init__(
        self, config: Mapping[str, Any], *, jobs_topic: str, delay_topics: Sequence[str],
        group_id: str, producer: KafkaProducer,
    ) -> None:  # fmt: skip
        self._config = {"auto.offset.reset": "earliest", "session.timeout.ms": 10_000,
                        **config, "group.id": group_id, **CONSUMER_FIXED}  # fmt: skip
        self._jobs = jobs_topic
        self._delays = list(delay_topics)
        self._tier = {topic: index for index, topic in enumerate(self._delays)}
        self._producer = producer
        self._held: dict[TP, deque[Wire]] = {}
        self._paused: set[TP] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Any = None

    def start(self) -> None:
        """Join the delay group (once)."""
        if self._thread is not None:
            return
        with kafka_errors("create delay consumer"):
            self._consumer = Consumer(self._config)
        self._thread = threading.Thread(target=self._serve, name="flowcraft-kafka-delays",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def close(self) -> None:
        """Stop forwarding and leave the group (blocking: call it from a thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _serve(self) -> None:
        consumer = self._consumer
        consumer.subscribe(self._delays, on_revoke=self._revoked, on_lost=self._revoked)
        try:
            while not self._stop.is_set():
                wait = self._release()
                self._pause_undue()
                for message in consumer.consume(500, wait):
                    self._hold(message)
        except Exception:
            log.exception("flowcraft-kafka delay forwarder failed")
        finally:
            consumer.close()

    def _hold(self, message: Message) -> None:
        if (error := message.error()) is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("flowcraft-kafka delay consume: %s", error.str())
            return
        wire = unpack(message)
        self._held.setdefault(wire.tp, deque()).append(wire)

    def _release_time(self, wire: Wire) -> int:
        due = int(wire.header(DUE_HEADER) or b"0")
        return release_at(self._tier[wire.topic], wire.timestamp_ms, due)

    def _release(self) -> float:
        """Forward every due head; the seconds until the next one (at most 0.1)."""
        now = int(time.time() * 1000)
        due: dict[TP, list[Wire]] = {}
        next_ms = now + 100
        for tp, queue in self._held.items():
            for message in queue:
                at = self._release_time(message)
                if at > now:
                    next_ms = min(next_ms, at)
                    break
                due.setdefault(tp, []).append(message)
        if due and self._forward([m for ms in due.values() for m in ms], now):
            for tp, messages in due.items():
                for _ in messages:
                    self._held[tp].popleft()
            self._commit(due)
        return max(0.0, (next_ms - int(time.time() * 1000)) / 1000)

    def _forward(self, messages: list[Wire], now: int) -> bool:
        """Produce each onward and wait for the acknowledgements; True if all were written."""
        done = threading.Semaphore(0)
        failures: list[BaseException] = []

        def then(error: BaseException | None) -> None:
            if error is not None:
                failures.append(error)
            done.release()

        for message in messages:
            due = int(message.header(DUE_HEADER) or b"0")
            left = (due - now) / 1000
            topic = self._jobs if left <= 0 else self._delays[tier_for(left)]
            headers = [(k, v) for k, v in message.headers if k != DUE_HEADER]
            if left > 0:
                headers.append((DUE_HEADER, str(due).encode()))
            self._producer.send_then(topic, message.key, message.value, headers, then)
        for _ in messages:
            while not done.acquire(timeout=0.1):  # the broker may be away for a while
                if self._stop.is_set():
                    return False  # closing: not committed, forwarded again by the next owner
        if failures:
            log.warning("flowcraft-kafka: forwarding delayed messages failed: %s", failures[0])
        return not failures

    def _commit(self, forwarded: dict[TP, list[Wire]]) -> None:
        offsets = [TopicPartition(t, p, ms[-1].offset + 1) for (t, p), ms in forwarded.items()]
        try:
            with kafka_errors("commit delay offsets"):
                self._consumer.commit(offsets=offsets, asynchronous=True)
        except Exception:
            log.warning("flowcraft-kafka: delay commit failed", exc_info=True)

    def _pause_undue(self) -> None:
        waiting = {tp for tp, queue in self._held.items() if queue}
        if pause := waiting - self._paused:
            self._consumer.pause([TopicPartition(t, p) for t, p in pause])
        if resume := self._paused - waiting:
            self._consumer.resume([TopicPartition(t, p) for t, p in resume])
        self._paused = waiting

    def _revoked(self, consumer: Any, partitions: list[TopicPartition]) -> None:  # noqa: ANN401
        for tp in partitions:
            self._held.pop((tp.topic, tp.partition), None)
            self._paused.discard((tp.topic, tp.partition))
