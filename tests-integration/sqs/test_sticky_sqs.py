"""Run-ahead on SQS (``SqsAdapter`` with ``sticky_delay``), end to end with in-process workers.

A worker that decides a run's next attempts runs them at once; their messages reach its own
next receive at once and the jobs queue as copies delayed by ``sticky_delay``. These tests
show the two ends of that: a killed runner's attempt is recovered through the delayed copy,
and a finished attempt's copy is dropped (or, at another worker, found done) without a second
execution and without leaving a message behind. The scenarios are
``flowcraft.core.testing.sticky``'s (Azure runs them too); ``_left`` is what SQS says is left.
"""

from __future__ import annotations

import pytest
from flowcraft.core.backends import Backend
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.sticky import (
    check_finished_attempts_run_once,
    check_killed_runner_recovered,
)
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


async def test_a_killed_runners_attempt_is_recovered_through_the_delayed_copy(
    harness: Harness,
) -> None:
    await check_killed_runner_recovered(harness, sticky_delay=STICKY, left=_left)


@pytest.mark.parametrize("workers", [1, 2])
async def test_the_copies_of_finished_attempts_run_nothing_twice_and_leave_nothing(
    harness: Harness, workers: int
) -> None:
    await check_finished_attempts_run_once(
        harness, workers=workers, sticky_delay=STICKY, left=_left
    )
