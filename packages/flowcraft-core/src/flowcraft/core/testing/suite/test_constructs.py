"""Subflows, map, loop, cancellation, idempotent start."""

from __future__ import annotations

from flowcraft.core._engine.state import RunStatus
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.nodes import LOG, PEAK
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.core.testing.suite._poll import eventually
from flowcraft.core.testing.suite.test_wait_resume import _until


async def test_subflow_awaits_with_its_child_and_resumes(harness: Harness) -> None:
    child = bp("child", [n("CW", "flowcraft.wait"), n("CT", "echo")], [e("CW", "CT")])
    parent = bp(
        "parent", [n("SF", "flowcraft.subflow", blueprint="child"), n("T", "echo")], [e("SF", "T")]
    )
    async with harness.session(child, parent) as s:
        handle = await s.start("parent", "x")
        await _until(s, handle.run_id, RunStatus.AWAITING)
        await handle.resume("SF", output="approved")  # forwarded to the child's wait
        result = await handle.result(timeout=20)
    assert result.status is RunStatus.COMPLETED
    assert result.output == "approved"


async def test_cancelling_the_parent_cancels_the_child(harness: Harness) -> None:
    child = bp("child2", [n("CW", "flowcraft.wait")])
    parent = bp("parent2", [n("SF", "flowcraft.subflow", blueprint="child2")])
    async with harness.session(child, parent) as s:
        handle = await s.start("parent2")
        await _until(s, handle.run_id, RunStatus.AWAITING)
        await handle.cancel()
        result = await handle.result(timeout=20)
        child_id = f"{handle.run_id}:SF#1"
        await _until(s, child_id, RunStatus.CANCELLED)
    assert result.status is RunStatus.CANCELLED


async def test_map_keeps_item_order(harness: Harness) -> None:
    blueprint = bp("map", [n("M", "flowcraft.map", uses="suite.scaled", concurrency=3)])
    async with harness.session(blueprint, workers=2, concurrency=4) as s:
        result = await s.run("map", [3, 1, 2])
    assert result.output == [30, 10, 20]


#: A map body that refuses item 2.
_picky_body = {"nodes": [n("P", "picky", refuse=[2])]}


async def test_map_item_failing_for_good_fails_the_map_and_the_run(harness: Harness) -> None:
    blueprint = bp(
        "map-fails",
        [n("M", "flowcraft.map", body=_picky_body, concurrency=1), n("T", "echo")],
        [e("M", "T")],
    )
    async with harness.session(blueprint) as s:
        handle = await s.start("map-fails", [1, 2, 3])
        result = await handle.result(timeout=20)
    assert result.status is RunStatus.FAILED
    (error,) = result.errors
    assert (error.node_id, error.frame, error.type, error.message) == (
        "P",
        "M[1]",
        "RuntimeError",
        "item 2 refused",
    )
    assert "M" not in result.outputs
    assert LOG[handle.run_id] == ["P", "P"]  # item 3 never started, T never ran


async def test_map_failure_goes_to_the_maps_fallback(harness: Harness) -> None:
    blueprint = bp(
        "map-fallback",
        [
            n("M", "flowcraft.map", body=_picky_body, config={"fallback": "H"}),
            n("H", "echo"),
            n("T", "echo"),
        ],
        [e("M", "T")],
    )
    async with harness.session(blueprint) as s:
        result = await s.run("map-fallback", [1, 2, 3])
    assert result.status is RunStatus.COMPLETED
    assert isinstance(result.output, dict)
    assert result.output["input"] == [1, 2, 3]
    error = result.output["error"]
    assert (error["node_id"], error["frame"], error["message"]) == ("P", "M[1]", "item 2 refused")


async def test_map_over_an_empty_list_gives_an_empty_list(harness: Harness) -> None:
    blueprint = bp("map-empty", [n("M", "flowcraft.map", uses="suite.echo"), n("T", "echo")],
                   [e("M", "T")])  # fmt: skip
    async with harness.session(blueprint) as s:
        handle = await s.start("map-empty", [])
        result = await handle.result(timeout=20)
    assert result.status is RunStatus.COMPLETED
    assert result.outputs == {"M": [], "T": []}
    assert LOG[handle.run_id] == ["T"]  # no item ran


