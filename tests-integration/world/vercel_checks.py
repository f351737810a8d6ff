"""Retries and streams of :mod:`vercel_programs`, run and checked on any World's bridge.

One function per scenario, called by the in-memory and the AwsWorld tests with their own
bridge (already in vercel-workflow's selector, its programs served). Each starts a run with
vercel-workflow's own ``start``, waits for its outcome and checks the result, the run's
event log as the runtime writes it, and what the World stored.

What a retry writes (vercel-workflow 0.12): the attempt's ``step_started``, then, for a
``RetryableError`` with attempts left, ``step_retrying`` carrying ``retryAfter``; the step
message comes again after that delay (a ``step_started`` before ``retryAfter`` is refused
with 425 and deferred). The last allowed attempt failing, or a ``FatalError``, writes
``step_failed`` and the run's replay then fails the run.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import vercel_programs as programs
from flowcraft.core.world import (
    Event,
    EventType,
    Pagination,
    RunStatus,
    StepRetryingData,
    StepStatus,
)
from flowcraft.core.world.vercel import VercelBridge
from vercel import workflow as vw

_E = EventType

#: The runtime's fixed part of a run's log before its first step, and its end.
_HEAD = [_E.RUN_CREATED, _E.RUN_STARTED, _E.STEP_CREATED]


async def events_of(bridge: VercelBridge, run_id: str) -> list[Event]:
    """The run's whole log, checked dense (sequences 1..n, no holes)."""
    page = await bridge.world.events_list(run_id, pagination=Pagination(limit=1000))
    assert not page.has_more
    events = page.data
    assert [event.sequence for event in events] == list(range(1, len(events) + 1))
    return events


def check_retry_waits(events: list[Event]) -> None:
    """Every ``step_started`` that follows a ``step_retrying`` of its step honours it.

    It is at or after that ``retryAfter`` and at least :data:`programs.RETRY_AFTER`
    seconds after the attempt that failed began.
    """
    last_started: dict[str | None, Event] = {}
    retrying: dict[str | None, Event] = {}
    for event in events:
        step = event.correlation_id
        if event.event_type == _E.STEP_RETRYING:
            retrying[step] = event
        elif event.event_type == _E.STEP_STARTED:
            pending = retrying.pop(step, None)
            if pending is not None:
                assert isinstance(pending.data, StepRetryingData)
                assert pending.data.retry_after is not None
                assert event.created_at >= pending.data.retry_after, (event, pending)
                waited = event.created_at - last_started[step].created_at
                assert waited >= timedelta(seconds=programs.RETRY_AFTER), waited
            last_started[step] = event


async def retried_until_it_succeeds(bridge: VercelBridge, *, succeed_on: int = 3) -> None:
    """:func:`programs.retried`: ``succeed_on - 1`` retries, exactly as the runtime writes them.

    Every delivery once: the log is exact, the body ran once per attempt (1..succeed_on).
    """
    run = await vw.start(programs.retried, succeed_on)
    result = await asyncio.wait_for(run.return_value(), 60)

    assert result == {"attempt": succeed_on, "next": succeed_on + 100}
    assert programs.FLAKY_CALLS[run.run_id] == list(range(1, succeed_on + 1))
    events = await events_of(bridge, run.run_id)
    attempts = [_E.STEP_STARTED, _E.STEP_RETRYING] * (succeed_on - 1)
    assert [event.event_type for event in events] == [
        *_HEAD,
        *attempts,
        _E.STEP_STARTED,
        _E.STEP_COMPLETED,
        _E.STEP_CREATED,
        _E.STEP_STARTED,
        _E.STEP_COMPLETED,
        _E.RUN_COMPLETED,
    ]
    flaky_id = events[2].correlation_id
    assert {e.correlation_id for e in events[2 : 4 + 2 * (succeed_on - 1)]} == {flaky_id}
    check_retry_waits(events)
    for retrying in events[4 : 3 + 2 * (succeed_on - 1) : 2]:
        assert isinstance(retrying.data, StepRetryingData)
        assert "failed" in str(retrying.data.error)
    step = await bridge.world.steps_get(run.run_id, flaky_id or "")
    assert (step.status, step.attempt, step.retry_after) == (
        StepStatus.COMPLETED,
        succeed_on,
        None,
    )
    assert (await bridge.world.runs_get(run.run_id)).status == RunStatus.COMPLETED


