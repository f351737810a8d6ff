"""One idempotent producer per connection, its delivery reports handed back to asyncio.

confluent-kafka's ``produce`` only queues a message; the broker's answer comes back as a
delivery report, served by ``poll``. A dedicated thread polls (librdkafka's calls block), and
each report resolves the asyncio future of its message through a
:class:`~flowcraft.kafka._relay.Relay` (one loop wake-up for the reports of one ``poll``):
``send`` returns once the broker has written the message to every in-sync replica
(``acks=all``, ``enable.idempotence=true``: retries never duplicate or reorder it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, Producer
from flowcraft.kafka._errors import from_kafka_error, kafka_errors
from flowcraft.kafka._relay import Relay

__all__ = ["Headers", "KafkaProducer"]

Headers = Sequence[tuple[str, bytes]]

#: Settings no user configuration may weaken (what "enqueued" means rests on them).
PRODUCER_FIXED: Mapping[str, Any] = {"enable.idempotence": True, "acks": "all"}


class KafkaProducer:
    """A producer and the thread that serves its delivery reports."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        settings = {"linger.ms": 1, **config, **PRODUCER_FIXED}
        with kafka_errors("create producer"):
            self._producer = Producer(settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="flowcraft-kafka-producer",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        self._relay: Relay | None = None
        self.requests = 0  # produce calls (benchmarks count them)

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(
        self, topic: str, key: bytes, value: bytes, headers: Headers, partition: int | None = None
    ) -> None:
        """Produce one message (to ``partition``, else by its key) and await the broker's ack."""
        loop = asyncio.get_running_loop()
        relay = self._relay
        if relay is None or relay.loop is not loop:
            relay = self._relay = Relay(loop)
        done: asyncio.Future[None] = loop.create_future()
        self.send_then(topic, key, value, headers, lambda error: relay.post(_settle, done, error),
                       partition=partition)  # fmt: skip
        await done

    def send_then(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: Headers,
        then: Any,  # noqa: ANN401
        *,
        partition: int | None = None,
    ) -> None:
        """Produce one message; ``then(error_or_None)`` runs in the poll thread on its report."""

        def report(error: KafkaError | None, _message: object) -> None:
            then(None if error is None else from_kafka_error(error, f"produce to {topic}"))

        with kafka_errors(f"produce to {topic}"):
            if partition is None:
                self._producer.produce(topic, value=value, key=key, headers=list(headers),
                                       on_delivery=report)  # fmt: skip
            else:
                self._producer.produce(topic, value=value, key=key, headers=list(headers),
                                       partition=partition, on_delivery=report)  # fmt: skip
        self.requests += 1

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (up to ``timeout``), then stop the poll thread."""
        self._producer.flush(timeout)
        self._stop.set()
        self._thread.join()


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
