"""RabbitMqAdapter (the job queue) against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pika
import pytest
from flowcraft.core import ports
from flowcraft.core.errors import TransientBackendError
from flowcraft.rabbitmq import RabbitMqAdapter


def message(i: int | str) -> ports.Message:
    return ports.Message(id=f"m{i}", body=f"body-{i}".encode())


def get_dead(url: str, queue: str) -> tuple[bytes, dict[str, Any], str] | None:
    """One message from the dead-letter queue (blocking pika, run in a thread)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        method, properties, body = connection.channel().basic_get(queue, auto_ack=True)
        if method is None:
            return None
        return bytes(body), dict(properties.headers or {}), str(properties.message_id)
    finally:
        connection.close()


async def test_receive_respects_max_messages_and_prefetch(queue: RabbitMqAdapter) -> None:
    for i in range(4):
        await queue.enqueue(message(i))
    first = await queue.receive(2, wait=2.0)  # prefetch: 2 (the first receive's batch)
    assert len(first) == 2
    assert await queue.receive(2, wait=0.3) == []  # both slots are held until settled
    for delivery in first:
        await delivery.ack()
    second = await queue.receive(2, wait=2.0)
    assert len(second) == 2
    assert {d.message_id for d in first}.isdisjoint(d.message_id for d in second)


async def test_dead_letter_lands_in_the_dead_queue_with_the_reason(
    queue: RabbitMqAdapter, rabbitmq_url: str
) -> None:
    await queue.enqueue(message("poison"))
    (delivery,) = await queue.receive(1, wait=2.0)
    await delivery.dead_letter("decode failed: bad json")
    assert await queue.receive(1, wait=0.3) == []
    dead = await asyncio.to_thread(get_dead, rabbitmq_url, queue.dead_letter_queue_name)
    assert dead is not None
    body, headers, message_id = dead
    assert (body, message_id) == (b"body-poison", "mpoison")
    assert headers["x-flowcraft-reason"] == "decode failed: bad json"
    assert headers["x-flowcraft-deliveries"] == 1


async def test_unacked_delivery_is_redelivered_after_the_consumer_closes(
    queue: RabbitMqAdapter, rabbitmq_url: str
) -> None:
    await queue.enqueue(message(1))
    (delivery,) = await queue.receive(1, wait=2.0)
    assert delivery.delivery_count == 1
    await queue.close()  # the consumer's connection goes away without settling
    with pytest.raises(TransientBackendError, match="redelivers"):
        await delivery.ack()
    other = RabbitMqAdapter(rabbitmq_url, prefix=queue.prefix)
    try:
        (again,) = await other.receive(1, wait=3.0)
        assert (again.message_id, again.body) == ("m1", b"body-1")
        assert again.delivery_count == 2
        await again.ack()
    finally:
        await other.close()


async def test_prefetch_bounds_unacked_deliveries(rabbitmq_url: str, namespace: str) -> None:
    first = RabbitMqAdapter(rabbitmq_url, prefix=namespace, prefetch=2)
    second = RabbitMqAdapter(rabbitmq_url, prefix=namespace, prefetch=2)
    try:
        for i in range(4):
            await first.enqueue(message(i))
        held = await first.receive(10, wait=2.0)
        assert len(held) == 2  # the broker sends no more until these are settled
        others = await second.receive(10, wait=2.0)
        assert len(others) == 2
        for delivery in [*held, *others]:
            await delivery.ack()
    finally:
        await first.close()
        await second.close()
        await first.delete_queues()