async def retried_with_every_message_twice(bridge: VercelBridge) -> None:
    """:func:`programs.retried` (attempt 2 succeeds) with every delivery run twice at once.

    Two deliveries of one step message start two attempts, so the log is not exact; what
    holds: a dense log, the retried step completed once and not failed, the run completed
    once, every start after a retry at or after its ``retryAfter``.
    """
    run = await vw.start(programs.retried, 2)
    result = await asyncio.wait_for(run.return_value(), 90)

    assert result["attempt"] >= 2
    assert result["next"] == result["attempt"] + 100
    events = await events_of(bridge, run.run_id)
    created = [e.correlation_id for e in events if e.event_type == _E.STEP_CREATED]
    assert len(created) == 2
    counts = Counter((e.event_type, e.correlation_id) for e in events)
    flaky_id = created[0]
    assert counts[_E.STEP_COMPLETED, flaky_id] == 1
    assert counts[_E.STEP_FAILED, flaky_id] == 0
    assert counts[_E.STEP_COMPLETED, created[1]] == 1
    assert [e.event_type for e in events].count(_E.RUN_COMPLETED) == 1
    assert events[-1].event_type == _E.RUN_COMPLETED
    check_retry_waits(events)


async def _failed(run: vw.Run[int]) -> str:
    """The message of the run's failure (it must fail)."""
    try:
        value = await asyncio.wait_for(run.return_value(), 60)
    except vw.WorkflowRunFailedError as error:
        return str(error)
    raise AssertionError(f"run {run.run_id} returned {value!r} instead of failing")


async def fails_once_retries_are_used(bridge: VercelBridge) -> None:
    """:func:`programs.retries_exhausted`: attempt 1 retried, attempt 2 fails step and run."""
    run = await vw.start(programs.retries_exhausted, "no backend")
    message = await _failed(run)

    assert "no backend (attempt 2)" in message
    events = await events_of(bridge, run.run_id)
    assert [event.event_type for event in events] == [
        *_HEAD,
        _E.STEP_STARTED,
        _E.STEP_RETRYING,
        _E.STEP_STARTED,
        _E.STEP_FAILED,
        _E.RUN_FAILED,
    ]
    check_retry_waits(events)
    step = await bridge.world.steps_get(run.run_id, events[2].correlation_id or "")
    assert (step.status, step.attempt) == (StepStatus.FAILED, 2)
    assert "failed after 1 retry" in str(step.error)
    assert (await bridge.world.runs_get(run.run_id)).status == RunStatus.FAILED
    assert await run.status() == "failed"


async def fails_at_a_fatal_error(bridge: VercelBridge) -> None:
    """:func:`programs.fatal`: ``FatalError`` fails the step at attempt 1, then the run."""
    run = await vw.start(programs.fatal, "card declined")
    message = await _failed(run)

    assert "card declined" in message
    events = await events_of(bridge, run.run_id)
    assert [event.event_type for event in events] == [
        *_HEAD,
        _E.STEP_STARTED,
        _E.STEP_FAILED,
        _E.RUN_FAILED,
    ]
    step = await bridge.world.steps_get(run.run_id, events[2].correlation_id or "")
    assert (step.status, step.attempt) == (StepStatus.FAILED, 1)
    assert (await bridge.world.runs_get(run.run_id)).status == RunStatus.FAILED


#: The chunks :func:`streams_every_chunk_in_order` has its two steps write.
FIRST = [f"a{index:02d}" for index in range(25)]
SECOND = [f"b{index:02d}" for index in range(40)]


async def streams_every_chunk_in_order(bridge: VercelBridge) -> None:
    """:func:`programs.streamed`: a reader tailing from the start gets every chunk in order.

    The reader starts with the run (before anything is written) and ends at the second
    step's close; a second read after the run, the chunk pages and the stream's info agree.
    """
    run = await vw.start(programs.streamed, FIRST, SECOND)

    async def read_all() -> list[object]:
        return [chunk async for chunk in run.readable()]

    live = await asyncio.wait_for(read_all(), 60)
    result = await asyncio.wait_for(run.return_value(), 60)

    expected = FIRST + SECOND
    assert result == len(expected)
    assert live == expected
    assert await read_all() == expected
    names = await run.list_streams()
    assert len(names) == 1
    after = [chunk async for chunk in vw.read_stream(run.run_id, names[0], start_index=60)]
    assert after == expected[60:]
    info = await run.stream_info()
    assert (info.tail_index, info.done) == (len(expected) - 1, True)
    events = await events_of(bridge, run.run_id)
    assert [event.event_type for event in events] == [
        *_HEAD,
        _E.STEP_STARTED,
        _E.STEP_COMPLETED,
        _E.STEP_CREATED,
        _E.STEP_STARTED,
        _E.STEP_COMPLETED,
        _E.RUN_COMPLETED,
    ]
