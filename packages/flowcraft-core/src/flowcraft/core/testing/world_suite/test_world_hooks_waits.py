"""Hooks (tokens unique among live hooks, several payloads, 404 once disposed) and waits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flowcraft.core.testing.world_suite._support import all_events, ev, new_run
from flowcraft.core.world import (
    EventType,
    HookConflictData,
    HookNotFoundError,
    HookStatus,
    WaitStatus,
    World,
    WorldConflictError,
    WorldNotFoundError,
)


async def test_a_hook_takes_several_payloads_until_disposed(world: World) -> None:
    run = await new_run(world)
    made = await world.events_create(
        run.run_id, ev("hook_created", "h1", {"token": "tok-a", "metadata": b"\x00m"})
    )
    assert made.hook is not None
    assert made.hook.status == HookStatus.ACTIVE
    for payload in (b"one", b"\x00two", b"three"):
        await world.events_create(run.run_id, ev("hook_received", "h1", {"payload": payload}))
    received = [
        e for e in await all_events(world, run.run_id) if e.event_type == EventType.HOOK_RECEIVED
    ]
    assert [e.data.payload for e in received] == [b"one", b"\x00two", b"three"]  # type: ignore[union-attr]
    await world.events_create(run.run_id, ev("hook_disposed", "h1"))
    assert (await world.hooks_get(run.run_id, "h1")).status == HookStatus.DISPOSED
    with pytest.raises(HookNotFoundError) as caught:
        await world.events_create(run.run_id, ev("hook_received", "h1", {"payload": b"late"}))
    assert caught.value.status == 404
    with pytest.raises(HookNotFoundError):
        await world.events_create(run.run_id, ev("hook_disposed", "h1"))
    with pytest.raises(HookNotFoundError):
        await world.hooks_get_by_token("tok-a")


async def test_a_token_held_by_a_live_hook_gives_a_hook_conflict_event(world: World) -> None:
    holder = await new_run(world)
    await world.events_create(holder.run_id, ev("hook_created", "h1", {"token": "tok-b"}))
    other = await new_run(world)
    result = await world.events_create(other.run_id, ev("hook_created", "h1", {"token": "tok-b"}))
    assert result.hook is None
    assert result.event is not None
    assert result.event.event_type == EventType.HOOK_CONFLICT
    assert result.event.data == HookConflictData(
        token="tok-b",  # noqa: S106 - a hook token, not a password
        conflicting_run_id=holder.run_id,
    )
    assert (await world.hooks_get_by_token("tok-b")).run_id == holder.run_id
    logged = [e.event_type for e in await all_events(world, other.run_id)]
    assert logged[-1] == EventType.HOOK_CONFLICT
    with pytest.raises(HookNotFoundError):
        await world.events_create(other.run_id, ev("hook_received", "h1", {"payload": b"x"}))


async def test_the_same_hook_created_twice_is_409(world: World) -> None:
    run = await new_run(world)
    await world.events_create(run.run_id, ev("hook_created", "h1", {"token": "tok-c"}))
    with pytest.raises(WorldConflictError) as caught:
        await world.events_create(run.run_id, ev("hook_created", "h1", {"token": "tok-c"}))
    assert caught.value.status == 409


async def test_a_disposed_token_can_be_taken_again(world: World) -> None:
    run = await new_run(world)
    await world.events_create(run.run_id, ev("hook_created", "h1", {"token": "tok-d"}))
    await world.events_create(run.run_id, ev("hook_disposed", "h1"))
    again = await world.events_create(run.run_id, ev("hook_created", "h2", {"token": "tok-d"}))
    assert again.hook is not None
    assert (await world.hooks_get_by_token("tok-d")).hook_id == "h2"


async def test_a_wait_completes_exactly_once(world: World) -> None:
    run = await new_run(world)
    resume_at = datetime.now(UTC) + timedelta(seconds=5)
    made = await world.events_create(run.run_id, ev("wait_created", "w1", {"resume_at": resume_at}))
    assert made.wait is not None
    assert (made.wait.status, made.wait.resume_at) == (WaitStatus.WAITING, resume_at)
    with pytest.raises(WorldConflictError):
        await world.events_create(run.run_id, ev("wait_created", "w1", {"resume_at": resume_at}))
    done = await world.events_create(run.run_id, ev("wait_completed", "w1"))
    assert done.wait is not None
    assert done.wait.status == WaitStatus.COMPLETED
    with pytest.raises(WorldConflictError) as caught:
        await world.events_create(run.run_id, ev("wait_completed", "w1"))
    assert caught.value.status == 409
    completions = [
        e for e in await all_events(world, run.run_id) if e.event_type == EventType.WAIT_COMPLETED
    ]
    assert len(completions) == 1
    assert (await world.waits_get(run.run_id, "w1")).status == WaitStatus.COMPLETED


async def test_completing_an_unknown_wait_is_404(world: World) -> None:
    run = await new_run(world)
    with pytest.raises(WorldNotFoundError):
        await world.events_create(run.run_id, ev("wait_completed", "nope"))


async def test_a_resume_id_is_recorded_once_per_run(world: World) -> None:
    run = await new_run(world)
    for hook_id in ("h1", "h2"):
        await world.events_create(
            run.run_id, ev("hook_created", hook_id, {"token": f"r-{hook_id}"})
        )
    resume = {"payload": b"\x00p", "resume_id": "res-1"}
    first = await world.events_create(run.run_id, ev("hook_received", "h1", resume))
    again = await world.events_create(run.run_id, ev("hook_received", "h1", resume))
    assert first.event is not None
    assert again.event == first.event  # the recorded event, nothing appended
    with pytest.raises(WorldConflictError) as caught:
        await world.events_create(run.run_id, ev("hook_received", "h2", resume))
    assert caught.value.code == "resume_conflict"
    kinds = [event.event_type for event in await all_events(world, run.run_id)]
    assert kinds.count(EventType.HOOK_RECEIVED) == 1
    assert (await world.hooks_get(run.run_id, "h1")).received == 1