async def test_sticky_enqueue_reaches_its_own_consumer(rabbitmq_url: str, namespace: str) -> None:
    mine = RabbitMqAdapter(rabbitmq_url, prefix=namespace, prefetch=8)
    other = RabbitMqAdapter(rabbitmq_url, prefix=namespace, prefetch=8)
    try:
        assert mine.capabilities.sticky
        assert await mine.receive(8, wait=0.1) == []  # both consume now
        assert await other.receive(8, wait=0.1) == []
        for i in range(3):
            await mine.enqueue(message(i), sticky=True)
        assert await other.receive(8, wait=0.5) == []
        got = list(await mine.receive(8, wait=2.0))
        while len(got) < 3:
            got += await mine.receive(8, wait=2.0)
        assert sorted(d.message_id for d in got) == ["m0", "m1", "m2"]
        assert all(d.delivery_count == 1 for d in got)
        for delivery in got:
            await delivery.ack()
    finally:
        await other.close()
        await mine.close()
        await mine.delete_queues()


async def test_sticky_messages_of_a_consumer_that_went_away_reach_others(
    rabbitmq_url: str, namespace: str
) -> None:
    mine = RabbitMqAdapter(rabbitmq_url, prefix=namespace, prefetch=8, sticky_timeout=0.5)
    other = RabbitMqAdapter(rabbitmq_url, prefix=namespace, prefetch=8)
    try:
        assert await mine.receive(8, wait=0.1) == []
        assert await other.receive(8, wait=0.1) == []
        await mine.enqueue(message("held"), sticky=True)
        (held,) = await mine.receive(8, wait=2.0)  # delivered, never settled
        assert held.message_id == "mheld"
        await mine.enqueue(message("waiting"), sticky=True)
        await mine.close()  # the worker dies: one unacked, one maybe not yet delivered
        started = time.monotonic()
        got = list(await other.receive(8, wait=5.0))
        while len(got) < 2 and time.monotonic() - started < 10:
            got += await other.receive(8, wait=5.0)
        assert sorted(d.message_id for d in got) == ["mheld", "mwaiting"]
        assert time.monotonic() - started >= 0.3  # they waited out the sticky timeout
        for delivery in got:
            await delivery.ack()
    finally:
        await other.close()
        await mine.close()
        await mine.delete_queues()


async def test_sticky_is_plain_until_the_adapter_consumes(
    rabbitmq_url: str, namespace: str
) -> None:
    publisher = RabbitMqAdapter(rabbitmq_url, prefix=namespace)
    consumer = RabbitMqAdapter(rabbitmq_url, prefix=namespace)
    try:
        await publisher.enqueue(message(1), sticky=True)  # a client: nobody to stick to
        (delivery,) = await consumer.receive(1, wait=2.0)
        assert delivery.message_id == "m1"
        await delivery.ack()
        with pytest.raises(ValueError, match="sticky_timeout"):
            RabbitMqAdapter(rabbitmq_url, prefix=namespace, sticky_timeout=0)
        assert not RabbitMqAdapter(rabbitmq_url, sticky_timeout=None).capabilities.sticky
    finally:
        await consumer.close()
        await publisher.close()
        await publisher.delete_queues()


async def test_stop_receiving_hands_the_prefetched_messages_to_others(
    rabbitmq_url: str, namespace: str
) -> None:
    draining = RabbitMqAdapter(rabbitmq_url, prefix=namespace, prefetch=5, sticky_timeout=None)
    other = RabbitMqAdapter(rabbitmq_url, prefix=namespace, prefetch=5, sticky_timeout=None)
    try:
        for i in range(5):
            await draining.enqueue(message(i))
        (held,) = await draining.receive(1, wait=2.0)  # the other four wait in its buffer
        await draining.stop_receiving()
        await draining.stop_receiving()  # idempotent
        got: list[ports.Delivery] = []
        while len(got) < 4:
            more = await other.receive(5, wait=5.0)
            assert more, f"only {len(got)} of the 4 prefetched messages came back"
            got += more
        assert sorted(d.message_id for d in [held, *got]) == [f"m{i}" for i in range(5)]
        await held.ack()  # what it handed out stays settleable
        for delivery in got:
            await delivery.ack()
        assert await draining.receive(5, wait=0.3) == []
    finally:
        await other.close()
        await draining.close()
        await draining.delete_queues()
