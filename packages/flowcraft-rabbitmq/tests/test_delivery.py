"""Delivery counting and settle-once, without a broker."""

from collections.abc import Mapping

import pytest
from flowcraft.rabbitmq._delivery import (
    DEAD_REASON,
    DELIVERIES,
    RabbitMqDelivery,
    count_deliveries,
)


def test_first_delivery_counts_one() -> None:
    assert count_deliveries(None, redelivered=False) == 1
    assert count_deliveries({}, redelivered=False) == 1


def test_carried_count_and_broker_redelivery_add_up() -> None:
    assert count_deliveries({DELIVERIES: 2}, redelivered=False) == 3
    assert count_deliveries({DELIVERIES: 2}, redelivered=True) == 4
    assert count_deliveries({DELIVERIES: "junk"}, redelivered=False) == 1


class Recorder:
    def __init__(self) -> None:
        self.acks = 0
        self.published: list[tuple[str, float, dict[str, object]]] = []

    def ack(self) -> None:
        self.acks += 1

    async def republish(self, target: str, delay: float, headers: Mapping[str, object]) -> None:
        self.published.append((target, delay, dict(headers)))


def make(recorder: Recorder, count: int = 1) -> RabbitMqDelivery:
    return RabbitMqDelivery(
        message_id="m",
        body=b"b",
        delivery_count=count,
        ack=recorder.ack,
        republish=recorder.republish,
    )


async def test_nack_republishes_with_the_count_then_acks() -> None:
    recorder = Recorder()
    await make(recorder, count=3).nack(2.5)
    assert recorder.published == [("jobs", 2.5, {DELIVERIES: 3})]
    assert recorder.acks == 1


async def test_dead_letter_carries_the_reason_then_acks() -> None:
    recorder = Recorder()
    await make(recorder).dead_letter("poison")
    assert recorder.published == [("dead", 0.0, {DELIVERIES: 1, DEAD_REASON: "poison"})]
    assert recorder.acks == 1


async def test_a_delivery_is_settled_once() -> None:
    recorder = Recorder()
    delivery = make(recorder)
    await delivery.ack()
    with pytest.raises(RuntimeError, match="already settled"):
        await delivery.nack()
    with pytest.raises(RuntimeError, match="already settled"):
        await delivery.extend(10)
    assert recorder.acks == 1
    assert recorder.published == []


async def test_a_failed_ack_leaves_the_delivery_unsettled() -> None:
    calls = 0

    def failing_ack() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("channel gone")

    delivery = RabbitMqDelivery(
        message_id="m", body=b"", delivery_count=1, ack=failing_ack, republish=Recorder().republish
    )
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await delivery.ack()
    assert calls == 2
