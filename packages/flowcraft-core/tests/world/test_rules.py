"""The pure transition rules (``_rules.decide``): every guard, and invariants under any order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flowcraft.core.world import (
    EventType,
    HookCreatedData,
    HookNotFoundError,
    HookReceivedData,
    HookStatus,
    NewEvent,
    Policy,
    Refusal,
    RunCompletedData,
    RunCreatedData,
    RunExpiredError,
    RunStatus,
    Snapshot,
    StepCompletedData,
    StepCreatedData,
    StepRetryingData,
    StepStatus,
    TooEarlyError,
    Transition,
    WaitCreatedData,
    WaitStatus,
    WorldConflictError,
    WorldNotFoundError,
    WorldRequestError,
    decide,
    reads,
)
from hypothesis import given, settings
from hypothesis import strategies as st

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = Policy()
CREATED = RunCreatedData(workflow_name="wf", deployment_id="d", input=b"\x00in")


def ev(kind: str, correlation_id: str | None = None, data: object = None) -> NewEvent:
    return NewEvent.model_validate(
        {"event_type": kind, "correlation_id": correlation_id, "data": data}
    )


class Model:
    """Applies transitions to in-memory snapshots, as a World would (no storage)."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.steps: dict[str, object] = {}
        self.hooks: dict[str, object] = {}
        self.waits: dict[str, object] = {}
        self.tokens: dict[str, object] = {}
        self.events: list[int] = []

    def apply(self, event: NewEvent, now: datetime = NOW, policy: Policy = POLICY) -> object:
        key = event.correlation_id or ""
        need = reads(event)
        token_holder = self.tokens.get(need.token) if need.token else None
        snapshot = Snapshot(
            run=self.snapshot.run,
            last_sequence=self.snapshot.last_sequence,
            step=self.steps.get(key) if need.step else None,  # type: ignore[arg-type]
            hook=self.hooks.get(key) if need.hook else None,  # type: ignore[arg-type]
            wait=self.waits.get(key) if need.wait else None,  # type: ignore[arg-type]
            token_holder=token_holder,  # type: ignore[arg-type]
            run_hooks=tuple(self.hooks.values()) if need.run_hooks else (),  # type: ignore[arg-type]
        )
        outcome = decide(snapshot, "r1", event, now=now, policy=policy)
        if isinstance(outcome, Refusal):
            return outcome.error
        self._commit(outcome)
        return outcome

    def _commit(self, transition: Transition) -> None:
        self.events += [e.sequence for e in transition.events]
        run = transition.run or self.snapshot.run
        last = transition.events[-1].sequence if transition.events else self.snapshot.last_sequence
        self.snapshot = Snapshot(run=run, last_sequence=last)
        if transition.step:
            self.steps[transition.step.step_id] = transition.step
        for hook in (*transition.released, *([transition.hook] if transition.hook else [])):
            self.hooks[hook.hook_id] = hook
            if hook.status == HookStatus.ACTIVE:
                self.tokens[hook.token] = hook
            elif self.tokens.get(hook.token) == hook.model_copy(
                update={"status": HookStatus.ACTIVE, "disposed_at": None}
            ):
                del self.tokens[hook.token]
        if transition.wait:
            self.waits[transition.wait.wait_id] = transition.wait


def started() -> Model:
    model = Model()
    model.apply(ev("run_created", data=CREATED))
    model.apply(ev("run_started"))
    return model


def test_run_created_makes_a_pending_run_at_sequence_1() -> None:
    outcome = Model().apply(ev("run_created", data=CREATED))
    assert isinstance(outcome, Transition)
    assert outcome.run is not None
    assert outcome.run.status == RunStatus.PENDING
    assert [e.sequence for e in outcome.events] == [1]


def test_run_created_again_is_idempotent_with_the_same_content_and_409_otherwise() -> None:
    model = started()
    same = model.apply(ev("run_created", data=CREATED))
    assert isinstance(same, Transition)
    assert same.events == ()
    other = model.apply(ev("run_created", data=CREATED.model_copy(update={"input": b"x"})))
    assert isinstance(other, WorldConflictError)
    assert other.code == "run_exists"


def test_events_on_a_missing_run_are_404_but_run_started_with_data_recreates_it() -> None:
    assert isinstance(Model().apply(ev("run_started")), WorldNotFoundError)
    outcome = Model().apply(ev("run_started", data=CREATED))
    assert isinstance(outcome, Transition)
    assert [(e.sequence, e.event_type) for e in outcome.events] == [
        (1, EventType.RUN_CREATED),
        (2, EventType.RUN_STARTED),
    ]
    assert outcome.run is not None
    assert outcome.run.status == RunStatus.RUNNING


