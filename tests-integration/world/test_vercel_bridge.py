"""vercel-workflow programs end to end on InMemoryWorld, through VercelBridge.

The World is chosen the way vercel-workflow chooses it: its world selector (``set_world``)
holds the bridge in-process, and the runtime's own ``start``, queue handler, replay, step
execution, retries, sleep continuations, hook resumes and streams do the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from flowcraft.core.world import (
    Event,
    EventType,
    HookReceivedData,
    HookStatus,
    InMemoryWorld,
    Pagination,
    QueueHandler,
    QueueMessage,
    Redeliver,
    RunStatus,
)
from flowcraft.core.world.vercel import VercelBridge
from vercel import workflow as vw
from vercel.workflow._internal import world as vercel_world

# vercel-workflow re-imports a workflow's module by name in its sandbox: a top-level module.
sys.path.insert(0, str(Path(__file__).parent))
import vercel_checks as checks
import vercel_programs as programs

pytestmark = pytest.mark.timeout(60)


class _EveryMessageTwice(InMemoryWorld):
    """InMemoryWorld whose consumers run every delivery twice, concurrently."""

    def register_handler(self, queue_prefix: str, handler: QueueHandler) -> None:
        async def twice(
            message: QueueMessage, *, queue_name: str, message_id: str, attempt: int
        ) -> Redeliver | None:
            def once() -> Awaitable[Redeliver | None]:
                return handler(
                    message, queue_name=queue_name, message_id=message_id, attempt=attempt
                )

            first, second = await asyncio.gather(once(), once(), return_exceptions=True)
            for outcome in (first, second):
                if isinstance(outcome, BaseException):
                    raise outcome
            return None

        super().register_handler(queue_prefix, twice)


class _LosesTheFirstStepMessage(InMemoryWorld):
    """InMemoryWorld whose first enqueue of a step message fails before anything is queued.

    As if the process died between writing the step's ``step_created`` and enqueueing it:
    the replay pass raises, its message comes again, and vercel's replay, seeing the step
    created, does not enqueue it again.
    """

    lost: list[QueueMessage]

    async def queue(
        self,
        queue_name: str,
        message: QueueMessage,
        *,
        idempotency_key: str | None = None,
        delay_seconds: float = 0.0,
    ) -> str:
        if "stepId" in message and not getattr(self, "lost", None):
            self.lost = [message]
            raise ConnectionError("the step message was never enqueued (process died)")
        return await super().queue(
            queue_name, message, idempotency_key=idempotency_key, delay_seconds=delay_seconds
        )


class _Recorded(InMemoryWorld):
    """InMemoryWorld that keeps its handler and counts the deliveries of each step message."""

    handler: QueueHandler
    step_deliveries: Counter[str]

    def register_handler(self, queue_prefix: str, handler: QueueHandler) -> None:
        self.handler = handler
        self.step_deliveries = Counter()

        async def counted(
            message: QueueMessage, *, queue_name: str, message_id: str, attempt: int
        ) -> Redeliver | None:
            step_id = message.get("stepId")
            if isinstance(step_id, str):
                self.step_deliveries[step_id] += 1
            return await handler(
                message, queue_name=queue_name, message_id=message_id, attempt=attempt
            )

        super().register_handler(queue_prefix, counted)


@contextlib.asynccontextmanager
async def _selected(world: InMemoryWorld) -> AsyncIterator[VercelBridge]:
    """The bridge over ``world`` in vercel-workflow's selector, the programs served on it."""
    bridge = VercelBridge(world, deployment_id="dpl_test")
    previous = vercel_world.the_world
    vercel_world.set_world(bridge)
    try:
        programs.serve()
        async with bridge:
            yield bridge
    finally:
        vercel_world.set_world(previous)


async def _eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(300):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def _events(bridge: VercelBridge, run_id: str) -> list[Event]:
    page = await bridge.world.events_list(run_id, pagination=Pagination(limit=1000))
    assert not page.has_more
    return page.data


async def test_a_step_a_sleep_and_a_hook_run_to_completion() -> None:
    token = f"approval-{uuid.uuid4().hex}"
    async with _selected(InMemoryWorld()) as bridge:
        run = await vw.start(programs.step_sleep_hook, 41, token)

        async def hook_exists() -> bool:
            try:
                await vw.get_hook_by_token(token)
            except vw.HookNotFoundError:
                return False
            return True

        await _eventually(hook_exists, "the run to create its hook")
        assert await run.status() == "running"
        await programs.Approval(approved=True, note="ship it").resume(token)
        result = await asyncio.wait_for(run.return_value(), 30)

        assert result == {"total": 42, "approved": True, "note": "ship it"}
        stored = await bridge.world.runs_get(run.run_id)
        assert stored.status == RunStatus.COMPLETED
        events = await _events(bridge, run.run_id)
        assert [event.sequence for event in events] == list(range(1, len(events) + 1))
        assert [event.event_type for event in events] == [
            EventType.RUN_CREATED,
            EventType.RUN_STARTED,
            EventType.STEP_CREATED,
            EventType.STEP_STARTED,
            EventType.STEP_COMPLETED,
            EventType.WAIT_CREATED,
            EventType.WAIT_COMPLETED,
            EventType.HOOK_CREATED,
            EventType.HOOK_RECEIVED,
            EventType.RUN_COMPLETED,
        ]
        wait_created, wait_completed = events[5], events[6]
        assert (wait_completed.created_at - wait_created.created_at).total_seconds() >= 1.0
        received = events[8]
        assert isinstance(received.data, HookReceivedData)
        assert b"ship it" in received.data.payload
        hook = await bridge.world.hooks_get(run.run_id, events[7].correlation_id or "")
        assert hook.token == token
        assert hook.received == 1
        assert hook.status == HookStatus.DISPOSED  # released when the run ended
        with pytest.raises(vw.HookNotFoundError):
            await vw.get_hook_by_token(token)


