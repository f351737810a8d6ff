"""Documents round-trip byte for byte; strings never turn into bytes."""

from __future__ import annotations

from datetime import UTC, datetime

from flowcraft.aws_world._codec import Payloads
from flowcraft.core.world import (
    Event,
    EventType,
    HookConflictData,
    RunStatus,
    StepFailedData,
    WorkflowRun,
)

NOW = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC)


def _payloads() -> Payloads:
    return Payloads(aws=None, bucket="unused", threshold=1024)  # type: ignore[arg-type]


async def test_a_run_round_trips_with_bytes_and_json_values() -> None:
    run = WorkflowRun(
        run_id="wrun_1",
        status=RunStatus.FAILED,
        workflow_name="w",
        deployment_id="d",
        input=b"\x00in\xff",
        error={"message": "boom", "n": 1.5, "list": [1, "x", None]},
        execution_context={"k": "YmFzZTY0"},
        created_at=NOW,
        updated_at=NOW,
    )
    payloads = _payloads()
    assert await payloads.load(WorkflowRun, await payloads.dump(run)) == run


async def test_event_data_comes_back_as_its_type() -> None:
    payloads = _payloads()
    for kind, data in (
        (EventType.HOOK_CONFLICT, HookConflictData(token="t", conflicting_run_id="r")),
        (EventType.STEP_FAILED, StepFailedData(error=b"\x00raw")),
        (EventType.STEP_FAILED, StepFailedData(error="text")),
    ):
        event = Event(
            run_id="r",
            event_id="evnt_0000000001",
            sequence=1,
            event_type=kind,
            correlation_id="c",
            data=data,
            created_at=NOW,
        )
        loaded = await payloads.load_event(await payloads.dump(event))
        assert loaded == event
        assert type(loaded.data) is type(data)
        bare = await payloads.load_event(await payloads.dump(event), with_data=False)
        assert bare.data is None
