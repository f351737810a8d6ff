"""The World's transition rules: pure, shared by every World implementation.

Nothing here awaits, sleeps, reads the clock or draws an id: the caller passes the entity
snapshots an event touches, the run id (minted by the World for a ``run_created`` without
one) and ``now``. :func:`decide` answers with a :class:`Transition` (the events to append
and the entities to write) or a :class:`Refusal` carrying the typed error (400/404/409/410/
425). A token held by another live hook is an outcome, not an error: the transition appends
a ``hook_conflict`` event and creates no hook.

How a World uses it (the whole write path of ``events_create``)::

    needs = reads(event)                       # which entities to load
    snapshot = <load run, entities, last sequence>   (one consistent read)
    outcome = decide(snapshot, run_id, event, now=now, policy=policy)
    if isinstance(outcome, Refusal): raise outcome.error
    <commit outcome atomically>                # or nothing, if it appends no event
    return outcome.result

Committing atomically means: the events go to positions ``last_sequence + 1 ...`` of the
run's log, and the entity writes happen with them or not at all, *and only if the snapshot
is still current*. The in-memory World holds the run's lock from load to commit. A
DynamoDB World does it in one ``TransactWriteItems``: it bumps the run item's event counter
on the condition that it still equals ``snapshot.last_sequence`` (the counter versions every
entity of the run, since every event of the run bumps it), puts each event at its dense
position, and puts or updates the entities; a new run, step, hook or wait is put with
``attribute_not_exists``, a hook token with a conditional put on a token item. A lost
condition means a concurrent writer won: reload and decide again. Hooks the transition
releases (``Transition.released``, when a run ends) free their tokens in the same commit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flowcraft.core.world._errors import (
    HookNotFoundError,
    RunExpiredError,
    TooEarlyError,
    WorldConflictError,
    WorldError,
    WorldNotFoundError,
    WorldRequestError,
)
from flowcraft.core.world._models import (
    AttrSetData,
    Event,
    EventData,
    EventResult,
    EventType,
    Hook,
    HookConflictData,
    HookCreatedData,
    HookReceivedData,
    HookStatus,
    NewEvent,
    RunCancelledData,
    RunCompletedData,
    RunCreatedData,
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
    event_id_for,
)

STEP_EVENTS = frozenset(
    {
        EventType.STEP_STARTED,
        EventType.STEP_COMPLETED,
        EventType.STEP_FAILED,
        EventType.STEP_RETRYING,
    }
)
HOOK_EVENTS = frozenset({EventType.HOOK_RECEIVED, EventType.HOOK_DISPOSED})
TERMINAL_RUN_EVENTS = frozenset(
    {EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELLED}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """Settings the rules read.

    Attributes:
        run_retention: How long a run accepts events after it ended (``expired_at`` =
            ``completed_at + run_retention``); ``None``: forever. Events on an expired run
            are refused with 410.
    """

    run_retention: timedelta | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reads:
    """What a World loads before deciding an event (besides the run and its last sequence).

    Attributes:
        step / hook / wait: The entity named by the event's correlation id.
        token: The token whose active holder to load (``hook_created``).
        run_hooks: The run's active hooks (events that end the run release them).
        resume_id: The resume id whose recorded ``hook_received`` to load.
        attr: Whether an ``attr_set`` with the event's correlation id exists.
    """

    step: bool = False
    hook: bool = False
    wait: bool = False
    token: str | None = None
    run_hooks: bool = False
    resume_id: str | None = None
    attr: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The current state of what an event touches, read consistently.

    Attributes:
        run: The run, or ``None`` if it does not exist.
        last_sequence: The sequence of the run's last event (0: none).
        step / hook / wait: The entity named by the correlation id, or ``None``.
        token_holder: The active hook holding the token asked for, or ``None``.
        run_hooks: The run's active hooks (loaded for events that end the run).
        resumed: The ``hook_received`` already recorded for the event's resume id.
        attr_exists: An ``attr_set`` with the event's correlation id is in the log.
    """

    run: WorkflowRun | None = None
    last_sequence: int = 0
    step: Step | None = None
    hook: Hook | None = None
    wait: Wait | None = None
    token_holder: Hook | None = None
    run_hooks: tuple[Hook, ...] = ()
    resumed: Event | None = None
    attr_exists: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """What to commit, atomically, for one event.

    Attributes:
        events: To append at ``last_sequence + 1, ...`` (empty: an idempotent repeat, write
            nothing at all).
        run / step / hook / wait: New states to write (``None``: unchanged). A ``step``,
            ``hook`` or ``wait`` whose ``created_at`` equals the event's time is new.
        released: The run's hooks, now disposed (their tokens free).
        result: What ``events_create`` returns.
    """

    events: tuple[Event, ...] = ()
    run: WorkflowRun | None = None
    step: Step | None = None
    hook: Hook | None = None
    wait: Wait | None = None
    released: tuple[Hook, ...] = ()
    result: EventResult = field(default_factory=EventResult)