@pytest.mark.parametrize(
    "world_class", [InMemoryWorld, _EveryMessageTwice], ids=["once", "every-message-twice"]
)
async def test_twenty_steps_each_committed_once(world_class: type[InMemoryWorld]) -> None:
    async with _selected(world_class()) as bridge:
        run = await vw.start(programs.twenty_steps, 0)
        result = await asyncio.wait_for(run.return_value(), 45)

        assert result == list(range(1, programs.STEP_COUNT + 1))
        events = await _events(bridge, run.run_id)
        assert [event.sequence for event in events] == list(range(1, len(events) + 1))
        completed = Counter(
            event.correlation_id for event in events if event.event_type == EventType.STEP_COMPLETED
        )
        created = [e.correlation_id for e in events if e.event_type == EventType.STEP_CREATED]
        assert len(created) == programs.STEP_COUNT
        assert completed == Counter(dict.fromkeys(created, 1))
        assert [e.event_type for e in events].count(EventType.RUN_COMPLETED) == 1
        steps = await bridge.world.steps_list(run.run_id, pagination=Pagination(limit=100))
        assert {step.status.value for step in steps.data} == {"completed"}


async def test_a_step_message_lost_after_step_created_is_sent_again() -> None:
    world = _LosesTheFirstStepMessage()
    async with _selected(world) as bridge:
        run = await vw.start(programs.twenty_steps, 0)
        result = await asyncio.wait_for(run.return_value(), 20)

        assert result == list(range(1, programs.STEP_COUNT + 1))
        assert len(world.lost) == 1
        events = await _events(bridge, run.run_id)
        created = [e.correlation_id for e in events if e.event_type == EventType.STEP_CREATED]
        assert world.lost[0]["stepId"] == created[0]
        completed = Counter(
            event.correlation_id for event in events if event.event_type == EventType.STEP_COMPLETED
        )
        assert completed == Counter(dict.fromkeys(created, 1))


async def test_a_step_retried_twice_then_completed_waits_its_retry_after() -> None:
    async with _selected(InMemoryWorld()) as bridge:
        await checks.retried_until_it_succeeds(bridge)


async def test_a_retried_step_with_every_message_twice_completes_once() -> None:
    async with _selected(_EveryMessageTwice()) as bridge:
        await checks.retried_with_every_message_twice(bridge)


async def test_a_step_out_of_retries_fails_the_run() -> None:
    async with _selected(InMemoryWorld()) as bridge:
        await checks.fails_once_retries_are_used(bridge)


async def test_a_fatal_error_fails_the_run_without_retry() -> None:
    async with _selected(InMemoryWorld()) as bridge:
        await checks.fails_at_a_fatal_error(bridge)


async def test_two_steps_stream_chunks_read_live_in_order() -> None:
    async with _selected(InMemoryWorld()) as bridge:
        await checks.streams_every_chunk_in_order(bridge)


async def test_a_replay_delivered_again_while_a_step_waits_to_retry_adds_no_attempt() -> None:
    """The bridge's resend of pending steps leaves a step waiting for its retry alone.

    The step's first attempt failed (``step_retrying``, retry in 1 s) and the dedup window
    of its first message is over when the replay message comes again: the retry is the
    step's own message (its continuation), so the step message is delivered once per
    attempt and each attempt starts after the last one's ``retryAfter``.
    """
    world = _Recorded(dedup_window_seconds=0.1)
    async with _selected(world) as bridge:
        run = await vw.start(programs.retried, 3)

        async def waiting_to_retry() -> bool:
            steps = await world.steps_list(run.run_id, pagination=Pagination(limit=10))
            return any(step.retry_after is not None for step in steps.data)

        await _eventually(waiting_to_retry, "the first attempt to fail")
        await asyncio.sleep(0.2)  # the dedup window of the step's first message is over
        steps = await world.steps_list(run.run_id, pagination=Pagination(limit=10))
        (flaky,) = steps.data
        assert (flaky.status.value, flaky.attempt) == ("pending", 1)
        replay: QueueMessage = {"runId": run.run_id, "requestedAt": "2026-01-01T00:00:00Z"}
        stored = await world.runs_get(run.run_id)
        queue_name = vercel_world.get_queue_name(stored.workflow_name, None)
        await world.handler(replay, queue_name=queue_name, message_id="again", attempt=2)
        result = await asyncio.wait_for(run.return_value(), 30)

        assert result == {"attempt": 3, "next": 103}
        assert programs.FLAKY_CALLS[run.run_id] == [1, 2, 3]
        assert world.step_deliveries[flaky.step_id] == 3
        events = await checks.events_of(bridge, run.run_id)
        started = [e for e in events if e.event_type == EventType.STEP_STARTED]
        assert [e.correlation_id for e in started].count(flaky.step_id) == 3
        checks.check_retry_waits(events)
