"""Runs: creation (minted and client-supplied ids), start, the terminal guards, 404/410/400."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from flowcraft.core.testing.world_memory import WorldFactory
from flowcraft.core.testing.world_suite._support import all_events, created, ev, new_run
from flowcraft.core.world import (
    EventType,
    HookNotFoundError,
    RunExpiredError,
    RunStatus,
    World,
    WorldConflictError,
    WorldNotFoundError,
    WorldRequestError,
)


async def test_run_created_mints_an_id_and_a_pending_run(world: World) -> None:
    result = await world.events_create(None, created(payload=b"a\x00b"))
    assert result.run is not None
    assert result.event is not None
    assert (result.run.status, result.event.sequence) == (RunStatus.PENDING, 1)
    stored = await world.runs_get(result.run.run_id)
    assert stored.input == b"a\x00b"


async def test_a_client_supplied_run_id_is_idempotent_for_the_same_content(world: World) -> None:
    first = await world.events_create("wrun_client_1", created())
    again = await world.events_create("wrun_client_1", created())
    assert first.run is not None
    assert again.run is not None
    assert again.run.run_id == first.run.run_id == "wrun_client_1"
    assert again.event is None
    assert len(await all_events(world, "wrun_client_1")) == 1
    with pytest.raises(WorldConflictError) as caught:
        await world.events_create("wrun_client_1", created(payload=b"other"))
    assert caught.value.status == 409


async def test_run_started_is_idempotent(world: World) -> None:
    run = await new_run(world)
    again = await world.events_create(run.run_id, ev("run_started"))
    assert again.event is None
    assert again.run is not None
    assert again.run.status == RunStatus.RUNNING
    kinds = [e.event_type for e in await all_events(world, run.run_id)]
    assert kinds == [EventType.RUN_CREATED, EventType.RUN_STARTED]


async def test_run_started_with_the_run_data_recreates_a_lost_run(world: World) -> None:
    data = created().data
    result = await world.events_create("wrun_lost", ev("run_started", data=data))
    assert result.run is not None
    assert result.run.status == RunStatus.RUNNING
    kinds = [e.event_type for e in await all_events(world, "wrun_lost")]
    assert kinds == [EventType.RUN_CREATED, EventType.RUN_STARTED]


@pytest.mark.parametrize("kind", ["run_started", "step_created", "wait_completed", "hook_received"])
async def test_events_on_an_unknown_run_are_404(world: World, kind: str) -> None:
    data = {"step_created": {"step_name": "s", "input": b""}, "hook_received": {"payload": b""}}
    correlation = None if kind == "run_started" else "x1"
    with pytest.raises(WorldNotFoundError) as caught:
        await world.events_create("wrun_nobody", ev(kind, correlation, data.get(kind)))
    assert caught.value.status == 404
    with pytest.raises(WorldNotFoundError):
        await world.runs_get("wrun_nobody")


async def test_a_run_id_is_required_except_for_run_created(world: World) -> None:
    with pytest.raises(WorldRequestError) as caught:
        await world.events_create(None, ev("run_started"))
    assert caught.value.status == 400


ENDINGS = {
    "run_completed": ("run_completed", {"output": b"\x00out"}),
    "run_failed": ("run_failed", {"error": {"message": "boom"}}),
    "run_cancelled": ("run_cancelled", None),
}
LATE = [
    ("run_started", None, None),
    ("run_completed", None, {"output": b""}),
    ("run_failed", None, {"error": "late"}),
    ("step_created", "s1", {"step_name": "s", "input": b""}),
    ("hook_created", "h1", {"token": "late-token"}),
    ("wait_created", "w1", {"resume_at": "2030-01-01T00:00:00Z"}),
    ("attr_set", None, {"changes": {"k": "v"}}),
]


@pytest.mark.parametrize("ending", sorted(ENDINGS))
@pytest.mark.parametrize(("kind", "correlation", "data"), LATE)
async def test_a_terminal_run_refuses_every_transition(
    world: World, ending: str, kind: str, correlation: str | None, data: object
) -> None:
    run = await new_run(world)
    kind_end, data_end = ENDINGS[ending]
    await world.events_create(run.run_id, ev(kind_end, None, data_end))
    before = await all_events(world, run.run_id)
    with pytest.raises(WorldConflictError) as caught:
        await world.events_create(run.run_id, ev(kind, correlation, data))
    assert caught.value.status == 409
    assert await all_events(world, run.run_id) == before
    assert (await world.runs_get(run.run_id)).status == ending.removeprefix("run_")


async def test_run_cancelled_twice_is_idempotent_but_not_after_completion(world: World) -> None:
    run = await new_run(world)
    await world.events_create(run.run_id, ev("run_cancelled", data={"reason": "user"}))
    again = await world.events_create(run.run_id, ev("run_cancelled"))
    assert again.event is None
    assert again.run is not None
    assert again.run.status == RunStatus.CANCELLED
    done = await new_run(world)
    await world.events_create(done.run_id, ev("run_completed", data={"output": b""}))
    with pytest.raises(WorldConflictError):
        await world.events_create(done.run_id, ev("run_cancelled"))


async def test_a_run_that_ends_disposes_its_hooks_and_frees_their_tokens(world: World) -> None:
    run = await new_run(world)
    await world.events_create(run.run_id, ev("hook_created", "h1", {"token": "tok-end"}))
    assert (await world.hooks_get_by_token("tok-end")).run_id == run.run_id
    await world.events_create(run.run_id, ev("run_completed", data={"output": b""}))
    with pytest.raises(HookNotFoundError):
        await world.hooks_get_by_token("tok-end")
    other = await new_run(world)
    taken = await world.events_create(other.run_id, ev("hook_created", "h1", {"token": "tok-end"}))
    assert taken.hook is not None


async def test_attr_set_sets_and_removes_attributes(world: World) -> None:
    run = await new_run(world)
    await world.events_create(run.run_id, ev("attr_set", data={"changes": {"a": "1", "b": "2"}}))
    await world.events_create(run.run_id, ev("attr_set", data={"changes": {"a": None}}))
    assert (await world.runs_get(run.run_id)).attributes == {"b": "2"}


async def test_resolve_data_none_leaves_out_payloads(world: World) -> None:
    run = await new_run(world)
    await world.events_create(run.run_id, ev("run_completed", data={"output": b"\x00secret"}))
    full = await world.runs_get(run.run_id)
    bare = await world.runs_get(run.run_id, resolve_data="none")
    assert (full.input, full.output) == (b"\x00input", b"\x00secret")
    assert (bare.input, bare.output) == (None, None)
    assert bare.status == RunStatus.COMPLETED
    events = await world.events_list(run.run_id, resolve_data="none")
    assert [e.data for e in events.data] == [None, None, None]
    assert [e.event_type for e in events.data][-1] == EventType.RUN_COMPLETED


async def test_runs_list_filters_by_status_and_workflow(world: World) -> None:
    pending = await new_run(world, started=False)
    running = await new_run(world)
    listed = await world.runs_list(status=RunStatus.RUNNING, workflow_name="suite")
    ids = [run.run_id for run in listed.data]
    assert running.run_id in ids
    assert pending.run_id not in ids


@pytest.mark.flowcraft_world_requires("run_expiry")
async def test_an_expired_run_is_410(world_factory: WorldFactory, world_namespace: str) -> None:
    world = await world_factory.create(world_namespace, run_retention=timedelta(seconds=0.2))
    async with world:
        run = await new_run(world)
        await world.events_create(run.run_id, ev("run_completed", data={"output": b""}))
        await asyncio.sleep(0.3)  # the retention must pass; the guard is what is tested
        with pytest.raises(RunExpiredError) as caught:
            await world.events_create(run.run_id, ev("run_cancelled"))
        assert caught.value.status == 410
    await world_factory.destroy(world)


async def test_an_attr_set_with_a_correlation_id_is_written_once(world: World) -> None:
    run = await new_run(world)
    change = {"changes": {"k": "v"}, "writer": {"type": "workflow"}}
    await world.events_create(run.run_id, ev("attr_set", "attr-1", change))
    with pytest.raises(WorldConflictError) as caught:
        await world.events_create(run.run_id, ev("attr_set", "attr-1", change))
    assert caught.value.status == 409
    await world.events_create(run.run_id, ev("attr_set", data={"changes": {"k": "w"}}))
    await world.events_create(run.run_id, ev("attr_set", data={"changes": {"k": "x"}}))
    stored = await world.runs_get(run.run_id)
    assert stored.attributes == {"k": "x"}
    kinds = [event.event_type for event in await all_events(world, run.run_id)]
    assert kinds.count(EventType.ATTR_SET) == 3
