"""Kafka answers a real create topic → produce → consume → commit round trip (confluent-kafka)."""

import time
import uuid

from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # confluent_kafka.admin does not re-export it

TIMEOUT_S = 30.0


def _first_message(consumer: Consumer, timeout_s: float) -> Message:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        error = message.error()
        assert error is None, f"consumer error: {error}"
        return message
    raise AssertionError(f"no message within {timeout_s:.0f}s")


def test_create_topic_produce_then_consume_in_a_group(kafka_bootstrap: str) -> None:
    topic = f"smoke-{uuid.uuid4()}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    created[topic].result(timeout=TIMEOUT_S)
    try:
        payload = uuid.uuid4().bytes
        reports: list[KafkaError | None] = []

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            reports.append(error)

        producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
        producer.produce(topic, value=payload, key=b"smoke", on_delivery=on_delivery)
        assert producer.flush(TIMEOUT_S) == 0
        assert reports == [None]

        consumer = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": f"{topic}-group",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        try:
            consumer.subscribe([topic])
            message = _first_message(consumer, TIMEOUT_S)
            assert message.topic() == topic
            assert message.key() == b"smoke"
            assert message.value() == payload
            offset = message.offset()
            assert offset is not None
            committed = consumer.commit(message=message, asynchronous=False)
            assert committed is not None
            assert [tp.offset for tp in committed] == [offset + 1]
        finally:
            consumer.close()
    finally:
        admin.delete_topics([topic])[topic].result(timeout=TIMEOUT_S)