def test_run_started_twice_appends_nothing() -> None:
    model = started()
    again = model.apply(ev("run_started"))
    assert isinstance(again, Transition)
    assert again.events == ()


@pytest.mark.parametrize(
    "late",
    [
        ev("run_started"),
        ev("run_completed", data=RunCompletedData(output=b"")),
        ev("step_created", "s9", StepCreatedData(step_name="x", input=b"")),
        ev("hook_created", "h9", HookCreatedData(token="t9")),
        ev("wait_created", "w9", WaitCreatedData(resume_at=NOW)),
    ],
)
def test_a_terminal_run_refuses_transitions(late: NewEvent) -> None:
    model = started()
    model.apply(ev("run_completed", data=RunCompletedData(output=b"out")))
    refused = model.apply(late)
    assert isinstance(refused, WorldConflictError)
    assert refused.code == "run_terminal"


def test_run_cancelled_is_idempotent_on_a_cancelled_run_only() -> None:
    model = started()
    assert isinstance(model.apply(ev("run_cancelled")), Transition)
    again = model.apply(ev("run_cancelled"))
    assert isinstance(again, Transition)
    assert again.events == ()
    done = started()
    done.apply(ev("run_completed", data=RunCompletedData(output=b"")))
    assert isinstance(done.apply(ev("run_cancelled")), WorldConflictError)


def test_a_run_that_ends_disposes_its_hooks() -> None:
    model = started()
    model.apply(ev("hook_created", "h1", HookCreatedData(token="tok")))
    outcome = model.apply(ev("run_failed", data={"error": "boom"}))
    assert isinstance(outcome, Transition)
    assert [h.status for h in outcome.released] == [HookStatus.DISPOSED]
    assert "tok" not in model.tokens


def test_expired_run_is_410() -> None:
    model = started()
    policy = Policy(run_retention=timedelta(seconds=10))
    model.apply(ev("run_completed", data=RunCompletedData(output=b"")), policy=policy)
    later = NOW + timedelta(seconds=11)
    assert isinstance(model.apply(ev("run_cancelled"), now=later), RunExpiredError)


def test_step_lifecycle_and_guards() -> None:
    model = started()
    assert isinstance(model.apply(ev("step_started", "s1")), WorldNotFoundError)
    model.apply(ev("step_created", "s1", StepCreatedData(step_name="a", input=b"")))
    dup = model.apply(ev("step_created", "s1", StepCreatedData(step_name="a", input=b"")))
    assert isinstance(dup, WorldConflictError)
    assert dup.code == "step_exists"
    first = model.apply(ev("step_started", "s1"))
    assert isinstance(first, Transition)
    assert first.step is not None
    assert (first.step.status, first.step.attempt) == (StepStatus.RUNNING, 1)
    retry_at = NOW + timedelta(seconds=30)
    model.apply(ev("step_retrying", "s1", StepRetryingData(error="e", retry_after=retry_at)))
    early = model.apply(ev("step_started", "s1"), now=NOW + timedelta(seconds=10))
    assert isinstance(early, TooEarlyError)
    assert early.status == 425
    assert early.retry_after == 20
    second = model.apply(ev("step_started", "s1"), now=retry_at)
    assert isinstance(second, Transition)
    assert second.step is not None
    assert second.step.attempt == 2
    assert second.step.started_at == NOW
    model.apply(ev("step_completed", "s1", StepCompletedData(result=b"\x00")))
    twice = model.apply(ev("step_completed", "s1", StepCompletedData(result=b"")))
    assert isinstance(twice, WorldConflictError)
    assert twice.code == "step_terminal"


def test_a_running_step_may_finish_after_its_run_ended_a_pending_one_may_not() -> None:
    model = started()
    for step in ("run", "wait"):
        model.apply(ev("step_created", step, StepCreatedData(step_name="a", input=b"")))
    model.apply(ev("step_started", "run"))
    model.apply(ev("run_cancelled"))
    done = model.apply(ev("step_completed", "run", StepCompletedData(result=b"")))
    assert isinstance(done, Transition)
    assert isinstance(model.apply(ev("step_started", "wait")), WorldConflictError)


