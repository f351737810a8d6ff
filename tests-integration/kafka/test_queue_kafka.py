"""KafkaAdapter beyond the port contract: what crosses processes, and delays over many hops.

Two adapters on one group stand for two worker processes (each has its own consumer): the
counts of unsettled deliveries and the settled offsets above the committed one travel in the
commit metadata from one to the other; a delay longer than a tier's hold is forwarded through
several delay topics and is still never early.
"""

from __future__ import annotations

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
    name = f"q{uuid.uuid4().hex[:10]}"
    probe = KafkaAdapter(config=config, topic_name=name)
    await ensure_topics(config, probe.names, partitions=1)
    await probe.close()
    yield config, name
    await delete_topics(config, probe.names)


def _adapter(config: dict[str, str], name: str) -> KafkaAdapter:
    return KafkaAdapter(config=config, topic_name=name, group_id=f"{name}-workers")


async def _take(queue: KafkaAdapter, count: int, within: float = 30.0) -> list[KafkaDelivery]:
    got: list[KafkaDelivery] = []
    deadline = time.monotonic() + within
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} of {count} came"
        got += await queue.receive(10, wait=1.0)
    return got


async def test_counts_and_settled_offsets_cross_to_the_next_member(
    topic: tuple[dict[str, str], str],
) -> None:
    config, name = topic
    first = _adapter(config, name)
    for i in range(4):
        await first.enqueue(Message(id=f"m{i}", body=b"x"))
    got = {d.message_id: d for d in await _take(first, 4)}
    await got["m1"].ack()
    await got["m3"].ack()
    await first.close()  # leaves the group: m0 and m2 unsettled, m1 and m3 settled above m0
    second = _adapter(config, name)
    try:
        again = await _take(second, 2)
        assert sorted((d.message_id, d.delivery_count) for d in again) == [("m0", 2), ("m2", 2)]
        for delivery in again:
            await delivery.ack()
        assert await second.receive(10, wait=1.0) == []
    finally:
        await second.close()


async def test_a_delay_over_several_tiers_is_never_early(topic: tuple[dict[str, str], str]) -> None:
    config, name = topic
    queue = _adapter(config, name)
    try:
        started = time.monotonic()
        await queue.enqueue(Message(id="later", body=b"x"), delay=6.5)  # 5 s, then 1 s, then 0.5 s
        (delivery,) = await _take(queue, 1)
        waited = time.monotonic() - started
        assert 6.5 <= waited < 9.0, waited
        await delivery.ack()
    finally:
        await queue.close()