@dataclass(frozen=True, slots=True)
class Refusal:
    """The event is refused; nothing may be written. ``error`` is what the World raises."""

    error: WorldError


Outcome = Transition | Refusal


def reads(event: NewEvent) -> Reads:
    """What to load for ``event`` before :func:`decide`."""
    kind = event.event_type
    token = event.data.token if isinstance(event.data, HookCreatedData) else None
    resume_id = event.data.resume_id if isinstance(event.data, HookReceivedData) else None
    return Reads(
        step=kind in STEP_EVENTS or kind == EventType.STEP_CREATED,
        hook=kind in HOOK_EVENTS or kind == EventType.HOOK_CREATED,
        wait=kind in (EventType.WAIT_CREATED, EventType.WAIT_COMPLETED),
        token=token,
        run_hooks=kind in TERMINAL_RUN_EVENTS,
        resume_id=resume_id,
        attr=kind == EventType.ATTR_SET and event.correlation_id is not None,
    )


def decide(
    snapshot: Snapshot, run_id: str, event: NewEvent, *, now: datetime, policy: Policy
) -> Outcome:
    """The transition ``event`` makes from ``snapshot``, or why it is refused.

    Args:
        snapshot: The current state (see :func:`reads` for what it must hold).
        run_id: The run the event is for (the World mints one for a ``run_created``
            without an id before calling this).
        event: The event asked for.
        now: The time to stamp on the event and the entities.
        policy: Settings (retention).
    """
    if event.event_type == EventType.HOOK_CONFLICT:
        return _refuse(WorldRequestError, "hook_conflict is written by the World, not asked for")
    context = _Context(snapshot, run_id, event, now, policy)
    if event.event_type == EventType.RUN_CREATED:
        return _run_created(context)
    run = snapshot.run
    if run is None:
        return _run_missing(context)
    if run.expired_at is not None and run.expired_at <= now:
        return _refuse(RunExpiredError, f"run {run_id!r} has expired")
    return _RULES[event.event_type](context, run)


@dataclass(frozen=True, slots=True)
class _Context:
    snapshot: Snapshot
    run_id: str
    event: NewEvent
    now: datetime
    policy: Policy

    def record(
        self, offset: int = 1, *, kind: EventType | None = None, data: EventData | None = None
    ) -> Event:
        """The event at ``last_sequence + offset`` (the asked-for one by default)."""
        sequence = self.snapshot.last_sequence + offset
        return Event(
            run_id=self.run_id,
            event_id=event_id_for(sequence),
            sequence=sequence,
            event_type=kind or self.event.event_type,
            correlation_id=self.event.correlation_id,
            data=data if kind is not None else self.event.data,
            created_at=self.now,
            spec_version=self.event.spec_version,
        )

    @property
    def correlation_id(self) -> str:
        assert self.event.correlation_id is not None  # NewEvent validates it
        return self.event.correlation_id


def _refuse(cls: type[WorldError], message: str, code: str | None = None) -> Refusal:
    return Refusal(cls(message, code=code))


def _conflict(message: str, code: str) -> Refusal:
    return Refusal(WorldConflictError(message, code=code))


# ------------------------------------------------------------------------------ runs


