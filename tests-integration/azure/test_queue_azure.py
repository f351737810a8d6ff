"""AzureQueueAdapter behaviour beyond the port contract, on Azurite."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from flowcraft.azure import AzureQueueAdapter, _queue
from flowcraft.azure._clients import queue_client
from flowcraft.azure._schema import Names, ensure_queues
from flowcraft.core import ports

pytestmark = pytest.mark.service("azurite")


@pytest.fixture
async def adapter(azure_queue_connection_string: str) -> AsyncIterator[AzureQueueAdapter]:
    names = Names.of(f"t{uuid.uuid4().hex[:10]}")
    jobs = queue_client(names.jobs, connection_string=azure_queue_connection_string)
    poison = queue_client(names.poison, connection_string=azure_queue_connection_string)
    await ensure_queues(jobs, poison)
    queue = AzureQueueAdapter(queue_client=jobs, poison_queue_client=poison,
                              visibility_timeout=30, max_poll_interval=0.1)  # fmt: skip
    try:
        yield queue
    finally:
        await queue.close()
        for client in (jobs, poison):
            await client.delete_queue()
            await client.close()


async def test_dead_letters_are_read_to_the_end_and_left_in_place(
    adapter: AzureQueueAdapter,
) -> None:
    """More than the 32 messages one peek or receive returns: every one, twice."""
    count = 45
    await asyncio.gather(*(adapter.enqueue(ports.Message(id=f"m{i}", body=b"x"))
                           for i in range(count)))  # fmt: skip
    got: list[ports.Delivery] = []
    while len(got) < count:
        got += await adapter.receive(32, 1.0)
    await asyncio.gather(*(d.dead_letter(f"reason {d.message_id}") for d in got))
    expected = {(f"m{i}", f"reason m{i}") for i in range(count)}
    first = await adapter.dead_letters()
    assert sorted(first) == sorted(expected)
    assert len(first) == count
    assert sorted(await adapter.dead_letters()) == sorted(expected)  # still there


async def test_an_idle_receiver_backs_off_across_calls(adapter: AzureQueueAdapter) -> None:
    """Short waits in a loop do not poll faster than the backoff; an enqueue wakes it."""
    calls = 0
    original = adapter.queue_client.receive_messages

    def counting(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    adapter.queue_client.receive_messages = counting
    try:
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.0
        while loop.time() < until:
            assert await adapter.receive(1, 0.01) == []
        assert calls <= 15, f"{calls} polls in 1 s with a 0.1 s ceiling"
        await adapter.enqueue(ports.Message(id="wake", body=b"w"))
        started = loop.time()
        (delivery,) = await adapter.receive(1, 2.0)
        assert loop.time() - started < 0.5
        await delivery.ack()
    finally:
        del adapter.queue_client.receive_messages


class ReceiveCounter:
    """Counts the receive requests of the adapter's jobs queue client."""

    def __init__(self, adapter: AzureQueueAdapter) -> None:
        self.calls = 0
        self._adapter = adapter
        self._original = adapter.queue_client.receive_messages
        adapter.queue_client.receive_messages = self._receive

    def _receive(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        return self._original(*args, **kwargs)

    def remove(self) -> None:
        del self._adapter.queue_client.receive_messages


async def test_a_fan_out_sent_together_is_received_in_one_request(
    adapter: AzureQueueAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiting receive is woken when the last of the enqueues in flight returns.

    Two timings are kept out of the way, so a loaded machine cannot split the receive: the
    enqueues start between two backoff polls (at 0.3 s and 0.62 s after an idle poll: 20 ms
    doubling), and the gathering window that bounds how long a first returned enqueue holds
    the poll for the others is widened from 10 ms (what is tested is that the last one to
    return starts it).
    """
    monkeypatch.setattr(_queue, "_GATHER", 0.2)
    assert await adapter.receive(16, 0.0) == []  # idle: the receive below waits
    receiving = asyncio.ensure_future(adapter.receive(16, 5.0))
    await asyncio.sleep(0.4)  # past the first pauses (the 4th poll at 0.3 s), before the 5th
    counter = ReceiveCounter(adapter)
    try:
        await asyncio.gather(*(adapter.enqueue(ports.Message(id=f"f{i}", body=b"x"))
                               for i in range(8)))  # fmt: skip
        got = await receiving
        assert sorted(d.message_id for d in got) == [f"f{i}" for i in range(8)]
        assert counter.calls == 1
    finally:
        counter.remove()
    await asyncio.gather(*(d.ack() for d in got))


async def test_a_page_not_filled_pauses_the_next_poll(adapter: AzureQueueAdapter) -> None:
    """Fewer messages than asked: the queue had no more, so the next call does not poll
    at once (a full page does)."""
    await adapter.enqueue(ports.Message(id="one", body=b"x"))
    (first,) = await adapter.receive(4, 2.0)
    counter = ReceiveCounter(adapter)
    try:
        assert await adapter.receive(4, 0.005) == []
        assert counter.calls == 0
        await asyncio.gather(*(adapter.enqueue(ports.Message(id=f"p{i}", body=b"x"))
                               for i in range(3)))  # fmt: skip
        await asyncio.sleep(0.05)
        full = await adapter.receive(2, 2.0)
        polls = counter.calls
        more = await adapter.receive(2, 0.005)  # the page was full: polled at once
        assert counter.calls == polls + 1
    finally:
        counter.remove()
    await asyncio.gather(*(d.ack() for d in (first, *full, *more)))
