"""Run-ahead on Azure Queue Storage (``AzureQueueAdapter`` with ``sticky_delay``), on Azurite.

A sticky enqueue reaches the adapter's own next receive at once and the jobs queue as a copy
invisible for ``sticky_delay``. The adapter-level tests show each fate of a copy (deleted at
the local ack, joined while the local delivery runs, recovered by another consumer when the
first one died); the end-to-end ones, with in-process workers, show a killed runner's attempt
recovered through its copy and finished attempts run once, leaving no message behind. The
scenarios SQS shares are ``flowcraft.core.testing.sticky``'s; what only Azure can say (the
requests, what the queues hold) is asserted here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from flowcraft.azure import AzureBackend, AzureQueueAdapter
from flowcraft.azure._clients import queue_client
from flowcraft.azure._schema import Names, ensure_queues
from flowcraft.core.backends import Backend
from flowcraft.core.ports import Message
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.sticky import (
    check_dead_consumers_copies,
    check_finished_attempts_run_once,
    check_killed_runner_recovered,
    check_nacked_local_delivery,
    check_sticky_is_plain,
)

pytestmark = pytest.mark.service("azurite")

#: Seconds: the queues' visibility timeout and the sticky copies' delay (end to end).
VISIBILITY, STICKY = 2, 2


class Space:
    """Fresh jobs and poison queues; adapters on them; the jobs client's requests counted."""

    def __init__(self, jobs: Any, poison: Any) -> None:
        self.jobs, self.poison = jobs, poison
        self.adapters: list[AzureQueueAdapter] = []
        self.calls: dict[str, int] = {"receive_messages": 0, "delete_message": 0}
        for name in self.calls:
            self._count(name)

    def _count(self, name: str) -> None:
        original = getattr(self.jobs, name)

        def counting(*args: object, **kwargs: object) -> object:
            self.calls[name] += 1
            return original(*args, **kwargs)

        setattr(self.jobs, name, counting)

    def adapter(self, **options: Any) -> AzureQueueAdapter:
        queue = AzureQueueAdapter(queue_client=self.jobs, poison_queue_client=self.poison,
                                  visibility_timeout=30, max_poll_interval=0.1,
                                  **options)  # fmt: skip
        self.adapters.append(queue)
        return queue

    async def left(self) -> int:
        """Messages in the jobs queue (visible or not)."""
        properties = await self.jobs.get_queue_properties()
        return int(properties.approximate_message_count)


@pytest.fixture
async def space(azure_queue_connection_string: str) -> AsyncIterator[Space]:
    names = Names.of(f"t{uuid.uuid4().hex[:10]}")
    jobs = queue_client(names.jobs, connection_string=azure_queue_connection_string)
    poison = queue_client(names.poison, connection_string=azure_queue_connection_string)
    await ensure_queues(jobs, poison)
    made = Space(jobs, poison)
    try:
        yield made
    finally:
        for queue in made.adapters:
            await queue.close()
        for client in (jobs, poison):
            await client.delete_queue()
            await client.close()


async def test_a_sticky_enqueue_wakes_its_own_receive_and_its_copy_is_deleted_at_the_ack(
    space: Space,
) -> None:
    mine, other = space.adapter(sticky_delay=1), space.adapter(sticky_delay=1)
    assert mine.capabilities.sticky
    assert await mine.receive(10, wait=0) == []  # a consumer now
    waiting = asyncio.ensure_future(mine.receive(10, wait=5))
    await asyncio.sleep(0.3)  # between polls
    receives = space.calls["receive_messages"]
    started = time.monotonic()
    await mine.enqueue(Message(id="s", body=b"next step"), sticky=True)
    (local,) = await waiting
    assert time.monotonic() - started < 0.5  # not after the delay
    assert space.calls["receive_messages"] - receives <= 1  # no round trip for it
    assert (local.message_id, local.body, local.delivery_count) == ("s", b"next step", 1)
    assert await space.left() == 1  # the copy, invisible
    deletes = space.calls["delete_message"]
    await local.ack()
    assert space.calls["delete_message"] == deletes + 1  # the copy, by its send's receipt
    assert await space.left() == 0
    assert await other.receive(10, wait=1.5) == []  # never delivered
    assert await mine.receive(10, wait=0.2) == []