def _new_run(context: _Context, data: RunCreatedData, status: RunStatus) -> WorkflowRun:
    return WorkflowRun(
        run_id=context.run_id,
        status=status,
        workflow_name=data.workflow_name,
        deployment_id=data.deployment_id,
        spec_version=context.event.spec_version,
        execution_context=data.execution_context,
        input=data.input,
        attributes=dict(data.attributes or {}),
        created_at=context.now,
        updated_at=context.now,
        started_at=context.now if status == RunStatus.RUNNING else None,
    )


def _run_created(context: _Context) -> Outcome:
    data = context.event.data
    assert isinstance(data, RunCreatedData)
    existing = context.snapshot.run
    if existing is not None:
        same = (existing.workflow_name, existing.deployment_id, existing.input) == (
            data.workflow_name,
            data.deployment_id,
            data.input,
        )
        if same:
            return Transition(result=EventResult(run=existing))
        return _conflict(f"run {context.run_id!r} exists with other content", "run_exists")
    run = _new_run(context, data, RunStatus.PENDING)
    event = context.record()
    return Transition(events=(event,), run=run, result=EventResult(event=event, run=run))


def _run_missing(context: _Context) -> Outcome:
    """A ``run_started`` carrying the run's data re-creates a run whose creation was lost."""
    data = context.event.data
    if context.event.event_type == EventType.RUN_STARTED and isinstance(data, RunCreatedData):
        created = context.record(1, kind=EventType.RUN_CREATED, data=data)
        started = context.record(2, kind=EventType.RUN_STARTED, data=None)
        run = _new_run(context, data, RunStatus.RUNNING)
        return Transition(
            events=(created, started), run=run, result=EventResult(event=started, run=run)
        )
    return _refuse(WorldNotFoundError, f"run {context.run_id!r} not found", "run_not_found")


def _run_terminal(run: WorkflowRun) -> Refusal:
    return _conflict(f"run {run.run_id!r} is {run.status}: it takes no transition", "run_terminal")


def _run_started(context: _Context, run: WorkflowRun) -> Outcome:
    if run.status.terminal:
        return _run_terminal(run)
    if run.status == RunStatus.RUNNING:
        return Transition(result=EventResult(run=run))
    updated = run.model_copy(
        update={"status": RunStatus.RUNNING, "started_at": context.now, "updated_at": context.now}
    )
    event = context.record(data=None)
    return Transition(events=(event,), run=updated, result=EventResult(event=event, run=updated))


def _run_ended(context: _Context, run: WorkflowRun) -> Outcome:
    kind = context.event.event_type
    if kind == EventType.RUN_CANCELLED and run.status == RunStatus.CANCELLED:
        return Transition(result=EventResult(run=run))
    if run.status.terminal:
        return _run_terminal(run)
    retention = context.policy.run_retention
    update: dict[str, object] = {
        "status": _ENDS[kind],
        "completed_at": context.now,
        "updated_at": context.now,
        "expired_at": None if retention is None else context.now + retention,
        **_end_fields(context.event.data),
    }
    updated = run.model_copy(update=update)
    released = tuple(
        hook.model_copy(update={"status": HookStatus.DISPOSED, "disposed_at": context.now})
        for hook in context.snapshot.run_hooks
        if hook.status == HookStatus.ACTIVE
    )
    event = context.record()
    return Transition(
        events=(event,),
        run=updated,
        released=released,
        result=EventResult(event=event, run=updated),
    )


_ENDS = {
    EventType.RUN_COMPLETED: RunStatus.COMPLETED,
    EventType.RUN_FAILED: RunStatus.FAILED,
    EventType.RUN_CANCELLED: RunStatus.CANCELLED,
}


def _end_fields(data: EventData | None) -> dict[str, object]:
    if isinstance(data, RunCompletedData):
        return {"output": data.output}
    if isinstance(data, RunFailedData):
        return {"error": data.error, "error_code": data.error_code}
    if isinstance(data, RunCancelledData):
        return {"cancel_reason": data.reason}
    return {}