def test_hook_tokens_are_unique_among_live_hooks() -> None:
    model = started()
    model.apply(ev("hook_created", "h1", HookCreatedData(token="tok")))
    conflict = model.apply(ev("hook_created", "h2", HookCreatedData(token="tok")))
    assert isinstance(conflict, Transition)
    assert conflict.hook is None
    assert [e.event_type for e in conflict.events] == [EventType.HOOK_CONFLICT]
    assert isinstance(
        model.apply(ev("hook_created", "h1", HookCreatedData(token="tok"))), WorldConflictError
    )
    model.apply(ev("hook_disposed", "h1"))
    reused = model.apply(ev("hook_created", "h3", HookCreatedData(token="tok")))
    assert isinstance(reused, Transition)
    assert reused.hook is not None


def test_hook_events_need_a_live_hook() -> None:
    model = started()
    payload = HookReceivedData(payload=b"p")
    assert isinstance(model.apply(ev("hook_received", "h1", payload)), HookNotFoundError)
    model.apply(ev("hook_created", "h1", HookCreatedData(token="tok")))
    for _ in range(3):
        assert isinstance(model.apply(ev("hook_received", "h1", payload)), Transition)
    model.apply(ev("hook_disposed", "h1"))
    assert isinstance(model.apply(ev("hook_disposed", "h1")), HookNotFoundError)


def test_wait_completed_exactly_once() -> None:
    model = started()
    assert isinstance(model.apply(ev("wait_completed", "w1")), WorldNotFoundError)
    model.apply(ev("wait_created", "w1", WaitCreatedData(resume_at=NOW)))
    done = model.apply(ev("wait_completed", "w1"))
    assert isinstance(done, Transition)
    assert done.wait is not None
    assert done.wait.status == WaitStatus.COMPLETED
    again = model.apply(ev("wait_completed", "w1"))
    assert isinstance(again, WorldConflictError)
    assert again.code == "wait_completed"


def test_hook_conflict_cannot_be_asked_for() -> None:
    refused = started().apply(ev("hook_conflict", "h1", {"token": "t"}))
    assert isinstance(refused, WorldRequestError)
    assert refused.status == 400


def test_new_event_validates_its_shape() -> None:
    with pytest.raises(ValueError, match="needs a correlation_id"):
        ev("step_started")
    with pytest.raises(ValueError, match="carries StepCompletedData"):
        ev("step_completed", "s1", StepCreatedData(step_name="a", input=b""))


_EVENTS = st.sampled_from(
    [
        ev("run_started"),
        ev("run_completed", data=RunCompletedData(output=b"o")),
        ev("run_cancelled"),
        *(ev("step_created", s, StepCreatedData(step_name="a", input=b"")) for s in "ab"),
        *(ev("step_started", s) for s in "ab"),
        *(ev("step_completed", s, StepCompletedData(result=b"")) for s in "ab"),
        *(ev("step_retrying", s, StepRetryingData(error="e")) for s in "ab"),
        *(ev("hook_created", h, HookCreatedData(token="t")) for h in "hk"),
        *(ev("hook_received", h, HookReceivedData(payload=b"")) for h in "hk"),
        *(ev("hook_disposed", h) for h in "hk"),
        ev("wait_created", "w", WaitCreatedData(resume_at=NOW)),
        ev("wait_completed", "w"),
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_EVENTS, max_size=40))
def test_any_order_keeps_the_invariants(events: list[NewEvent]) -> None:
    model = Model()
    model.apply(ev("run_created", data=CREATED))
    ended = False
    committed: list[str | None] = []
    for event in events:
        before = model.snapshot.run
        outcome = model.apply(event)
        assert before is not None
        if ended and isinstance(outcome, Transition) and outcome.run is not None:
            assert outcome.run == before or outcome.events == ()  # a terminal run never moves
        finishes = event.event_type in (EventType.STEP_COMPLETED, EventType.WAIT_COMPLETED)
        if finishes and isinstance(outcome, Transition) and outcome.events:
            committed.append(event.correlation_id)
        ended = ended or (model.snapshot.run is not None and model.snapshot.run.status.terminal)
        active = [h for h in model.hooks.values() if h.status == HookStatus.ACTIVE]  # type: ignore[attr-defined]
        assert len({h.token for h in active}) == len(active)  # type: ignore[attr-defined]
    assert model.events == list(range(1, len(model.events) + 1))  # dense, ordered
    assert len(committed) == len(set(committed))  # a step or a wait completes at most once
