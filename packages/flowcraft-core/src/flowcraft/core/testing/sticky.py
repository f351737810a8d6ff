"""Run-ahead (capability ``sticky``) checks an adapter's tests share, on its real servers.

For queues without consumer affinity that run ahead with ``flowcraft.core.sticky`` (a local
delivery plus a durable copy invisible for ``sticky_delay``). Each check is a whole scenario
with every assertion; the adapter's test calls it with what only the adapter knows, then
asserts what only its servers can say (request counts, what a queue holds):

* ``adapter``: a :class:`MakeQueue`, a fresh ``JobQueue`` on the test's queues per call, given
  ``sticky_delay`` (closed by the adapter's own fixture).
* ``left``: a :data:`Left`, the messages still in a backend's queues (visible, invisible or
  delayed; dead letters included).

Adapter level:

* :func:`check_dead_consumers_copies`: a consumer that closes with a local delivery out and
  one not taken loses neither: both copies reach another consumer after the sticky delay.
* :func:`check_nacked_local_delivery`: a nacked local delivery comes back to the same
  adapter after its delay, its ``delivery_count`` 2.
* :func:`check_sticky_is_plain`: a sticky enqueue is a plain one from an adapter that does
  not receive or stopped receiving, no ``sticky`` capability without a ``sticky_delay``, and
  bad delays are refused.

End to end, through a :class:`~flowcraft.core.testing.harness.Harness` of the backend with
in-process workers (a visibility timeout and a ``sticky_delay`` of a few seconds):

* :func:`check_killed_runner_recovered`: a worker killed while running an attempt ahead; the
  attempt runs again (through its copy, not before ``sticky_delay``), the run completes, the
  other nodes ran once and nothing is left in the queues.
* :func:`check_finished_attempts_run_once`: three runs of a four-step chain on ``workers``
  workers; each node runs once and, once every copy has surfaced, nothing is left.

Example (an adapter's test module)::

    async def test_a_killed_runners_attempt_is_recovered(harness: Harness) -> None:
        await check_killed_runner_recovered(harness, sticky_delay=STICKY, left=_left)

Nothing here imports pytest; failures are ``AssertionError`` with what differed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from flowcraft.core._distributed.sender import COPY_AFTER
from flowcraft.core._engine.state import RunStatus
from flowcraft.core.backends import Backend
from flowcraft.core.ports import Delivery, JobQueue, Message
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.nodes import LOG
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.core.testing.suite._poll import eventually

__all__ = [
    "Left",
    "MakeQueue",
    "check_dead_consumers_copies",
    "check_finished_attempts_run_once",
    "check_killed_runner_recovered",
    "check_nacked_local_delivery",
    "check_sticky_is_plain",
    "nothing_left",
    "receive_all",
]

#: Messages still in a backend's queues (visible, invisible or delayed; dead letters too).
Left = Callable[[Backend], Awaitable[int]]


class MakeQueue(Protocol):
    """A fresh adapter on the test's queues (its fixture closes it)."""

    def __call__(self, *, sticky_delay: object) -> JobQueue:
        """The adapter with this ``sticky_delay`` (a bad one raises ``ValueError``)."""
        ...


async def receive_all(queue: JobQueue, count: int, within: float) -> list[Delivery]:
    """What ``queue`` delivers until ``count`` came or ``within`` seconds passed."""
    got: list[Delivery] = []
    deadline = time.monotonic() + within
    while len(got) < count and time.monotonic() < deadline:
        got += await queue.receive(10, wait=0.5)
    return got


async def nothing_left(backend: Backend, left: Left, within: float) -> None:
    """Return once ``backend``'s queues are empty; ``AssertionError`` after ``within`` s."""
    deadline = time.monotonic() + within
    while (count := await left(backend)) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert count == 0, f"{count} messages left in the queues"


# ------------------------------------------------------------------ adapter level


async def check_dead_consumers_copies(adapter: MakeQueue) -> None:
    """A consumer closed with a local delivery out and one not taken: both reach another."""
    mine, other = adapter(sticky_delay=2), adapter(sticky_delay=2)
    await mine.receive(1, wait=0)
    sent = time.monotonic()
    await mine.enqueue(Message(id="held", body=b"h"), sticky=True)
    await mine.enqueue(Message(id="waiting", body=b"w"), sticky=True)
    (held,) = await mine.receive(1, wait=0)
    assert held.message_id == "held"
    await mine.close()  # dies with one local delivery out, one not taken
    got = await receive_all(other, 2, within=10)
    assert time.monotonic() - sent >= 1.9  # they waited out the sticky delay
    assert sorted((d.message_id, d.body, d.delivery_count) for d in got) == [
        ("held", b"h", 1),
        ("waiting", b"w", 1),
    ]
    for delivery in got:
        await delivery.ack()


