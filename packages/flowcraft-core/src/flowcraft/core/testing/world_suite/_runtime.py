"""A small replaying runtime that drives workflows through a World (suite use only).

It speaks the World the way a durable-execution runtime does (vercel-workflow's shape): a
workflow message ``{"runId"}`` on ``__wkf_workflow_<name>`` replays the workflow function
over the run's event log; a step not yet in the log is created (``step_created``) and its
message ``{"runId", "stepId", "stepName"}`` queued with the step id as idempotency key; the
step handler starts the step (``step_started``: 425 → redeliver later, 409 → already done),
runs its body and commits ``step_completed``, or ``step_retrying`` (and asks for redelivery
after the retry delay) or ``step_failed``. Sleeps are waits, hooks are hooks.

``duplicate=True`` runs every delivery twice, concurrently: the World's guards must keep
every commit single.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flowcraft.core.testing.world_suite._support import all_events, created, eventually
from flowcraft.core.world import (
    WORKFLOW_QUEUE_PREFIX,
    Event,
    EventType,
    HookCreatedData,
    HookReceivedData,
    NewEvent,
    QueueMessage,
    Redeliver,
    RunCompletedData,
    RunFailedData,
    StepCompletedData,
    StepCreatedData,
    StepFailedData,
    StepRetryingData,
    TooEarlyError,
    WaitCreatedData,
    WorkflowRun,
    World,
    WorldConflictError,
)
from flowcraft.core.world import Step as StepState


def encode(value: object) -> bytes:
    """Bytes as they are (null bytes included), anything else as JSON."""
    if isinstance(value, bytes):
        return b"B" + value
    return b"J" + json.dumps(value).encode()


def decode(payload: bytes | None) -> Any:  # noqa: ANN401 - whatever was encoded
    """The inverse of :func:`encode`."""
    assert payload is not None
    return payload[1:] if payload[:1] == b"B" else json.loads(payload[1:])


class _Suspend(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, delay: float | None = None) -> None:
        self.delay = delay


class _ReplayNow(Exception):  # noqa: N818
    pass


class StepError(Exception):
    """A step failed for good."""


class HookConflict(Exception):  # noqa: N818
    """Another live hook holds the token."""


@dataclass(slots=True)
class Step:
    """A step body and how often to try it."""

    body: Callable[..., Awaitable[Any]]
    attempts: int = 1
    retry_delay: float = 0.0


@dataclass(slots=True)
class _Context:
    runtime: Runtime
    run_id: str
    events: list[Event]
    counter: int = 0

    def next_id(self, kind: str) -> str:
        self.counter += 1
        return f"{kind}_{self.counter}"

    def of(self, correlation_id: str, kind: EventType) -> list[Event]:
        return [
            e for e in self.events if e.correlation_id == correlation_id and e.event_type == kind
        ]


class Workflow:
    """What a workflow function gets: ``step``, ``sleep`` and ``hook``."""

    def __init__(self, context: _Context) -> None:
        self._context = context

    async def step(self, name: str, *args: object) -> Any:  # noqa: ANN401 - the step's value
        """The step's result (suspends until it is committed)."""
        context = self._context
        step_id = context.next_id("step")
        if done := context.of(step_id, EventType.STEP_COMPLETED):
            data = done[0].data
            assert isinstance(data, StepCompletedData)
            return decode(data.result)
        if failed := context.of(step_id, EventType.STEP_FAILED):
            data_failed = failed[0].data
            assert isinstance(data_failed, StepFailedData)
            raise StepError(data_failed.error)
        if not context.of(step_id, EventType.STEP_CREATED):
            await context.runtime.create_step(context.run_id, step_id, name, args)
        raise _Suspend

    async def sleep(self, seconds: float) -> None:
        """Sleep durably (a wait)."""
        context = self._context
        wait_id = context.next_id("wait")
        if context.of(wait_id, EventType.WAIT_COMPLETED):
            return
        waits = context.of(wait_id, EventType.WAIT_CREATED)
        world = context.runtime.world
        if not waits:
            resume_at = datetime.now(UTC) + timedelta(seconds=seconds)
            data = WaitCreatedData(resume_at=resume_at)
            await _ignore_conflict(
                world.events_create(context.run_id, _new("wait_created", wait_id, data))
            )
            raise _ReplayNow
        wait_data = waits[0].data
        assert isinstance(wait_data, WaitCreatedData)
        left = (wait_data.resume_at - datetime.now(UTC)).total_seconds()
        if left > 0:
            raise _Suspend(left)
        await _ignore_conflict(world.events_create(context.run_id, _new("wait_completed", wait_id)))
        raise _ReplayNow

    async def hook(self, token: str) -> Hook:
        """A hook on ``token`` (created on first replay)."""
        context = self._context
        hook_id = context.next_id("hook")
        if context.of(hook_id, EventType.HOOK_CONFLICT):
            raise HookConflict(token)
        if not context.of(hook_id, EventType.HOOK_CREATED):
            data = HookCreatedData(token=token)
            world = context.runtime.world
            await _ignore_conflict(
                world.events_create(context.run_id, _new("hook_created", hook_id, data))
            )
            raise _ReplayNow
        return Hook(context, hook_id)