def _attr_set(context: _Context, run: WorkflowRun) -> Outcome:
    if run.status.terminal:
        return _run_terminal(run)
    if context.event.correlation_id is not None and context.snapshot.attr_exists:
        return _conflict(f"attr_set {context.event.correlation_id!r} exists", "attr_exists")
    data = context.event.data
    assert isinstance(data, AttrSetData)
    attributes = dict(run.attributes)
    for key, value in data.changes.items():
        if value is None:
            attributes.pop(key, None)
        else:
            attributes[key] = value
    updated = run.model_copy(update={"attributes": attributes, "updated_at": context.now})
    event = context.record()
    return Transition(events=(event,), run=updated, result=EventResult(event=event, run=updated))


# ------------------------------------------------------------------------------ steps


def _step_created(context: _Context, run: WorkflowRun) -> Outcome:
    if run.status.terminal:
        return _run_terminal(run)
    if context.snapshot.step is not None:
        return _conflict(f"step {context.correlation_id!r} exists", "step_exists")
    data = context.event.data
    assert isinstance(data, StepCreatedData)
    step = Step(
        run_id=context.run_id,
        step_id=context.correlation_id,
        step_name=data.step_name,
        status=StepStatus.PENDING,
        input=data.input,
        created_at=context.now,
        updated_at=context.now,
        spec_version=context.event.spec_version,
    )
    event = context.record()
    return Transition(events=(event,), step=step, result=EventResult(event=event, step=step))


def _step_event(context: _Context, run: WorkflowRun) -> Outcome:
    step = context.snapshot.step
    if step is None:
        return _refuse(
            WorldNotFoundError, f"step {context.correlation_id!r} not found", "step_not_found"
        )
    if step.status.terminal:
        return _conflict(f"step {step.step_id!r} is {step.status}", "step_terminal")
    if run.status.terminal and step.status != StepStatus.RUNNING:
        return _run_terminal(run)
    update = _STEP_UPDATES[context.event.event_type](context, step)
    if isinstance(update, Refusal):
        return update
    updated = step.model_copy(update={**update, "updated_at": context.now})
    event = context.record()
    return Transition(events=(event,), step=updated, result=EventResult(event=event, step=updated))


def _step_started(context: _Context, step: Step) -> dict[str, object] | Refusal:
    if step.retry_after is not None and step.retry_after > context.now:
        seconds = max(1, math.ceil((step.retry_after - context.now).total_seconds()))
        return Refusal(
            TooEarlyError(
                f"step {step.step_id!r} may not start before {step.retry_after.isoformat()}",
                retry_after=seconds,
            )
        )
    return {
        "status": StepStatus.RUNNING,
        "attempt": step.attempt + 1,
        "started_at": step.started_at or context.now,
        "retry_after": None,
    }


def _step_completed(context: _Context, step: Step) -> dict[str, object] | Refusal:
    data = context.event.data
    assert isinstance(data, StepCompletedData)
    return {"status": StepStatus.COMPLETED, "output": data.result, "completed_at": context.now}


def _step_failed(context: _Context, step: Step) -> dict[str, object] | Refusal:
    data = context.event.data
    assert isinstance(data, StepFailedData)
    return {"status": StepStatus.FAILED, "error": data.error, "completed_at": context.now}


def _step_retrying(context: _Context, step: Step) -> dict[str, object] | Refusal:
    data = context.event.data
    assert isinstance(data, StepRetryingData)
    return {"status": StepStatus.PENDING, "error": data.error, "retry_after": data.retry_after}


_STEP_UPDATES: dict[EventType, Callable[[_Context, Step], dict[str, object] | Refusal]] = {
    EventType.STEP_STARTED: _step_started,
    EventType.STEP_COMPLETED: _step_completed,
    EventType.STEP_FAILED: _step_failed,
    EventType.STEP_RETRYING: _step_retrying,
}


# ------------------------------------------------------------------------------ hooks


def _hook_created(context: _Context, run: WorkflowRun) -> Outcome:
    if run.status.terminal:
        return _run_terminal(run)
    if context.snapshot.hook is not None:
        return _conflict(f"hook {context.correlation_id!r} exists", "hook_exists")
    data = context.event.data
    assert isinstance(data, HookCreatedData)
    holder = context.snapshot.token_holder
    if holder is not None and holder.status == HookStatus.ACTIVE:
        conflict = HookConflictData(token=data.token, conflicting_run_id=holder.run_id)
        event = context.record(kind=EventType.HOOK_CONFLICT, data=conflict)
        return Transition(events=(event,), result=EventResult(event=event, run=run))
    hook = Hook(
        run_id=context.run_id,
        hook_id=context.correlation_id,
        token=data.token,
        metadata=data.metadata,
        is_webhook=data.is_webhook,
        is_system=data.is_system,
        created_at=context.now,
        spec_version=context.event.spec_version,
    )
    event = context.record()
    return Transition(events=(event,), hook=hook, result=EventResult(event=event, hook=hook))


