"""A flowcraft run's history as World events: node instances as steps, hooks and waits.

Planning is pure: :func:`plan_step`, :func:`plan_hook`, :func:`plan_wait`,
:func:`plan_run_start` and :func:`plan_run_end` compare what a node record (or the run
record) says now with the World entity as it stands and return the events that bring the
entity forward, never back. The projection is therefore state-based and idempotent:
whoever projects a node later (another saver, a reconciler) emits only what is missing, and
a save projected after a newer one changes nothing. :func:`project` does the I/O: the run's
start, then the nodes the save moved on (ended, retried, resumed, woke), then the nodes it
started, then the run's end.

The mapping (``step_id`` / ``hook_id`` / ``wait_id``: ``node`` in the root frame,
``node@frame`` elsewhere):

* a node instance that runs (a task, subflow, map or loop attempt) is a **step**: its first
  attempt ``step_created`` + ``step_started``; a failed attempt that is retried
  ``step_retrying`` (its error, ``retry_after`` the retry's due time) then ``step_started``;
  success ``step_completed`` (the output as JSON); failure for good ``step_failed`` (the
  node error); an attempt cancelled while running ``step_failed`` with a ``cancelled``
  error (the World has no cancelled step);
* a node that waits for a resume (a wait node, or a task that suspended) is a **hook** whose
  token is the node's resume token: ``hook_created``; a resume ``hook_received`` (the
  payload: the node's output as JSON) and ``hook_disposed``; a cancelled or failed wait
  ``hook_disposed`` (the World disposes a run's hooks itself when the run ends);
* a sleep node is a **wait**: ``wait_created`` (``resume_at``: its due time) and, when it
  wakes, ``wait_completed`` (a sleep cancelled with its run stays ``waiting``: the World has
  no cancelled wait);
* the run: ``run_started`` when the record leaves ``pending`` (``awaiting`` is a running
  World run), then ``run_completed`` (the output), ``run_failed`` (the errors) or
  ``run_cancelled``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flowcraft.core.world._bp_journal import NODE_PREFIX, Fold, Trace
from flowcraft.core.world._errors import (
    HookNotFoundError,
    TooEarlyError,
    WorldConflictError,
    WorldNotFoundError,
)
from flowcraft.core.world._models import (
    EventResult,
    EventType,
    Hook,
    HookCreatedData,
    HookReceivedData,
    HookStatus,
    NewEvent,
    RunCompletedData,
    RunFailedData,
    RunStatus,
    Step,
    StepCompletedData,
    StepCreatedData,
    StepFailedData,
    StepRetryingData,
    StepStatus,
    Wait,
    WaitCreatedData,
    WaitStatus,
    WorkflowRun,
)
from flowcraft.core.world._protocol import World
from pydantic import JsonValue

log = logging.getLogger("flowcraft.core.world.blueprints")

_CANCELLED: JsonValue = {"type": "cancelled", "message": "the attempt was cancelled"}
_ENDED = ("succeeded", "failed", "cancelled")


def entity_id(key: str) -> str | None:
    """The step/hook/wait id of a node record's stored key (None: not a node record)."""
    if not key.startswith(NODE_PREFIX):
        return None
    try:
        _kind, frame, node = json.loads(key)
    except (ValueError, TypeError):
        return None
    return str(node) if frame == "" else f"{node}@{frame}"


