"""Blueprints on a World: a finished run's event history, node by node (backend world-memory).

One run of a blueprint with a task that fails once and is retried, a wait that is resumed, a
sleep and a last task: every node attempt is a step with its events in order, the wait a
hook, the sleep a World wait, and the run's own events frame them; the log is dense.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from flowcraft.core._engine.state import RunStatus
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.core.world import Event, EventType, HookStatus, Pagination, StepStatus, WaitStatus
from flowcraft.core.world.blueprints import WorldMemoryBackendFactory

_T = EventType


def _blueprint() -> object:
    return bp(
        "history",
        [
            n("S", "const", value=1),
            n("F", "fail", times=1, config={"retry": {"max_attempts": 3, "delay": 0.05}}),
            n("W", "flowcraft.wait"),
            n("Z", "flowcraft.sleep", seconds=0.2),
            n("T", "echo"),
        ],
        [e("S", "F"), e("F", "W"), e("W", "Z"), e("Z", "T")],
    )


async def _history(world: object, run_id: str) -> list[Event]:
    events: list[Event] = []
    cursor = None
    while True:
        page = await world.events_list(  # type: ignore[attr-defined]
            run_id, pagination=Pagination(limit=7, cursor=cursor)
        )
        events += page.data
        cursor = page.cursor
        if not page.has_more:
            return events


async def test_every_node_attempt_is_a_step_a_wait_a_hook_and_a_sleep_a_wait() -> None:
    harness = Harness(WorldMemoryBackendFactory())
    async with harness.session(_blueprint()) as s:  # type: ignore[arg-type]
        handle = await s.start("history")
        for _ in range(200):
            snapshot = await s.client.snapshot(handle.run_id)
            if snapshot.awaiting:
                break
            await asyncio.sleep(0.05)
        await handle.resume("W", output={"approved": True})
        result = await handle.result(timeout=20)
        assert result.status is RunStatus.COMPLETED
        world = s.backend.extra["world"]
        events = await _history(world, handle.run_id)

        assert [event.sequence for event in events] == list(range(1, len(events) + 1))
        assert [events[0].event_type, events[1].event_type] == [_T.RUN_CREATED, _T.RUN_STARTED]
        assert events[-1].event_type is _T.RUN_COMPLETED
        by_entity: dict[str, list[EventType]] = defaultdict(list)
        for event in events[2:-1]:
            assert event.correlation_id is not None, event
            by_entity[event.correlation_id].append(event.event_type)
        done = [_T.STEP_CREATED, _T.STEP_STARTED, _T.STEP_COMPLETED]
        assert dict(by_entity) == {
            "S": done,
            "F": [
                _T.STEP_CREATED,
                _T.STEP_STARTED,
                _T.STEP_RETRYING,
                _T.STEP_STARTED,
                _T.STEP_COMPLETED,
            ],
            "W": [_T.HOOK_CREATED, _T.HOOK_RECEIVED, _T.HOOK_DISPOSED],
            "Z": [_T.WAIT_CREATED, _T.WAIT_COMPLETED],
            "T": done,
        }
        order = [(event.correlation_id, event.event_type) for event in events]
        for before, after in (
            (("S", _T.STEP_COMPLETED), ("F", _T.STEP_CREATED)),
            (("F", _T.STEP_COMPLETED), ("W", _T.HOOK_CREATED)),
            (("W", _T.HOOK_RECEIVED), ("Z", _T.WAIT_CREATED)),
            (("Z", _T.WAIT_COMPLETED), ("T", _T.STEP_CREATED)),
        ):
            assert order.index(before) < order.index(after), (before, after, order)

        steps = (await world.steps_list(handle.run_id)).data
        assert [(x.step_id, x.status, x.attempt) for x in steps] == [
            ("S", StepStatus.COMPLETED, 1),
            ("F", StepStatus.COMPLETED, 2),
            ("T", StepStatus.COMPLETED, 1),
        ]
        (hook,) = (await world.hooks_list(handle.run_id)).data
        assert (hook.hook_id, hook.status, hook.received) == ("W", HookStatus.DISPOSED, 1)
        assert (await world.waits_get(handle.run_id, "Z")).status is WaitStatus.COMPLETED
        run = await world.runs_get(handle.run_id)
        assert (run.workflow_name, run.status.value) == ("history", "completed")
