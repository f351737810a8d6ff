"""Workflows end to end through the World, driven by the suite's replaying runtime."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from flowcraft.core.testing.world_suite._runtime import Runtime, Step, Workflow, decode
from flowcraft.core.testing.world_suite._support import all_events, eventually
from flowcraft.core.world import (
    EventType,
    HookNotFoundError,
    RunStatus,
    StepRetryingData,
    World,
)


async def _add(a: int, b: int) -> int:
    return a + b


async def test_addition(world: World) -> None:
    async def addition(wf: Workflow, numbers: list[int]) -> int:
        return int(await wf.step("add", numbers[0], numbers[1]))

    runtime = Runtime(world, workflows={"addition": addition}, steps={"add": Step(_add)})
    run_id = await runtime.start("addition", [2, 3])
    run = await runtime.finished(run_id)
    assert run.status == RunStatus.COMPLETED
    assert decode(run.output) == 5


@pytest.mark.parametrize("duplicate", [False, True], ids=["once", "every-message-twice"])
async def test_twenty_steps_each_committed_once(world: World, duplicate: bool) -> None:
    async def twenty(wf: Workflow, start: int) -> list[int]:
        return [int(await wf.step("add", start, index)) for index in range(20)]

    runtime = Runtime(
        world, workflows={"twenty": twenty}, steps={"add": Step(_add)}, duplicate=duplicate
    )
    run_id = await runtime.start("twenty", 100)
    run = await runtime.finished(run_id, timeout=60)
    assert run.status == RunStatus.COMPLETED, run.error
    assert decode(run.output) == [100 + index for index in range(20)]
    events = await all_events(world, run_id)
    committed = Counter(
        e.correlation_id for e in events if e.event_type == EventType.STEP_COMPLETED
    )
    assert committed == Counter({f"step_{i}": 1 for i in range(1, 21)})
    created = Counter(e.correlation_id for e in events if e.event_type == EventType.STEP_CREATED)
    assert set(created.values()) == {1}
    ends = [e for e in events if e.event_type == EventType.RUN_COMPLETED]
    assert len(ends) == 1
    assert ends[0] is events[-1]


async def test_a_hook_with_several_payloads(world: World) -> None:
    async def collect(wf: Workflow, token: str) -> list[Any]:
        hook = await wf.hook(token)
        return [await hook.next() for _ in range(3)]

    runtime = Runtime(world, workflows={"collect": collect})
    run_id = await runtime.start("collect", "tok-wf-hook")

    async def hook_ready() -> bool:
        try:
            await world.hooks_get_by_token("tok-wf-hook")
        except HookNotFoundError:
            return False
        return True

    await eventually(hook_ready, "the workflow's hook")
    for payload in ("one", {"two": 2}, "three\x00"):
        await runtime.resume("tok-wf-hook", payload)
    run = await runtime.finished(run_id)
    assert decode(run.output) == ["one", {"two": 2}, "three\x00"]
    with pytest.raises(HookNotFoundError):
        await world.hooks_get_by_token("tok-wf-hook")


async def test_sleep(world: World) -> None:
    async def sleepy(wf: Workflow, seconds: float) -> str:
        before = await wf.step("mark", "before")
        await wf.sleep(seconds)
        return f"{before}-{await wf.step('mark', 'after')}"

    async def mark(label: str) -> str:
        return label

    runtime = Runtime(world, workflows={"sleepy": sleepy}, steps={"mark": Step(mark)})
    run_id = await runtime.start("sleepy", 0.3)
    run = await runtime.finished(run_id)
    assert decode(run.output) == "before-after"
    events = await all_events(world, run_id)
    created = next(e for e in events if e.event_type == EventType.WAIT_CREATED)
    completed = next(e for e in events if e.event_type == EventType.WAIT_COMPLETED)
    after = [e for e in events if e.correlation_id == "step_3"]
    assert created.sequence < completed.sequence < after[0].sequence
    assert created.data is not None
    assert completed.created_at >= created.data.resume_at  # type: ignore[union-attr]


async def test_errors_with_retry_delays(world: World) -> None:
    tries: list[int] = []

    async def flaky(value: int) -> int:
        tries.append(value)
        if len(tries) < 3:
            raise RuntimeError(f"flaky attempt {len(tries)}")
        return value * 2

    async def always_fails() -> None:
        raise RuntimeError("never works")

    async def retried(wf: Workflow, value: int) -> int:
        doubled = int(await wf.step("flaky", value))
        await wf.step("fails")
        return doubled

    steps = {
        "flaky": Step(flaky, attempts=3, retry_delay=0.2),
        "fails": Step(always_fails, attempts=2, retry_delay=0.1),
    }
    runtime = Runtime(world, workflows={"retried": retried}, steps=steps)
    run_id = await runtime.start("retried", 21)
    run = await runtime.finished(run_id)
    assert run.status == RunStatus.FAILED
    assert "never works" in str(run.error)
    events = await all_events(world, run_id)
    flaky_events = [e for e in events if e.correlation_id == "step_1"]
    kinds = [e.event_type for e in flaky_events]
    assert kinds == [
        EventType.STEP_CREATED,
        EventType.STEP_STARTED,
        EventType.STEP_RETRYING,
        EventType.STEP_STARTED,
        EventType.STEP_RETRYING,
        EventType.STEP_STARTED,
        EventType.STEP_COMPLETED,
    ]
    for retrying, restarted in (
        (flaky_events[2], flaky_events[3]),
        (flaky_events[4], flaky_events[5]),
    ):
        assert isinstance(retrying.data, StepRetryingData)
        assert retrying.data.retry_after is not None
        assert restarted.created_at >= retrying.data.retry_after
    assert (await world.steps_get(run_id, "step_1")).attempt == 3
    failed = await world.steps_get(run_id, "step_2")
    assert (failed.status, failed.attempt) == ("failed", 2)


async def test_null_bytes_in_payloads(world: World) -> None:
    async def echo(data: list[int]) -> bytes:
        return bytes(data) + b"\x00\x00tail"

    async def nulls(wf: Workflow, text: str) -> dict[str, Any]:
        raw = await wf.step("echo", list(b"\x00head\x00"))
        return {"text": text + "\x00", "raw": list(raw)}

    runtime = Runtime(world, workflows={"nulls": nulls}, steps={"echo": Step(echo)})
    run_id = await runtime.start("nulls", "a\x00b")
    done = await runtime.finished(run_id)
    assert decode(done.output) == {"text": "a\x00b\x00", "raw": list(b"\x00head\x00\x00\x00tail")}
    step = await world.steps_get(run_id, "step_1")
    assert step.output == b"B\x00head\x00\x00\x00tail"
