"""Run-ahead on SQS (``SqsAdapter`` with ``sticky_delay``), end to end with in-process workers.

A worker that decides a run's next attempts runs them at once; their messages reach its own
next receive at once and the jobs queue as copies delayed by ``sticky_delay``. These tests
show the two ends of that: a killed runner's attempt is recovered through the delayed copy,
and a finished attempt's copy is dropped (or, at another worker, found done) without a second
execution and without leaving a message behind.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from flowcraft.core._engine.state import RunStatus
from flowcraft.core.backends import Backend
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.nodes import LOG
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.core.testing.suite._poll import eventually
from flowcraft.sqs import SqsBackend

#: Seconds: the queues' visibility timeout and the sticky copies' delay.
VISIBILITY, STICKY = 2, 2


@pytest.fixture
def harness(aws_endpoint_url: str) -> Harness:
    """Workers on fresh namespaces with short visibility and sticky delays."""
    factory = SqsBackend(
        endpoint_url=aws_endpoint_url, visibility_timeout=VISIBILITY, sticky_delay=STICKY
    )
    return Harness(factory)


async def _left(backend: Backend) -> int:
    """Messages in the jobs and dead-letter queues (visible, in flight or delayed)."""
    aws = backend.extra["aws"]
    total = 0
    for url in backend.extra["queues"]:
        answer = await aws.sqs("get_queue_attributes", QueueUrl=url, AttributeNames=["All"])
        attributes = answer["Attributes"]
        total += sum(
            int(attributes[name])
            for name in (
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            )
        )
    return total


async def _nothing_left(backend: Backend, within: float) -> None:
    deadline = time.monotonic() + within
    while (left := await _left(backend)) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert left == 0, f"{left} messages left in the queues"


async def test_a_killed_runners_attempt_is_recovered_through_the_delayed_copy(
    harness: Harness,
) -> None:
    blueprint = bp(
        "ahead-crash",
        [n("A", "const", value=1), n("B", "sleep", seconds=1.5), n("C", "inc", inputs="A")],
        [e("A", "B"), e("B", "C")],
    )
    async with harness.session(blueprint, workers=0, lease=1.0) as s:
        (victim,) = await s.start_workers(1)
        assert victim.queue.capabilities.sticky
        handle = await s.start("ahead-crash")
        await eventually(lambda: "B" in LOG[handle.run_id], "B started")
        started = time.monotonic()  # B runs ahead in the victim: its copy waits 2 s
        await asyncio.sleep(0.3)
        await s.crash_worker(victim)
        await s.start_workers(1)
        await eventually(lambda: LOG[handle.run_id].count("B") == 2, "B again", timeout=15)
        again = time.monotonic() - started
        result = await handle.result(timeout=20)
        await _nothing_left(s.backend, within=10)
    assert result.status is RunStatus.COMPLETED
    assert result.output == 2
    assert again >= STICKY - 0.5  # not before the copy surfaced
    assert LOG[handle.run_id].count("A") == 1
    assert LOG[handle.run_id].count("C") == 1


@pytest.mark.parametrize("workers", [1, 2])
async def test_the_copies_of_finished_attempts_run_nothing_twice_and_leave_nothing(
    harness: Harness, workers: int
) -> None:
    blueprint = bp(
        "ahead-chain",
        [
            n("A", "const", value=1),
            n("B", "inc", inputs="A"),
            n("C", "inc", inputs="B"),
            n("D", "inc", inputs="C"),
        ],
        [e("A", "B"), e("B", "C"), e("C", "D")],
    )
    async with harness.session(blueprint, workers=workers) as s:
        handles = [await s.start("ahead-chain") for _ in range(3)]
        results = [await h.result(timeout=20) for h in handles]
        await asyncio.sleep(STICKY + 0.5)  # every copy has surfaced
        await _nothing_left(s.backend, within=10)
    for handle, result in zip(handles, results, strict=True):
        assert result.status is RunStatus.COMPLETED
        assert result.output == 4
        assert sorted(LOG[handle.run_id]) == ["A", "B", "C", "D"]  # each ran once
