"""Steps: create once, start (425 before retry_after), complete/fail/retry, terminal steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flowcraft.core.testing.world_suite._support import ev, new_run
from flowcraft.core.world import (
    Pagination,
    StepStatus,
    TooEarlyError,
    World,
    WorldConflictError,
    WorldNotFoundError,
)


async def _step(world: World, run_id: str, step_id: str = "s1") -> None:
    await world.events_create(
        run_id, ev("step_created", step_id, {"step_name": "add", "input": b"\x00in"})
    )


async def test_a_step_runs_its_lifecycle(world: World) -> None:
    run = await new_run(world)
    await _step(world, run.run_id)
    started = await world.events_create(run.run_id, ev("step_started", "s1"))
    assert started.step is not None
    assert (started.step.status, started.step.attempt) == (StepStatus.RUNNING, 1)
    assert started.step.started_at is not None
    done = await world.events_create(run.run_id, ev("step_completed", "s1", {"result": b"\x00r"}))
    assert done.step is not None
    assert (done.step.status, done.step.output) == (StepStatus.COMPLETED, b"\x00r")
    stored = await world.steps_get(run.run_id, "s1")
    assert stored.output == b"\x00r"
    bare = await world.steps_get(run.run_id, "s1", resolve_data="none")
    assert (bare.input, bare.output) == (None, None)


async def test_a_step_is_created_once(world: World) -> None:
    run = await new_run(world)
    await _step(world, run.run_id)
    with pytest.raises(WorldConflictError) as caught:
        await _step(world, run.run_id)
    assert caught.value.status == 409


@pytest.mark.parametrize("kind", ["step_started", "step_completed", "step_failed", "step_retrying"])
async def test_events_of_an_unknown_step_are_404(world: World, kind: str) -> None:
    run = await new_run(world)
    data = {
        "step_completed": {"result": b""},
        "step_failed": {"error": "e"},
        "step_retrying": {"error": "e"},
    }
    with pytest.raises(WorldNotFoundError) as caught:
        await world.events_create(run.run_id, ev(kind, "nope", data.get(kind)))
    assert caught.value.status == 404


@pytest.mark.parametrize(
    "ending", [("step_completed", {"result": b""}), ("step_failed", {"error": "x"})]
)
@pytest.mark.parametrize(
    "late",
    [
        ("step_started", None),
        ("step_completed", {"result": b"again"}),
        ("step_failed", {"error": "again"}),
        ("step_retrying", {"error": "again"}),
    ],
)
async def test_a_terminal_step_refuses_transitions(
    world: World, ending: tuple[str, object], late: tuple[str, object]
) -> None:
    run = await new_run(world)
    await _step(world, run.run_id)
    await world.events_create(run.run_id, ev("step_started", "s1"))
    await world.events_create(run.run_id, ev(ending[0], "s1", ending[1]))
    before = await world.steps_get(run.run_id, "s1")
    with pytest.raises(WorldConflictError) as caught:
        await world.events_create(run.run_id, ev(late[0], "s1", late[1]))
    assert caught.value.status == 409
    assert await world.steps_get(run.run_id, "s1") == before


async def test_step_started_before_retry_after_is_425(world: World) -> None:
    run = await new_run(world)
    await _step(world, run.run_id)
    await world.events_create(run.run_id, ev("step_started", "s1"))
    later = datetime.now(UTC) + timedelta(hours=1)
    retrying = await world.events_create(
        run.run_id, ev("step_retrying", "s1", {"error": "e", "retry_after": later})
    )
    assert retrying.step is not None
    assert (retrying.step.status, retrying.step.retry_after) == (StepStatus.PENDING, later)
    with pytest.raises(TooEarlyError) as caught:
        await world.events_create(run.run_id, ev("step_started", "s1"))
    assert caught.value.status == 425
    assert 3500 <= caught.value.retry_after <= 3600
    assert (await world.steps_get(run.run_id, "s1")).attempt == 1


async def test_step_started_after_retry_after_counts_the_attempt(world: World) -> None:
    run = await new_run(world)
    await _step(world, run.run_id)
    first = await world.events_create(run.run_id, ev("step_started", "s1"))
    past = datetime.now(UTC) - timedelta(seconds=1)
    await world.events_create(
        run.run_id, ev("step_retrying", "s1", {"error": "e", "retry_after": past})
    )
    second = await world.events_create(run.run_id, ev("step_started", "s1"))
    assert first.step is not None
    assert second.step is not None
    assert second.step.attempt == 2
    assert second.step.started_at == first.step.started_at
    assert second.step.retry_after is None


async def test_a_running_step_may_finish_after_its_run_was_cancelled(world: World) -> None:
    run = await new_run(world)
    await _step(world, run.run_id, "running")
    await _step(world, run.run_id, "pending")
    await world.events_create(run.run_id, ev("step_started", "running"))
    await world.events_create(run.run_id, ev("run_cancelled"))
    await world.events_create(run.run_id, ev("step_completed", "running", {"result": b""}))
    with pytest.raises(WorldConflictError):
        await world.events_create(run.run_id, ev("step_started", "pending"))


async def test_steps_list_pages_in_creation_order(world: World) -> None:
    run = await new_run(world)
    for index in range(5):
        await _step(world, run.run_id, f"s{index}")
    first = await world.steps_list(run.run_id, pagination=Pagination(limit=3))
    rest = await world.steps_list(run.run_id, pagination=Pagination(limit=3, cursor=first.cursor))
    assert [s.step_id for s in first.data + rest.data] == [f"s{i}" for i in range(5)]
    assert (first.has_more, rest.has_more) == (True, False)
