"""Lifecycle events as log records (``_runtime/logs.py``): fields, levels, durations, JSON."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest
from flowcraft.core import Client, MemoryJobQueue, MemoryRunStore, Worker, parse_blueprint
from flowcraft.core import events as fe
from flowcraft.core._engine.state import NodeError
from flowcraft.core._runtime.context import NodeLogFilter
from flowcraft.core.ports import Message
from flowcraft.core.testing import nodes

FLAKY = parse_blueprint(
    {
        "id": "flaky",
        "version": "3",
        "nodes": [
            {"id": "S", "uses": "suite.const", "params": {"value": 1}},
            {
                "id": "F",
                "uses": "suite.fail",
                "params": {"times": 1},
                "config": {"retry": {"max_attempts": 2, "delay": 0}},
            },
        ],
        "edges": [{"source": "S", "target": "F"}],
    },
    registry=nodes.registry(),
)


class _Lines(logging.Handler):
    """Keeps what the JSON formatter makes of each record."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(fe.JsonFormatter())
        self.addFilter(NodeLogFilter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines() -> Iterator[list[dict[str, object]]]:
    handler = _Lines()
    logger = logging.getLogger(fe.LIFECYCLE_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


async def test_a_distributed_run_logs_every_step_with_its_fields(
    lines: list[dict[str, object]],
) -> None:
    queue, store = MemoryJobQueue(), MemoryRunStore()
    worker = Worker(
        queue=queue, store=store, registry=nodes.registry(), blueprints=[FLAKY], poll=0.02
    )
    fe.EventLogger().attach(worker.events)
    task = asyncio.ensure_future(worker.run())
    try:
        async with Client(queue=queue, store=store, blueprints=[FLAKY]) as client:
            fe.EventLogger().attach(client.events)
            result = await (await client.start("flaky")).result(timeout=10)
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 10)
    assert result.output == "ok"
    assert [line["event"] for line in lines] == [
        "run.started",
        "node.started",
        "node.succeeded",
        "node.started",
        "node.retrying",
        "node.started",
        "node.succeeded",
        "run.completed",
    ]
    assert {(line["blueprint"], line["blueprint_version"]) for line in lines} == {("flaky", "3")}
    assert {line["run_id"] for line in lines} == {result.run_id}
    retry = lines[4]
    assert retry["level"] == "WARNING"
    assert (retry["node_id"], retry["attempt"], retry["frame"]) == ("F", 1, "")
    assert (retry["error_type"], retry["error"]) == ("RuntimeError", "boom")
    done = lines[6]
    assert (done["level"], done["node_id"], done["attempt"]) == ("INFO", "F", 2)
    assert isinstance(done["duration"], float)
    assert f"node F#2 of run {result.run_id} succeeded in " in str(done["message"])
    assert "duration" not in lines[-1]  # the run started in the client's logger, not the worker's


def _node(cls: type[fe.NodeEvent], at: float, **more: object) -> fe.NodeEvent:
    fields = {"run_id": "r1", "blueprint": "bp", "version": "1", "node_id": "N", "frame": ""}
    return cls(at=at, attempt=1, **fields, **more)  # type: ignore[arg-type]


def test_a_node_outcome_is_one_info_line_with_its_duration(
    lines: list[dict[str, object]],
) -> None:
    log = fe.EventLogger()
    log(_node(fe.NodeStarted, 10.0))
    log(_node(fe.NodeSucceeded, 10.25))
    assert [(line["level"], line.get("duration")) for line in lines] == [
        ("DEBUG", None),
        ("INFO", 0.25),
    ]
    assert lines[1]["message"] == "node N#1 of run r1 succeeded in 0.250s"


def test_a_retry_says_how_long_the_attempt_took_then_why(
    lines: list[dict[str, object]],
) -> None:
    error = NodeError(node_id="N", frame="", attempt=1, type="RuntimeError", message="boom")
    log = fe.EventLogger()
    log(_node(fe.NodeStarted, 1.0))
    log(_node(fe.NodeRetrying, 1.5, error=error))
    assert (
        lines[1]["message"] == "node N#1 of run r1 failed in 0.500s (RuntimeError: boom), retrying"
    )


def test_a_timeout_says_so(lines: list[dict[str, object]]) -> None:
    error = NodeError(node_id="N", frame="", attempt=1, type="TimeoutError", message="after 1s")
    fe.EventLogger()(_node(fe.NodeFailed, 1.0, error=error))
    assert lines[0]["level"] == "ERROR"
    assert lines[0]["timed_out"] is True
    assert lines[0]["message"] == "node N#1 of run r1 timed out (TimeoutError: after 1s)"


def test_worker_and_reconciler_events_are_logged(lines: list[dict[str, object]]) -> None:
    log = fe.EventLogger()
    log(fe.MessageDeadLettered(run_id="", at=1.0, message_id="m1", reason="undecodable"))
    log(
        fe.LeaseLost(
            run_id="r1", at=1.0, node_id="N", frame="", attempt=2, worker="w1", reason="gone"
        )
    )
    log(fe.RunReconciled(run_id="r1", at=1.0, blueprint="bp", version="1", jobs=2, resent=1))
    assert [(line["event"], line["level"]) for line in lines] == [
        ("message.dead_lettered", "ERROR"),
        ("lease.lost", "WARNING"),
        ("run.reconciled", "INFO"),
    ]
    assert "run_id" not in lines[0]
    assert (lines[0]["message_id"], lines[0]["reason"]) == ("m1", "undecodable")
    assert (lines[1]["worker"], lines[1]["attempt"]) == ("w1", 2)
    assert (lines[2]["jobs"], lines[2]["resent"], lines[2]["started"]) == (2, 1, False)


def test_trace_ids_come_from_the_traceparent(lines: list[dict[str, object]]) -> None:
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    fe.EventLogger()(fe.RunStarted(run_id="r1", at=1.0, trace=trace))
    assert lines[0]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"


async def test_a_dead_lettered_message_is_an_event() -> None:
    queue, store = MemoryJobQueue(), MemoryRunStore()
    worker = Worker(queue=queue, store=store, registry={}, blueprints=[FLAKY], poll=0.02)
    seen: list[fe.FlowEvent] = []
    worker.events.subscribe(seen.append)
    await queue.enqueue(Message(id="junk", body=b"not json"))
    task = asyncio.ensure_future(worker.run())
    try:
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 10)
    assert len(seen) == 1
    dead = seen[0]
    assert isinstance(dead, fe.MessageDeadLettered)
    assert dead.message_id == "junk"
    assert dead.reason.startswith("undecodable message")


def test_records_below_the_level_are_not_built(lines: list[dict[str, object]]) -> None:
    logging.getLogger(fe.LIFECYCLE_LOGGER).setLevel(logging.INFO)
    log = fe.EventLogger()
    log(_node(fe.NodeStarted, 1.0))
    log(_node(fe.NodeSucceeded, 2.0))
    assert [line["event"] for line in lines] == ["node.succeeded"]
    assert lines[0]["duration"] == 1.0