def payload(value: object) -> bytes:
    """A JSON value as a World payload."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _time(seconds: object) -> datetime | None:
    return datetime.fromtimestamp(float(seconds), UTC) if isinstance(seconds, int | float) else None


def _event(kind: EventType, correlation_id: str | None, data: Any = None) -> NewEvent:  # noqa: ANN401
    return NewEvent(event_type=kind, correlation_id=correlation_id, data=data)


# --------------------------------------------------------------------------- steps


def is_step(node: Mapping[str, Any], trace: Trace) -> bool:
    """The instance ran (an attempt of a task, subflow, map or loop)."""
    return int(node.get("attempt") or 0) >= 1 and not trace.slept


def plan_step(
    step_id: str, node: Mapping[str, Any], trace: Trace, step: Step | None
) -> list[NewEvent]:
    """The events that bring ``step`` to what ``node`` says (the node ran)."""
    events: list[NewEvent] = []
    status, attempt = str(node["status"]), int(node.get("attempt") or 0)
    if step is None:
        name, _, _ = step_id.partition("@")
        data = StepCreatedData(step_name=name, input=payload(node.get("input")))
        events.append(_event(EventType.STEP_CREATED, step_id, data))
        done, running = 0, False
    elif step.status.terminal:
        return []
    else:
        done, running = step.attempt, step.status == StepStatus.RUNNING
    while done < attempt:
        if running:
            error: JsonValue = trace.errors.get(done, {"type": "unknown", "message": "retried"})
            events.append(_event(EventType.STEP_RETRYING, step_id, StepRetryingData(error=error)))
        events.append(_event(EventType.STEP_STARTED, step_id))
        done, running = done + 1, True
    if done > attempt or not running:
        return events
    return events + _step_end(step_id, node, status)


def _step_end(step_id: str, node: Mapping[str, Any], status: str) -> list[NewEvent]:
    if status == "succeeded":
        data: Any = StepCompletedData(result=payload(node.get("output")))
        return [_event(EventType.STEP_COMPLETED, step_id, data)]
    if status == "failed":
        error = node.get("error") or {"type": "failed", "message": "the node failed"}
        return [_event(EventType.STEP_FAILED, step_id, StepFailedData(error=error))]
    if status == "cancelled":
        return [_event(EventType.STEP_FAILED, step_id, StepFailedData(error=_CANCELLED))]
    if status == "pending":  # an attempt failed; the next one is due at ``due_at``
        error = node.get("error") or {"type": "unknown", "message": "retried"}
        data = StepRetryingData(error=error, retry_after=_time(node.get("due_at")))
        return [_event(EventType.STEP_RETRYING, step_id, data)]
    return []  # running or awaiting: the attempt goes on


# --------------------------------------------------------------------------- hooks, waits


def plan_hook(hook_id: str, node: Mapping[str, Any], hook: Hook | None) -> list[NewEvent]:
    """The events that bring ``hook`` to what ``node`` says (the node has a resume token)."""
    events: list[NewEvent] = []
    if hook is None:
        data: Any = HookCreatedData(token=str(node["token"]))
        events.append(_event(EventType.HOOK_CREATED, hook_id, data))
        received = 0
    elif hook.status == HookStatus.DISPOSED:
        return []
    else:
        received = hook.received
    status = str(node["status"])
    if status == "awaiting":
        return events
    if (node.get("resumed") or status == "succeeded") and received == 0:
        data = HookReceivedData(payload=payload(node.get("output")))
        events.append(_event(EventType.HOOK_RECEIVED, hook_id, data))
    return [*events, _event(EventType.HOOK_DISPOSED, hook_id)]


def plan_wait(wait_id: str, node: Mapping[str, Any], wait: Wait | None) -> list[NewEvent]:
    """The events that bring ``wait`` to what ``node`` says (a sleep node)."""
    events: list[NewEvent] = []
    if wait is None:
        resume_at = _time(node.get("due_at")) or datetime.now(UTC)
        events.append(_event(EventType.WAIT_CREATED, wait_id, WaitCreatedData(resume_at=resume_at)))
    elif wait.status == WaitStatus.COMPLETED:
        return []
    if node["status"] == "succeeded":
        events.append(_event(EventType.WAIT_COMPLETED, wait_id))
    return events


def plan_run_start(record_status: str, run: WorkflowRun) -> list[NewEvent]:
    """``run_started`` if the record left pending and the World run did not."""
    if run.status != RunStatus.PENDING or record_status == "pending":
        return []
    return [_event(EventType.RUN_STARTED, None)]


def plan_run_end(record_status: str, output: object, errors: object) -> list[NewEvent]:
    """The World run's end, if the record ended (a World run that ended refuses it: 409)."""
    if record_status == "completed":
        return [_event(EventType.RUN_COMPLETED, None, RunCompletedData(output=payload(output)))]
    if record_status == "failed":
        return [_event(EventType.RUN_FAILED, None, RunFailedData(error=payload(errors)))]
    if record_status == "cancelled":
        return [_event(EventType.RUN_CANCELLED, None)]
    return []


def projection_order(key: str, node: Mapping[str, Any]) -> tuple[int, str]:
    """Nodes a save moved on (ended, retried, resumed, woke) before the nodes it started.

    One decision ends some instances and starts their successors: the history shows the
    causes first.
    """
    moving_on = node.get("status") in (*_ENDED, "pending") and int(node.get("attempt") or 0) > 0
    return (0 if moving_on or node.get("resumed") else 1, key)


# --------------------------------------------------------------------------- I/O


class Known:
    """What one projector learnt of a run's World entities from its own appends.

    ``started``: the World run left pending (a World run never goes back). ``steps``: each
    step as the last ``EventResult`` of this projector's appends (or its last read)
    returned it. Other processes project the same run, so a step here may be behind the
    World's; :func:`_project_step` acts on it only when the World's rules refuse the first
    event planned from it if it is behind (then it reads the step and plans again).
    """

    __slots__ = ("started", "steps")

    def __init__(self) -> None:
        self.started = False
        self.steps: dict[str, Step] = {}