async def check_nacked_local_delivery(adapter: MakeQueue) -> None:
    """A nacked local delivery comes back to the same adapter after its delay, counted."""
    mine = adapter(sticky_delay=5)
    await mine.receive(1, wait=0)
    await mine.enqueue(Message(id="again", body=b"a"), sticky=True)
    (first,) = await mine.receive(1, wait=0)
    await first.nack(0.3)
    started = time.monotonic()
    (second,) = await mine.receive(1, wait=2)
    assert time.monotonic() - started >= 0.25
    assert (second.message_id, second.delivery_count) == ("again", 2)
    await second.ack()


async def check_sticky_is_plain(adapter: MakeQueue) -> None:
    """Plain for a client and a stopped consumer, off without a delay, bad delays refused."""
    client, consumer = adapter(sticky_delay=30), adapter(sticky_delay=30)
    await client.enqueue(Message(id="from-client", body=b"c"), sticky=True)  # never received
    (plain,) = await receive_all(consumer, 1, within=3)
    assert plain.message_id == "from-client"
    await plain.ack()
    await consumer.stop_receiving()
    await consumer.enqueue(Message(id="while-draining", body=b"d"), sticky=True)
    (drained,) = await receive_all(client, 1, within=3)
    assert drained.message_id == "while-draining"
    await drained.ack()
    assert not adapter(sticky_delay=None).capabilities.sticky
    for bad in (0, 51, math.nan, "5"):
        refusal = _refusal(adapter, bad)
        assert "sticky_delay" in refusal, f"sticky_delay={bad!r}: {refusal or 'accepted'}"


def _refusal(adapter: MakeQueue, sticky_delay: object) -> str:
    """The ``ValueError`` making an adapter with ``sticky_delay`` raises ("": none)."""
    try:
        adapter(sticky_delay=sticky_delay)
    except ValueError as exc:
        return str(exc)
    return ""


# ------------------------------------------------------------------ end to end


async def check_killed_runner_recovered(
    harness: Harness, *, sticky_delay: float, left: Left
) -> None:
    """A runner killed mid-attempt run ahead: the attempt comes back through its copy.

    (The runner holds B's message back ``COPY_AFTER`` seconds; the kill comes after it.)
    """
    blueprint = bp(
        "ahead-crash",
        [
            n("A", "const", value=1),
            n("B", "sleep", seconds=COPY_AFTER + 1.5),
            n("C", "inc", inputs="A"),
        ],
        [e("A", "B"), e("B", "C")],
    )
    async with harness.session(blueprint, workers=0, lease=1.0) as s:
        (victim,) = await s.start_workers(1)
        assert victim.queue.capabilities.sticky
        handle = await s.start("ahead-crash")
        await eventually(lambda: "B" in LOG[handle.run_id], "B started")
        started = time.monotonic()  # B runs ahead in the victim: its copy waits sticky_delay
        await asyncio.sleep(COPY_AFTER + 0.3)
        await s.crash_worker(victim)
        await s.start_workers(1)
        await eventually(lambda: LOG[handle.run_id].count("B") == 2, "B again", timeout=15)
        again = time.monotonic() - started
        result = await handle.result(timeout=20)
        await nothing_left(s.backend, left, within=10)
    assert result.status is RunStatus.COMPLETED
    assert result.output == 2
    assert again >= sticky_delay - 0.5  # not before the copy surfaced
    assert LOG[handle.run_id].count("A") == 1
    assert LOG[handle.run_id].count("C") == 1


async def check_finished_attempts_run_once(
    harness: Harness, *, workers: int, sticky_delay: float, left: Left
) -> None:
    """Runs ahead on ``workers`` workers: each node once, and no copy left behind.

    B outlasts ``COPY_AFTER``, so its message is sent (and must be settled); the others are
    done before theirs would be.
    """
    blueprint = bp(
        "ahead-chain",
        [
            n("A", "const", value=1),
            n("B", "sleep", seconds=COPY_AFTER + 0.3),
            n("C", "inc", inputs="B"),
            n("D", "inc", inputs="C"),
        ],
        [e("A", "B"), e("B", "C"), e("C", "D")],
    )
    async with harness.session(blueprint, workers=workers) as s:
        handles = [await s.start("ahead-chain") for _ in range(3)]
        results = [await h.result(timeout=20) for h in handles]
        await asyncio.sleep(sticky_delay + 0.5)  # every copy not deleted has surfaced
        await nothing_left(s.backend, left, within=10)
    for handle, result in zip(handles, results, strict=True):
        assert result.status is RunStatus.COMPLETED
        assert result.output == 3
        assert sorted(LOG[handle.run_id]) == ["A", "B", "C", "D"]  # each ran once