async def test_map_runs_at_most_concurrency_items_at_once(harness: Harness) -> None:
    body = {"nodes": [n("G", "gauge", gather=2, seconds=0.1)]}
    blueprint = bp("map-limit", [n("M", "flowcraft.map", body=body, concurrency=2)])
    items = list(range(7))
    async with harness.session(blueprint, workers=3, concurrency=8) as s:
        handle = await s.start("map-limit", items)
        result = await handle.result(timeout=30)
    assert result.output == items
    assert LOG[handle.run_id].count("G") == len(items)
    assert PEAK[handle.run_id] == 2  # the first two overlap; never a third at once


async def test_subflow_child_failure_fails_the_parent(harness: Harness) -> None:
    child = bp(
        "child-fails", [n("CS", "const", value=1), n("CF", "fail", times=9)], [e("CS", "CF")]
    )
    parent = bp(
        "parent-fails",
        [n("SF", "flowcraft.subflow", blueprint="child-fails"), n("T", "echo")],
        [e("SF", "T")],
    )
    async with harness.session(child, parent) as s:
        handle = await s.start("parent-fails")
        result = await handle.result(timeout=20)
        child_result = await s.client.result(f"{handle.run_id}:SF#1", timeout=20)
    assert result.status is RunStatus.FAILED
    assert child_result.status is RunStatus.FAILED
    (error,) = result.errors
    assert (error.type, error.message) == ("RuntimeError", "boom")
    assert error == child_result.errors[0]  # the child's error, kept whole
    assert "SF" not in result.outputs
    assert "T" not in LOG[handle.run_id]


async def test_loop_past_max_iterations_fails(harness: Harness) -> None:
    body = {"nodes": [{"id": "inc", "uses": "suite.inc"}]}
    params = {"while": "input < 3", "max_iterations": 2, "body": body}
    blueprint = bp(
        "loop-limit",
        [{"id": "L", "uses": "flowcraft.loop", "params": params}, n("T", "echo")],
        [e("L", "T")],
    )
    async with harness.session(blueprint) as s:
        handle = await s.start("loop-limit", 0)
        result = await handle.result(timeout=20)
    assert result.status is RunStatus.FAILED
    (error,) = result.errors
    assert (error.node_id, error.frame, error.type) == ("L", "", "LoopLimitExceeded")
    assert "max_iterations=2" in error.message
    assert LOG[handle.run_id] == ["inc", "inc"]  # two iterations, then the limit; T never ran


async def test_loop_iterates_in_frames(harness: Harness) -> None:
    body = {"nodes": [{"id": "inc", "uses": "suite.inc"}]}
    params = {"while": "input < 3", "max_iterations": 10, "body": body}
    blueprint = bp("loop", [{"id": "L", "uses": "flowcraft.loop", "params": params}])
    async with harness.session(blueprint) as s:
        handle = await s.start("loop", 0)
        result = await handle.result(timeout=20)
    assert result.output == 3
    assert LOG[handle.run_id] == ["inc", "inc", "inc"]


async def test_cancellation_keeps_committed_work(harness: Harness) -> None:
    blueprint = bp(
        "cancel",
        [n("A", "write", writes={"a": 1}, value=1), n("B", "sleep", seconds=30)],
        [e("A", "B")],
    )
    async with harness.session(blueprint) as s:
        handle = await s.start("cancel")
        await eventually(lambda: "B" in LOG[handle.run_id], "B started")
        await handle.cancel()
        await handle.cancel()
        result = await handle.result(timeout=20)
    assert result.status is RunStatus.CANCELLED
    assert result.context == {"a": 1}
    assert result.outputs == {"A": 1}


async def test_idempotent_start(harness: Harness) -> None:
    blueprint = bp("idem", [n("A", "const", value=1), n("B", "echo")], [e("A", "B")])
    async with harness.session(blueprint) as s:
        first = await s.client.start("idem", idempotency_key="k")
        second = await s.client.start("idem", idempotency_key="k")
        await first.result(timeout=20)
    assert first.run_id == second.run_id
    assert LOG[first.run_id] == ["A", "B"]