def _hook_event(context: _Context, run: WorkflowRun) -> Outcome:
    resumed = context.snapshot.resumed
    if resumed is not None and context.event.event_type == EventType.HOOK_RECEIVED:
        return _resumed_again(context, resumed)
    hook = context.snapshot.hook
    if hook is None or hook.status != HookStatus.ACTIVE:
        return Refusal(HookNotFoundError(f"hook {context.correlation_id!r} not found"))
    if run.status.terminal:
        return _run_terminal(run)
    if context.event.event_type == EventType.HOOK_RECEIVED:
        update: dict[str, object] = {"received": hook.received + 1}
    else:
        update = {"status": HookStatus.DISPOSED, "disposed_at": context.now}
    updated = hook.model_copy(update=update)
    event = context.record()
    return Transition(events=(event,), hook=updated, result=EventResult(event=event, hook=updated))


def _resumed_again(context: _Context, resumed: Event) -> Outcome:
    """A resume id already recorded: the same hook's repeat appends nothing."""
    if resumed.correlation_id != context.correlation_id:
        return _conflict(
            f"resume {_resume_id(resumed)!r} is recorded for hook {resumed.correlation_id!r}",
            "resume_conflict",
        )
    return Transition(result=EventResult(event=resumed))


def _resume_id(event: Event) -> str | None:
    return event.data.resume_id if isinstance(event.data, HookReceivedData) else None


# ------------------------------------------------------------------------------ waits


def _wait_created(context: _Context, run: WorkflowRun) -> Outcome:
    if run.status.terminal:
        return _run_terminal(run)
    if context.snapshot.wait is not None:
        return _conflict(f"wait {context.correlation_id!r} exists", "wait_exists")
    data = context.event.data
    assert isinstance(data, WaitCreatedData)
    wait = Wait(
        run_id=context.run_id,
        wait_id=context.correlation_id,
        resume_at=data.resume_at,
        created_at=context.now,
    )
    event = context.record()
    return Transition(events=(event,), wait=wait, result=EventResult(event=event, wait=wait))


def _wait_completed(context: _Context, run: WorkflowRun) -> Outcome:
    wait = context.snapshot.wait
    if wait is None:
        return _refuse(
            WorldNotFoundError, f"wait {context.correlation_id!r} not found", "wait_not_found"
        )
    if wait.status == WaitStatus.COMPLETED:
        return _conflict(f"wait {wait.wait_id!r} is completed already", "wait_completed")
    if run.status.terminal:
        return _run_terminal(run)
    updated = wait.model_copy(update={"status": WaitStatus.COMPLETED, "completed_at": context.now})
    event = context.record()
    return Transition(events=(event,), wait=updated, result=EventResult(event=event, wait=updated))


_RULES: dict[EventType, Callable[[_Context, WorkflowRun], Outcome]] = {
    EventType.RUN_STARTED: _run_started,
    EventType.RUN_COMPLETED: _run_ended,
    EventType.RUN_FAILED: _run_ended,
    EventType.RUN_CANCELLED: _run_ended,
    EventType.ATTR_SET: _attr_set,
    EventType.STEP_CREATED: _step_created,
    EventType.STEP_STARTED: _step_event,
    EventType.STEP_COMPLETED: _step_event,
    EventType.STEP_FAILED: _step_event,
    EventType.STEP_RETRYING: _step_event,
    EventType.HOOK_CREATED: _hook_created,
    EventType.HOOK_RECEIVED: _hook_event,
    EventType.HOOK_DISPOSED: _hook_event,
    EventType.WAIT_CREATED: _wait_created,
    EventType.WAIT_COMPLETED: _wait_completed,
}