@dataclass(slots=True)
class Hook:
    """Payloads delivered to one hook, in order."""

    context: _Context
    hook_id: str
    taken: int = 0

    async def next(self) -> Any:  # noqa: ANN401 - the payload's value
        """The next payload (suspends until it arrives)."""
        received = self.context.of(self.hook_id, EventType.HOOK_RECEIVED)
        if self.taken >= len(received):
            raise _Suspend
        data = received[self.taken].data
        assert isinstance(data, HookReceivedData)
        self.taken += 1
        return decode(data.payload)


WorkflowFn = Callable[[Workflow, Any], Awaitable[Any]]


@dataclass
class Runtime:
    """Registers its handler on the World and runs workflows and steps through it."""

    world: World
    workflows: dict[str, WorkflowFn] = field(default_factory=dict)
    steps: dict[str, Step] = field(default_factory=dict)
    duplicate: bool = False
    body_runs: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.world.register_handler(WORKFLOW_QUEUE_PREFIX, self._handle)

    async def start(self, name: str, value: object, *, run_id: str | None = None) -> str:
        """Create a run of workflow ``name`` and queue its first message."""
        result = await self.world.events_create(run_id, created(name, encode(value)))
        assert result.run is not None
        await self.wake(result.run)
        return result.run.run_id

    async def wake(self, run: WorkflowRun) -> None:
        """Queue a workflow message for ``run``."""
        await self.world.queue(WORKFLOW_QUEUE_PREFIX + run.workflow_name, {"runId": run.run_id})

    async def resume(self, token: str, value: object) -> None:
        """Deliver ``value`` to the hook holding ``token`` and wake its run."""
        hook = await self.world.hooks_get_by_token(token)
        data = HookReceivedData(payload=encode(value))
        await self.world.events_create(hook.run_id, _new("hook_received", hook.hook_id, data))
        await self.wake(await self.world.runs_get(hook.run_id))

    async def finished(self, run_id: str, *, timeout: float = 30.0) -> WorkflowRun:
        """The run once it ended (fails after ``timeout``)."""
        last: list[WorkflowRun] = []

        async def ended() -> bool:
            last[:] = [await self.world.runs_get(run_id)]
            return last[0].status.terminal

        await eventually(ended, f"run {run_id} ends", timeout=timeout)
        return last[0]

    async def create_step(
        self, run_id: str, step_id: str, name: str, args: tuple[object, ...]
    ) -> None:
        """``step_created`` (a repeat is fine) and the step's message, keyed by its id."""
        data = StepCreatedData(step_name=name, input=encode(list(args)))
        await _ignore_conflict(
            self.world.events_create(run_id, _new("step_created", step_id, data))
        )
        run = await self.world.runs_get(run_id)
        message: QueueMessage = {"runId": run_id, "stepId": step_id, "stepName": name}
        queue = WORKFLOW_QUEUE_PREFIX + run.workflow_name
        await self.world.queue(queue, message, idempotency_key=f"{run_id}/{step_id}")

    async def _handle(
        self, message: QueueMessage, *, queue_name: str, message_id: str, attempt: int
    ) -> Redeliver | None:
        del message_id, attempt
        once = self._step if "stepId" in message else self._workflow
        if not self.duplicate:
            return await once(message, queue_name)
        answers = await asyncio.gather(once(message, queue_name), once(message, queue_name))
        return next((answer for answer in answers if answer is not None), None)

    async def _workflow(self, message: QueueMessage, queue_name: str) -> Redeliver | None:
        run_id = str(message["runId"])
        for _ in range(100):
            run = await self.world.runs_get(run_id)
            if run.status.terminal:
                return None
            await _ignore_conflict(self.world.events_create(run_id, _new("run_started")))
            try:
                return await self._replay(run, await all_events(self.world, run_id))
            except _ReplayNow:
                continue
        raise AssertionError(f"run {run_id} replayed 100 times in one delivery")

    async def _replay(self, run: WorkflowRun, events: list[Event]) -> Redeliver | None:
        function = self.workflows[run.workflow_name]
        try:
            value = await function(Workflow(_Context(self, run.run_id, events)), decode(run.input))
        except _Suspend as suspended:
            return None if suspended.delay is None else Redeliver(delay_seconds=suspended.delay)
        except (StepError, HookConflict) as error:
            failed = _new("run_failed", None, RunFailedData(error=str(error)))
            await _ignore_conflict(self.world.events_create(run.run_id, failed))
            return None
        done = _new("run_completed", None, RunCompletedData(output=encode(value)))
        await _ignore_conflict(self.world.events_create(run.run_id, done))
        return None

    async def _step(self, message: QueueMessage, queue_name: str) -> Redeliver | None:
        run_id, step_id = str(message["runId"]), str(message["stepId"])
        try:
            started = await self.world.events_create(run_id, _new("step_started", step_id))
        except TooEarlyError as early:
            return Redeliver(delay_seconds=early.retry_after)
        except WorldConflictError:  # done already: make sure the workflow sees it
            await self.world.queue(queue_name, {"runId": run_id})
            return None
        assert started.step is not None
        step = self.steps[started.step.step_name]
        self.body_runs[step_id] = self.body_runs.get(step_id, 0) + 1
        try:
            result = await step.body(*decode(started.step.input))
        except Exception as error:
            return await self._step_failed(started.step, step, error, queue_name)
        done = _new("step_completed", step_id, StepCompletedData(result=encode(result)))
        await _ignore_conflict(self.world.events_create(run_id, done))
        await self.world.queue(queue_name, {"runId": run_id})
        return None

    async def _step_failed(
        self, state: StepState, step: Step, error: Exception, queue_name: str
    ) -> Redeliver | None:
        run_id, step_id = state.run_id, state.step_id
        if state.attempt < step.attempts:
            retry_after = datetime.now(UTC) + timedelta(seconds=step.retry_delay)
            data = StepRetryingData(error=str(error), retry_after=retry_after)
            await _ignore_conflict(
                self.world.events_create(run_id, _new("step_retrying", step_id, data))
            )
            return Redeliver(delay_seconds=step.retry_delay)
        failed = _new("step_failed", step_id, StepFailedData(error=str(error)))
        await _ignore_conflict(self.world.events_create(run_id, failed))
        await self.world.queue(queue_name, {"runId": run_id})
        return None


def _new(kind: str, correlation_id: str | None = None, data: object = None) -> NewEvent:
    return NewEvent.model_validate(
        {"event_type": kind, "correlation_id": correlation_id, "data": data}
    )


async def _ignore_conflict(write: Awaitable[object]) -> None:
    """A duplicate delivery's write that the World refused as done already."""
    try:
        await write
    except WorldConflictError:
        return