async def test_the_copy_of_a_finished_local_delivery_that_comes_back_is_deleted_unseen(
    space: Space,
) -> None:
    mine = space.adapter(sticky_delay=1)
    await mine.receive(1, wait=0)
    await mine.enqueue(Message(id="done", body=b"d"), sticky=True)
    (local,) = await mine.receive(1, wait=0)
    original = space.jobs.delete_message

    async def refused_once(*args: object, **kwargs: object) -> object:
        space.jobs.delete_message = original  # the delete at the ack fails: the copy stays
        raise ConnectionError("cut")

    space.jobs.delete_message = refused_once
    await local.ack()  # acked all the same (the copy is dropped when it comes back)
    assert await space.left() == 1
    assert await mine.receive(10, wait=2.0) == []  # the copy came back: deleted unseen
    await asyncio.sleep(0.2)
    assert await space.left() == 0


async def test_the_copy_of_a_dead_consumers_sticky_message_reaches_another_after_the_delay(
    space: Space,
) -> None:
    await check_dead_consumers_copies(space.adapter)
    assert await space.left() == 0


async def test_a_copy_that_comes_back_while_its_local_delivery_runs_joins_it(
    space: Space,
) -> None:
    mine, other = space.adapter(sticky_delay=1), space.adapter(sticky_delay=1)
    await mine.receive(1, wait=0)
    await mine.enqueue(Message(id="long", body=b"l"), sticky=True)
    (local,) = await mine.receive(1, wait=0)
    assert await mine.receive(10, wait=2.0) == []  # the copy came: held, not delivered
    await local.extend(5)  # extends the held copy too (with its new pop receipt)
    assert await other.receive(10, wait=2.5) == []
    await local.ack()  # deletes the held copy
    assert await space.left() == 0


async def test_a_nacked_local_delivery_comes_back_here_counted(space: Space) -> None:
    await check_nacked_local_delivery(space.adapter)
    assert await space.left() == 0


async def test_a_local_delivery_dead_lettered_goes_to_the_poison_queue_once(
    space: Space,
) -> None:
    mine = space.adapter(sticky_delay=1)
    await mine.receive(1, wait=0)
    await mine.enqueue(Message(id="bad", body=b"b"), sticky=True)
    (local,) = await mine.receive(1, wait=0)
    await local.dead_letter("no such node")
    assert await mine.dead_letters() == [("bad", "no such node")]
    assert await space.left() == 0  # its copy went with it
    assert await mine.receive(10, wait=1.5) == []


async def test_sticky_is_plain_for_a_client_a_stopped_consumer_and_when_off(
    space: Space,
) -> None:
    await check_sticky_is_plain(space.adapter)


def test_the_backend_option_sticky_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    def backend(**options: Any) -> AzureBackend:
        return AzureBackend(queue_connection_string="x", cosmos_url="https://x", **options)

    monkeypatch.delenv("FLOWCRAFT_AZURE_STICKY_DELAY", raising=False)
    assert backend().sticky_delay == 30
    assert backend(visibility_timeout=2).sticky_delay == 2
    assert backend(sticky_delay="12.5").sticky_delay == 13
    assert backend(sticky_delay="none").sticky_delay is None
    for bad in ("0", "51", "soon"):
        with pytest.raises(ValueError, match="option sticky_delay"):
            backend(sticky_delay=bad)
    monkeypatch.setenv("FLOWCRAFT_AZURE_STICKY_DELAY", "7")
    assert backend().sticky_delay == 7
    assert backend(sticky_delay="3").sticky_delay == 3


# ------------------------------------------------------------------ end to end


@pytest.fixture
def harness(
    azure_queue_connection_string: str, cosmos_endpoint: dict[str, str], redis_url: str
) -> Harness:
    """Workers on fresh namespaces with short visibility and sticky delays."""
    factory = AzureBackend(
        queue_connection_string=azure_queue_connection_string,
        cosmos_url=cosmos_endpoint["url"], cosmos_key=cosmos_endpoint["key"],
        cosmos_ca_file=cosmos_endpoint["ca_file"], redis_url=redis_url,
        visibility_timeout=VISIBILITY, max_poll_interval=0.25, sticky_delay=STICKY,
    )  # fmt: skip
    return Harness(factory)


async def _left(backend: Backend) -> int:
    """Messages in the jobs and poison queues (visible or not)."""
    jobs, poison, _ = backend.extra["clients"]
    total = 0
    for client in (jobs, poison):
        total += int((await client.get_queue_properties()).approximate_message_count)
    return total


async def test_a_killed_runners_attempt_is_recovered_through_its_copy(harness: Harness) -> None:
    await check_killed_runner_recovered(harness, sticky_delay=STICKY, left=_left)


@pytest.mark.parametrize("workers", [1, 2])
async def test_finished_attempts_run_once_and_their_copies_leave_nothing(
    harness: Harness, workers: int
) -> None:
    await check_finished_attempts_run_once(
        harness, workers=workers, sticky_delay=STICKY, left=_left
    )
