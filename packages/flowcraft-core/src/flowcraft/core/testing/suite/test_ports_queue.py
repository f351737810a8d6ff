"""The job queue's contract (``ports.JobQueue`` / ``ports.Delivery``), on the backend's own queue.

What the worker relies on: at-least-once delivery, settlement that sticks (ack, nack with a
delay, dead-letter with a reason), ``delivery_count`` rising with each redelivery, a delivery
held past the visibility window by ``extend``, a dead consumer's deliveries coming back, delays
never early, and ``QueueCapabilities`` that say the same as the factory's declared capabilities.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import pytest
from flowcraft.core.backends import Backend
from flowcraft.core.ports import Delivery, JobQueue, Message
from flowcraft.core.testing.harness import Harness

#: The longest any single wait in these tests may take (a slow broker), seconds.
PATIENCE = 15.0


def _message(name: str) -> Message:
    return Message(id=f"m-{name}", body=f"body of {name}".encode())


async def _receive_all(queue: JobQueue, count: int, *, within: float = PATIENCE) -> list[Delivery]:
    """The next ``count`` deliveries, and no more (fails if they do not come within ``within``).

    Receives in batches of 10, so a broker whose prefetch is set by the first ``receive``
    lets a test hold several deliveries unsettled at once.
    """
    got: list[Delivery] = []
    deadline = time.monotonic() + within
    while len(got) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(got)} of {count} deliveries came within {within} s"
        got += await queue.receive(10, wait=min(left, 2.0))
    assert len(got) == count, f"{len(got)} deliveries where {count} were due: {got}"
    return got


async def _nothing(queue: JobQueue, seconds: float) -> Sequence[Delivery]:
    """What ``queue`` delivers in ``seconds`` (the caller asserts it is nothing)."""
    got: list[Delivery] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        got += await queue.receive(10, wait=left)
    return got


@pytest.fixture
async def port_backend(harness: Harness) -> AsyncIterator[Backend]:
    """A bare backend on a fresh namespace."""
    async with harness.backend() as created:
        yield created


async def _consumer(backend: Backend) -> JobQueue:
    """A queue connection of its own where the backend has them (a separate consumer)."""
    return await backend.worker_queue() if backend.worker_queue is not None else backend.queue


async def _die(backend: Backend, consumer: JobQueue) -> None:
    """The consumer dies without settling (its connection drops, if it has its own)."""
    if consumer is not backend.queue:
        await consumer.close()


async def test_capabilities_match_the_declared_ones(
    harness: Harness, port_backend: Backend
) -> None:
    declared = harness.capabilities
    capabilities = port_backend.queue.capabilities
    assert capabilities.dead_letter == ("dead_letter" in declared)
    assert capabilities.native_delay == ("delayed_delivery" in declared)
    assert (port_backend.coordination is not None) == ("coordination" in declared)
    assert capabilities.max_delay is None or capabilities.max_delay >= 1.0
    if port_backend.visibility_timeout is not None:
        assert port_backend.visibility_timeout > 0


async def test_each_message_is_delivered_with_its_body_and_a_first_count(
    port_backend: Backend,
) -> None:
    queue = port_backend.queue
    for name in "abcde":
        await queue.enqueue(_message(name))
    got = await _receive_all(queue, 5)
    assert sorted((d.message_id, d.body) for d in got) == [
        (f"m-{name}", f"body of {name}".encode()) for name in "abcde"
    ]
    assert [d.delivery_count for d in got] == [1] * 5
    for delivery in got:
        await delivery.ack()


async def test_receive_takes_at_most_max_messages_and_waits_for_one(port_backend: Backend) -> None:
    queue = port_backend.queue
    for name in "xyz":
        await queue.enqueue(_message(name))
    batch = await queue.receive(2, wait=PATIENCE)
    assert 1 <= len(batch) <= 2
    for delivery in batch:  # (a broker may hold back more while a prefetch's worth is out)
        await delivery.ack()
    for delivery in await _receive_all(queue, 3 - len(batch)):
        await delivery.ack()
    waiting = asyncio.ensure_future(queue.receive(2, wait=PATIENCE))
    await asyncio.sleep(0.1)
    await queue.enqueue(_message("late"))
    (late,) = await waiting  # a receive that was already waiting gets it
    assert late.message_id == "m-late"
    await late.ack()


async def test_settled_deliveries_stay_settled_and_an_abandoned_one_comes_back(
    port_backend: Backend,
) -> None:
    """Ack and dead-letter stick; a delivery its consumer never settles is delivered again.

    The unsettled one comes back when its consumer dies: after the visibility window (queues
    with one) or when its connection closes (AMQP). Its return is the clock: by then the
    settled ones would have come back too, had their settlement been lost.
    """
    consumer = await _consumer(port_backend)
    for name in ("acked", "dead", "abandoned"):
        await port_backend.queue.enqueue(_message(name))
    got = {d.message_id: d for d in await _receive_all(consumer, 3)}
    await got["m-acked"].ack()
    await got["m-dead"].dead_letter("poison: test")
    await _die(port_backend, consumer)
    (again,) = await _receive_all(port_backend.queue, 1)
    assert (again.message_id, again.body) == ("m-abandoned", b"body of abandoned")
    assert again.delivery_count == 2
    await again.ack()
    assert await _nothing(port_backend.queue, 0.5) == []


async def test_delivery_count_rises_with_each_redelivery(port_backend: Backend) -> None:
    queue = port_backend.queue
    await queue.enqueue(_message("again"))
    counts: list[int] = []
    for _ in range(4):
        (delivery,) = await _receive_all(queue, 1)
        counts.append(delivery.delivery_count)
        await delivery.nack(0.0)
    (last,) = await _receive_all(queue, 1)
    await last.ack()
    assert [*counts, last.delivery_count] == [1, 2, 3, 4, 5]


@pytest.mark.flowcraft_requires("dead_letter")
async def test_dead_letter_keeps_the_message_and_its_reason(port_backend: Backend) -> None:
    queue = port_backend.queue
    await queue.enqueue(_message("poison"))
    (delivery,) = await _receive_all(queue, 1)
    await delivery.dead_letter("undecodable message: test")
    deadline = time.monotonic() + PATIENCE
    while not (dead := await port_backend.dead_letters()):
        assert time.monotonic() < deadline, "the dead-lettered message never showed up"
        await asyncio.sleep(0.05)
    assert dead == [("m-poison", "undecodable message: test")]
    assert await _nothing(queue, 0.3) == []


@pytest.mark.flowcraft_requires("delayed_delivery")
async def test_a_delayed_message_is_never_early(port_backend: Backend) -> None:
    queue = port_backend.queue
    started = time.monotonic()
    await queue.enqueue(_message("later"), delay=1.0)
    await queue.enqueue(_message("now"))
    first, second = await _receive_all(queue, 2)
    arrived = time.monotonic() - started
    assert (first.message_id, second.message_id) == ("m-now", "m-later")
    assert arrived >= 1.0
    for delivery in (first, second):
        await delivery.ack()


@pytest.mark.flowcraft_requires("delayed_delivery")
async def test_a_nack_with_a_delay_is_never_early(port_backend: Backend) -> None:
    queue = port_backend.queue
    await queue.enqueue(_message("back"))
    (delivery,) = await _receive_all(queue, 1)
    started = time.monotonic()
    await delivery.nack(1.0)
    await queue.enqueue(_message("meanwhile"))
    first, second = await _receive_all(queue, 2)
    assert (first.message_id, second.message_id) == ("m-meanwhile", "m-back")
    assert time.monotonic() - started >= 1.0
    assert second.delivery_count == 2
    for each in (first, second):
        await each.ack()


@pytest.mark.flowcraft_requires("delayed_delivery")
async def test_the_longest_declared_delay_is_accepted_and_not_early(port_backend: Backend) -> None:
    queue = port_backend.queue
    longest = queue.capabilities.max_delay or 3600.0
    await queue.enqueue(_message("far"), delay=longest)
    await queue.enqueue(_message("near"))
    (near,) = await _receive_all(queue, 1)
    assert near.message_id == "m-near"
    await near.ack()
    assert await _nothing(queue, 0.5) == []


async def test_extend_holds_a_delivery_past_the_visibility_window(port_backend: Backend) -> None:
    """A consumer that keeps extending keeps its delivery; nobody else gets it meanwhile."""
    window = port_backend.visibility_timeout or 1.0
    consumer = await _consumer(port_backend)
    await port_backend.queue.enqueue(_message("long"))
    (held,) = await _receive_all(consumer, 1)
    others: list[Delivery] = []
    deadline = time.monotonic() + 2.2 * window
    while time.monotonic() < deadline:
        await held.extend(window)
        others += await port_backend.queue.receive(1, wait=window / 3)
    assert others == [], "an extended delivery was delivered to someone else"
    await held.ack()
    if consumer is not port_backend.queue:
        await consumer.close()


async def test_duplicates_are_delivered_unless_the_queue_dedupes(port_backend: Backend) -> None:
    queue = port_backend.queue
    await queue.enqueue(_message("twice"))
    await queue.enqueue(_message("twice"))
    expected = 1 if queue.capabilities.dedup else 2
    got = await _receive_all(queue, expected)
    for delivery in got:
        await delivery.ack()
    assert [d.message_id for d in got] == ["m-twice"] * expected
    assert await _nothing(queue, 0.3) == []