def trusted(step: Step | None, plan: Sequence[NewEvent]) -> bool:
    """Whether ``plan``, made from a remembered (maybe stale) ``step``, needs no read first.

    The World's steps only move forward, and a plan from a stale state is safe when its
    first event is refused by a step that moved on: ``step_created`` (an unknown step is
    guessed absent; 409 if it exists) or a single end (``step_completed``/``step_failed``)
    of the attempt remembered running (409 once the step ended; a node ended at attempt
    *k* has no later attempt the step could be at). A remembered ended step needs nothing.
    Plans that retry or start an attempt are not: the World accepts them from a later
    attempt too, so they are planned from a read.
    """
    if step is None:
        return bool(plan) and plan[0].event_type == EventType.STEP_CREATED
    if step.status.terminal:
        return not plan
    ends = (EventType.STEP_COMPLETED, EventType.STEP_FAILED)
    return step.status == StepStatus.RUNNING and len(plan) == 1 and plan[0].event_type in ends


# --------------------------------------------------------------------------- I/O


async def project(
    world: World, run_id: str, fold: Fold, keys: Iterable[str], known: Known | None = None
) -> None:
    """Bring the World's entities of ``run_id`` to the fold's state for ``keys``, then the run.

    Refusals (409, 404) mean another projector got there first (or the run ended and the
    World disposed what it holds): they are skipped, never raised. ``known``: what this
    projector learnt of the run by earlier projections (see :class:`Known`), updated here:
    a started run is not read again, and steps are read only when a plan from the
    remembered state is not :func:`trusted`.
    """
    known = Known() if known is None else known
    record = fold.record
    if not known.started and record.status != "pending":
        run = await world.runs_get(run_id, resolve_data="none")
        await _emit(world, run_id, plan_run_start(record.status, run))
        known.started = True  # started now, by this projector or another (a refusal: it had)
    nodes = []
    for key in keys:
        entity, stored = entity_id(key), fold.records.get(key)
        node = stored[1] if stored is not None else None
        if entity is not None and isinstance(node, dict) and "status" in node:
            nodes.append((projection_order(key, node), entity, node, key))
    for _order, entity, node, key in sorted(nodes, key=lambda item: item[0]):
        await _project_node(world, run_id, entity, node, fold.traces.get(key, Trace()), known)
    await _emit(world, run_id, plan_run_end(record.status, record.output, list(record.errors)))


async def _project_node(  # noqa: PLR0917 (one node's parts)
    world: World,
    run_id: str,
    entity: str,
    node: Mapping[str, Any],
    trace: Trace,
    known: Known,
) -> None:
    if is_step(node, trace):
        await _project_step(world, run_id, entity, node, trace, known)
    if node.get("token"):
        hook = await _get(world.hooks_get(run_id, entity))
        await _emit(world, run_id, plan_hook(entity, node, hook))
    if trace.slept:
        wait = await _get(world.waits_get(run_id, entity))
        await _emit(world, run_id, plan_wait(entity, node, wait))


async def _project_step(  # noqa: PLR0917 (one node's parts)
    world: World,
    run_id: str,
    entity: str,
    node: Mapping[str, Any],
    trace: Trace,
    known: Known,
) -> None:
    """Plan from the remembered step when :func:`trusted`, else (or once refused) read it."""

    def remember(result: EventResult) -> None:
        if result.step is not None:
            known.steps[entity] = result.step

    remembered = known.steps.get(entity)
    plan = plan_step(entity, node, trace, remembered)
    if trusted(remembered, plan) and (not plan or await _emit(world, run_id, plan, remember)):
        return  # the first event took: the remembered state was the World's
    step = await _get(world.steps_get(run_id, entity, resolve_data="none"))
    if step is not None:
        known.steps[entity] = step
    await _emit(world, run_id, plan_step(entity, node, trace, step), remember)


async def _get(read: Any) -> Any:  # noqa: ANN401
    try:
        return await read
    except WorldNotFoundError:
        return None


async def _emit(
    world: World,
    run_id: str,
    events: list[NewEvent],
    on_result: Callable[[EventResult], None] | None = None,
) -> int:
    """Append ``events`` in order; stop at the first refusal (someone else is ahead).

    Returns how many were appended (``on_result`` sees each one's result).
    """
    for done, event in enumerate(events):
        try:
            result = await _append(world, run_id, event)
        except (WorldConflictError, WorldNotFoundError, HookNotFoundError) as refused:
            log.debug("history of %s: %s refused (%s)", run_id, event.event_type, refused)
            return done
        if on_result is not None:
            on_result(result)
    return len(events)


async def _append(world: World, run_id: str, event: NewEvent) -> EventResult:
    try:
        return await world.events_create(run_id, event)
    except TooEarlyError:
        # The retry's timer and the World disagree by a clock skew: the step is due by
        # flowcraft's clock, so lift its retry_after and start it.
        assert event.correlation_id is not None
        step = await world.steps_get(run_id, event.correlation_id)
        lifted = StepRetryingData(error=step.error)
        await world.events_create(
            run_id, _event(EventType.STEP_RETRYING, event.correlation_id, lifted)
        )
        return await world.events_create(run_id, event)
