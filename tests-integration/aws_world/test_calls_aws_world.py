"""DynamoDB calls of AwsWorld's writes and stream reads, counted on moto (botocore hooks).

An event of a run this World wrote last is one ``TransactWriteItems`` (no read: the
transaction's condition on the run's ``seq`` proves the remembered snapshot); another World's
write in between makes that condition fail, and the event is decided again on a fresh read.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from flowcraft.aws_world import AwsWorld, AwsWorldConfig
from flowcraft.core.world import (
    EventType,
    NewEvent,
    RunCreatedData,
    StepCompletedData,
    StepCreatedData,
    StepStatus,
    WorldConflictError,
)


class Calls(Counter[str]):
    """DynamoDB operations of one World's client (``before-call``: once per API call)."""

    def __init__(self, world: AwsWorld) -> None:
        super().__init__()
        world.aws.ddb.meta.events.register("before-call.dynamodb.*", self._on_call)

    def _on_call(self, model: Any, **_: Any) -> None:
        self[model.name] += 1


@pytest.fixture
async def config(aws_endpoint_url: str) -> AsyncIterator[AwsWorldConfig]:
    """Fresh tables, queues and bucket."""
    cfg = AwsWorldConfig.for_prefix(
        f"fw-calls-{uuid.uuid4().hex[:8]}", endpoint_url=aws_endpoint_url, poll_wait_seconds=1
    )
    world = AwsWorld(cfg)
    await world.ensure_infrastructure()
    yield cfg
    try:
        await world.drop_infrastructure()
    finally:
        await world.aclose()


def _event(kind: EventType, correlation_id: str | None = None, data: Any = None) -> NewEvent:
    return NewEvent(event_type=kind, correlation_id=correlation_id, data=data)


async def _create(world: AwsWorld) -> str:
    data = RunCreatedData(deployment_id="d", workflow_name="wf", input=b"1")
    created = await world.events_create(None, _event(EventType.RUN_CREATED, data=data))
    assert created.run is not None
    return created.run.run_id


async def test_each_event_of_a_run_written_by_one_world_is_one_transaction(
    config: AwsWorldConfig,
) -> None:
    world = AwsWorld(config)
    try:
        calls = Calls(world)
        run_id = await _create(world)
        await world.events_create(run_id, _event(EventType.RUN_STARTED))
        for step in ("a", "b"):
            created = StepCreatedData(step_name=step, input=b"2")
            await world.events_create(run_id, _event(EventType.STEP_CREATED, step, created))
            await world.events_create(run_id, _event(EventType.STEP_STARTED, step))
            done = StepCompletedData(result=b"3")
            await world.events_create(run_id, _event(EventType.STEP_COMPLETED, step, done))
        assert calls == Counter({"TransactWriteItems": 8})
        ended = await world.steps_get(run_id, "b")
        assert (ended.status, ended.attempt) == (StepStatus.COMPLETED, 1)
        events = await world.events_list(run_id)
        assert [e.sequence for e in events.data] == list(range(1, 9))
    finally:
        await world.aclose()


async def test_a_write_by_another_world_in_between_is_read_and_decided_again(
    config: AwsWorldConfig,
) -> None:
    first, second = AwsWorld(config), AwsWorld(config)
    try:
        run_id = await _create(first)
        created = StepCreatedData(step_name="a", input=b"2")
        await first.events_create(run_id, _event(EventType.STEP_CREATED, "a", created))
        await second.events_create(run_id, _event(EventType.STEP_STARTED, "a"))
        calls = Calls(first)
        # first remembers "a" pending: its transaction is refused, it reads and decides again
        done = StepCompletedData(result=b"3")
        result = await first.events_create(run_id, _event(EventType.STEP_COMPLETED, "a", done))
        assert result.step is not None
        assert (result.step.status, result.step.attempt) == (StepStatus.COMPLETED, 1)
        assert calls["TransactWriteItems"] == 2  # the refused one, then the one that took
        assert calls["TransactGetItems"] == 1
        # a repeat is decided on a fresh read too: refused as before (the step ended)
        with pytest.raises(WorldConflictError):
            await first.events_create(run_id, _event(EventType.STEP_COMPLETED, "a", done))
        with pytest.raises(WorldConflictError):
            await second.events_create(run_id, _event(EventType.STEP_COMPLETED, "a", done))
        events = await second.events_list(run_id)
        kinds = [e.event_type for e in events.data]
        assert kinds == [
            EventType.RUN_CREATED,
            EventType.STEP_CREATED,
            EventType.STEP_STARTED,
            EventType.STEP_COMPLETED,
        ]
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_step_guessed_absent_that_exists_is_refused_as_before(
    config: AwsWorldConfig,
) -> None:
    first, second = AwsWorld(config), AwsWorld(config)
    try:
        run_id = await _create(first)
        created = StepCreatedData(step_name="a", input=b"2")
        await second.events_create(run_id, _event(EventType.STEP_CREATED, "a", created))
        await first.events_create(run_id, _event(EventType.RUN_STARTED))  # refused, re-read
        with pytest.raises(WorldConflictError):  # first guesses "a" absent: the put is refused
            await first.events_create(run_id, _event(EventType.STEP_CREATED, "a", created))
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_stream_read_after_one_write_is_one_call(config: AwsWorldConfig) -> None:
    world, other = AwsWorld(config), AwsWorld(config)
    try:
        run_id = await _create(world)
        await world.streams_write(run_id, "s", b"a")
        calls = Calls(world)
        page = await world.streams_get_chunks(run_id, "s")
        assert [c.data for c in page.data] == [b"a"]
        empty = await world.streams_get_chunks(run_id, "s", cursor=page.cursor)
        assert empty.data == []
        assert calls == Counter({"BatchGetItem": 2})
        for chunk in (b"b", b"c", b"d"):  # three batches: the query reads them
            await other.streams_write(run_id, "s", chunk)
        rest = await world.streams_get_chunks(run_id, "s", cursor=page.cursor)
        assert [c.data for c in rest.data] == [b"b", b"c", b"d"]
        assert calls == Counter({"BatchGetItem": 3, "Query": 1})
    finally:
        await world.aclose()
        await other.aclose()
