"""Sticky delivery on Kafka: to this process's partitions, for the queue object that sent it.

Two adapters on one group stand for two worker processes; ``consumer()`` views of one adapter
for two workers of one process. A sticky message stays an ordinary message of the jobs topic:
a process that leaves with it unsettled hands it to the next owner (at-least-once).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from flowcraft.core.ports import Message
from flowcraft.kafka import KafkaAdapter
from flowcraft.kafka._delivery import KafkaDelivery
from flowcraft.kafka._topics import delete_topics, ensure_topics


@pytest.fixture
async def topic(kafka_bootstrap: str) -> AsyncIterator[tuple[dict[str, str], str]]:
    config = {"bootstrap.servers": kafka_bootstrap}
    name = f"s{uuid.uuid4().hex[:10]}"
    probe = KafkaAdapter(config=config, topic_name=name)
    await ensure_topics(config, probe.names, partitions=4)
    await probe.close()
    yield config, name
    await delete_topics(config, probe.names)


def _adapter(
    config: dict[str, str], name: str, sticky_timeout: float | None = 2.0, sticky_limit: int = 512
) -> KafkaAdapter:
    return KafkaAdapter(config=config, topic_name=name, group_id=f"{name}-workers",
                        sticky_timeout=sticky_timeout, sticky_limit=sticky_limit)  # fmt: skip


def _owned(queue: KafkaAdapter) -> list[int]:
    return queue._connection.hub.owned()


async def _until_assigned(*queues: KafkaAdapter, partitions: int = 4) -> None:
    deadline = time.monotonic() + 60
    while sum(len(_owned(q)) for q in queues) != partitions or not all(map(_owned, queues)):
        assert time.monotonic() < deadline, [_owned(q) for q in queues]
        for queue in queues:
            assert await queue.receive(10, wait=0.2) == []


async def _drain(queue: KafkaAdapter, seconds: float) -> list[KafkaDelivery]:
    got: list[KafkaDelivery] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got += await queue.receive(10, wait=0.2)
    return got


async def test_sticky_messages_stay_in_the_process_and_move_when_it_leaves(
    topic: tuple[dict[str, str], str],
) -> None:
    config, name = topic
    first, other = _adapter(config, name), _adapter(config, name)
    try:
        await _until_assigned(first, other)
        ids = [f"m{i}" for i in range(12)]
        for message_id in ids:
            await first.enqueue(Message(id=message_id, body=b"x"), sticky=True)
        mine, theirs = await asyncio.gather(_drain(first, 3.0), _drain(other, 3.0))
        assert theirs == []
        assert sorted(d.message_id for d in mine) == sorted(ids)
        assert {d.fetched.partition for d in mine} <= set(_owned(first))
        await first.close()  # leaves the group with all of them unsettled
        again = await _drain(other, 15.0)
        assert sorted((d.message_id, d.delivery_count) for d in again) == [
            (i, 2) for i in sorted(ids)
        ]
        for delivery in again:
            await delivery.ack()
    finally:
        await first.close()
        await other.close()


async def test_beyond_the_sticky_limit_messages_go_by_key_to_any_process(
    topic: tuple[dict[str, str], str],
) -> None:
    config, name = topic
    first, other = _adapter(config, name, sticky_limit=3), _adapter(config, name)
    try:
        await _until_assigned(first, other)
        ids = [f"m{i}" for i in range(43)]  # 3 routed here; 40 keys cover the 4 partitions
        for message_id in ids:
            await first.enqueue(Message(id=message_id, body=b"x"), sticky=True)
        mine, theirs = await asyncio.gather(_drain(first, 3.0), _drain(other, 3.0))
        assert sorted(d.message_id for d in [*mine, *theirs]) == sorted(ids)
        assert {"m0", "m1", "m2"} <= {d.message_id for d in mine}
        assert theirs, "every message stayed with the process that sent it"
        assert {d.fetched.partition for d in theirs} <= set(_owned(other))
        for delivery in [*mine, *theirs]:
            await delivery.ack()
    finally:
        await first.close()
        await other.close()


async def test_a_sticky_message_waits_for_its_worker_then_anyone_takes_it(
    topic: tuple[dict[str, str], str],
) -> None:
    config, name = topic
    adapter = _adapter(config, name, sticky_timeout=1.0)
    sender, neighbour = adapter.consumer(), adapter.consumer()
    try:
        await _until_assigned(sender)
        await sender.enqueue(Message(id="ahead", body=b"x"), sticky=True)
        await sender.enqueue(Message(id="plain", body=b"x"))
        early = await _drain(neighbour, 0.6)  # the sender does not receive meanwhile
        assert [d.message_id for d in early] == ["plain"]
        late = await _drain(neighbour, 1.5)  # its preference ran out
        assert [d.message_id for d in late] == ["ahead"]
        await sender.enqueue(Message(id="back", body=b"x"), sticky=True)
        (mine,) = await _drain(sender, 1.0)
        assert mine.message_id == "back"
        await mine.ack()
        await sender.enqueue(Message(id="left", body=b"x"), sticky=True)
        await sender.close()  # no longer receiving: the neighbour takes it at once
        (taken,) = await _drain(neighbour, 0.6)
        assert taken.message_id == "left"
        for delivery in [*early, *late, taken]:
            await delivery.ack()
    finally:
        await neighbour.close()
        await adapter.close()


async def test_sticky_enqueues_can_be_turned_off(topic: tuple[dict[str, str], str]) -> None:
    config, name = topic
    off, on = _adapter(config, name, sticky_timeout=None), _adapter(config, name)
    try:
        assert off.capabilities.sticky is False
        assert on.capabilities.sticky is True
        await _until_assigned(off)
        await off.enqueue(Message(id="m", body=b"x"), sticky=True)  # by key, for anyone
        (delivery,) = await _drain(off, 2.0)
        await delivery.ack()
    finally:
        await off.close()
        await on.close()
