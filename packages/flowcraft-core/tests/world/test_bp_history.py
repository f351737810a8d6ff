"""Planning a run's World history (``_bp_history``): forward only, idempotent, pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flowcraft.core.world import (
    EventType,
    Hook,
    HookStatus,
    RunStatus,
    Step,
    StepStatus,
    Wait,
    WaitStatus,
    WorkflowRun,
)
from flowcraft.core.world._bp_history import (
    entity_id,
    is_step,
    plan_hook,
    plan_run_end,
    plan_run_start,
    plan_step,
    plan_wait,
    projection_order,
    trusted,
)
from flowcraft.core.world._bp_journal import Trace

_T = EventType
_NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _step(status: StepStatus, attempt: int) -> Step:
    return Step(
        run_id="r",
        step_id="A",
        step_name="A",
        status=status,
        attempt=attempt,
        created_at=_NOW,
        updated_at=_NOW,
    )


def _types(events: list[Any]) -> list[EventType]:
    return [event.event_type for event in events]


def test_entity_ids_name_the_node_and_its_frame() -> None:
    assert entity_id('["n","","A"]') == "A"
    assert entity_id('["n","L#1/0","A"]') == "A@L#1/0"
    assert entity_id('["a","","A",0]') is None
    assert entity_id("k") is None


def test_a_node_that_succeeded_at_once_is_created_started_and_completed() -> None:
    node = {"status": "succeeded", "attempt": 1, "input": {"x": 1}, "output": 2}
    events = plan_step("A", node, Trace(), None)
    assert _types(events) == [_T.STEP_CREATED, _T.STEP_STARTED, _T.STEP_COMPLETED]
    assert events[0].data.step_name == "A"  # type: ignore[union-attr]
    assert events[2].data.result == b"2"  # type: ignore[union-attr]


def test_a_catch_up_replays_each_retry_with_its_own_error() -> None:
    trace = Trace(errors={1: {"message": "first"}})
    node = {"status": "failed", "attempt": 2, "error": {"message": "last"}}
    events = plan_step("A", node, trace, _step(StepStatus.RUNNING, 1))
    assert _types(events) == [_T.STEP_RETRYING, _T.STEP_STARTED, _T.STEP_FAILED]
    assert events[0].data.error == {"message": "first"}  # type: ignore[union-attr]
    assert events[2].data.error == {"message": "last"}  # type: ignore[union-attr]


def test_a_retry_that_waits_for_its_timer_is_retrying_until_its_due_time() -> None:
    node = {"status": "pending", "attempt": 1, "error": {"m": 1}, "due_at": 1_800_000_000.0}
    (event,) = plan_step("A", node, Trace(), _step(StepStatus.RUNNING, 1))
    assert event.event_type is _T.STEP_RETRYING
    assert event.data.retry_after == datetime.fromtimestamp(1_800_000_000, UTC)  # type: ignore[union-attr]
    assert plan_step("A", node, Trace(), _step(StepStatus.PENDING, 1)) == []


def test_a_step_never_goes_back() -> None:
    running = {"status": "running", "attempt": 1}
    assert plan_step("A", running, Trace(), _step(StepStatus.COMPLETED, 1)) == []
    assert plan_step("A", running, Trace(), _step(StepStatus.RUNNING, 1)) == []
    assert plan_step("A", running, Trace(), _step(StepStatus.RUNNING, 2)) == []
    cancelled = {"status": "cancelled", "attempt": 1}
    (failed,) = plan_step("A", cancelled, Trace(), _step(StepStatus.RUNNING, 1))
    assert failed.event_type is _T.STEP_FAILED
    assert failed.model_dump()["data"]["error"]["type"] == "cancelled"


def test_what_a_node_is_in_the_world() -> None:
    assert is_step({"status": "running", "attempt": 1}, Trace())
    assert not is_step({"status": "awaiting", "attempt": 0, "token": "t"}, Trace())
    assert not is_step({"status": "succeeded", "attempt": 1}, Trace(slept=True))


def test_a_wait_node_is_a_hook_created_received_and_disposed() -> None:
    awaiting = {"status": "awaiting", "attempt": 0, "token": "r:W"}
    (created,) = plan_hook("W", awaiting, None)
    assert (created.event_type, created.data.token) == (_T.HOOK_CREATED, "r:W")  # type: ignore[union-attr]
    hook = Hook(run_id="r", hook_id="W", token="r:W", created_at=_NOW)
    assert plan_hook("W", awaiting, hook) == []
    resumed = {**awaiting, "status": "succeeded", "resumed": True, "output": "yes"}
    assert _types(plan_hook("W", resumed, hook)) == [_T.HOOK_RECEIVED, _T.HOOK_DISPOSED]
    cancelled = {**awaiting, "status": "cancelled"}
    assert _types(plan_hook("W", cancelled, hook)) == [_T.HOOK_DISPOSED]
    disposed = hook.model_copy(update={"status": HookStatus.DISPOSED})
    assert plan_hook("W", resumed, disposed) == []


def test_a_sleep_is_a_wait_created_then_completed_once() -> None:
    sleeping = {"status": "sleeping", "attempt": 1, "due_at": 1_800_000_000.0}
    (created,) = plan_wait("Z", sleeping, None)
    assert created.data.resume_at == datetime.fromtimestamp(1_800_000_000, UTC)  # type: ignore[union-attr]
    wait = Wait(run_id="r", wait_id="Z", resume_at=_NOW, created_at=_NOW)
    woke = {**sleeping, "status": "succeeded"}
    assert _types(plan_wait("Z", woke, wait)) == [_T.WAIT_COMPLETED]
    done = wait.model_copy(update={"status": WaitStatus.COMPLETED})
    assert plan_wait("Z", woke, done) == []


def test_the_run_starts_once_and_ends_with_the_record() -> None:
    run = WorkflowRun(
        run_id="r",
        status=RunStatus.PENDING,
        workflow_name="bp",
        deployment_id="d",
        created_at=_NOW,
        updated_at=_NOW,
    )
    assert _types(plan_run_start("awaiting", run)) == [_T.RUN_STARTED]
    assert plan_run_start("pending", run) == []
    started = run.model_copy(update={"status": RunStatus.RUNNING})
    assert plan_run_start("completed", started) == []
    assert _types(plan_run_end("completed", 1, [])) == [_T.RUN_COMPLETED]
    assert _types(plan_run_end("failed", None, [{"m": 1}])) == [_T.RUN_FAILED]
    assert _types(plan_run_end("cancelled", None, [])) == [_T.RUN_CANCELLED]
    assert plan_run_end("awaiting", None, []) == []


def test_nodes_a_save_moved_on_come_before_the_nodes_it_started() -> None:
    ended = projection_order('["n","","Z"]', {"status": "succeeded", "attempt": 1})
    started = projection_order('["n","","A"]', {"status": "running", "attempt": 1})
    resumed = projection_order('["n","","W"]', {"status": "succeeded", "resumed": True})
    assert ended < started
    assert resumed < started


# --------------------------------------------------------------------------- remembered steps


def test_an_unknown_step_is_guessed_absent_only_for_a_plan_that_creates_it() -> None:
    running = {"status": "running", "attempt": 1}
    assert trusted(None, plan_step("A", running, Trace(), None))
    assert not trusted(None, [])


def test_the_end_of_the_remembered_running_attempt_is_trusted() -> None:
    remembered = _step(StepStatus.RUNNING, 1)
    for status in ("succeeded", "failed", "cancelled"):
        plan = plan_step("A", {"status": status, "attempt": 1}, Trace(), remembered)
        assert trusted(remembered, plan), status


def test_a_plan_that_starts_or_retries_an_attempt_is_read_first() -> None:
    """The World accepts a start or a retry from a later attempt too: never from memory."""
    remembered = _step(StepStatus.RUNNING, 1)
    retried = plan_step("A", {"status": "running", "attempt": 2}, Trace(), remembered)
    assert [e.event_type for e in retried] == [_T.STEP_RETRYING, _T.STEP_STARTED]
    assert not trusted(remembered, retried)
    pending = plan_step("A", {"status": "pending", "attempt": 1}, Trace(), remembered)
    assert not trusted(remembered, pending)
    waiting = _step(StepStatus.PENDING, 1)
    assert not trusted(
        waiting, plan_step("A", {"status": "succeeded", "attempt": 2}, Trace(), waiting)
    )


def test_a_remembered_ended_step_needs_nothing() -> None:
    ended = _step(StepStatus.COMPLETED, 1)
    assert trusted(ended, plan_step("A", {"status": "succeeded", "attempt": 1}, Trace(), ended))
