"""The stored form of a run's state (``_engine/records.py``) at its edges.

Every step of every simulated run already proves the records right (the simulator checks
them); these tests pin what a store may hand back that is not right.
"""

from __future__ import annotations

import pytest
from flowcraft.core._engine.codec import CodecError
from flowcraft.core._engine.decide import apply, new_run
from flowcraft.core._engine.events import NodeSucceeded, RunStarted
from flowcraft.core._engine.plan import PlanNode, build_plan
from flowcraft.core._engine.records import (
    all_records,
    decode_key,
    encode_key,
    header_of,
    records_from_document,
    state_from_records,
)

PLAN = build_plan(id="p", version="1", nodes=[PlanNode(id="a", uses="a")], edges=[])


@pytest.mark.parametrize(
    "key",
    [("n", "", "a"), ("n", "M[0]/L#2", 'b "q" / ü'), ("a", "", "j", 3), ("cr", "", "M", 2, 0)],
)
def test_keys_survive_any_node_id(key: tuple[str | int, ...]) -> None:
    assert decode_key(encode_key(key)) == key


@pytest.mark.parametrize("text", ["", "n", "[]", '["zz", ""]', "{}", '"n"'])
def test_a_key_that_is_not_one_is_a_codec_error(text: str) -> None:
    with pytest.raises(CodecError, match="not a record key"):
        decode_key(text)


def test_a_started_run_rebuilds_from_its_header_and_records() -> None:
    state = new_run("r", PLAN)
    apply(state, RunStarted(at=0.0, input={"x": 1}))
    rebuilt = state_from_records("r", PLAN, header_of(state), all_records(state), {})
    assert (rebuilt.status, rebuilt.input, rebuilt.busy) == (state.status, {"x": 1}, 1)
    assert all_records(rebuilt) == all_records(state)


def test_a_traced_runs_header_keeps_its_traceparent() -> None:
    state = new_run("r", PLAN)
    assert "trace" not in header_of(state)  # untraced runs store nothing more
    state.trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    rebuilt = state_from_records("r", PLAN, header_of(state), all_records(state), {})
    assert rebuilt.trace == state.trace


def test_a_record_of_the_wrong_shape_is_a_codec_error_naming_the_run() -> None:
    state = new_run("r", PLAN)
    apply(state, RunStarted(at=0.0, input=None))
    records = all_records(state)
    records[encode_key(("n", "", "a"))] = {"status": "no-such-status", "attempt": 1}
    with pytest.raises(CodecError, match="run r"):
        state_from_records("r", PLAN, header_of(state), records, {})
    with pytest.raises(CodecError, match="nowhere"):
        state_from_records("r", PLAN, header_of(state), {'["o","nowhere"]': [1, False]}, {})


def test_a_document_that_is_not_a_state_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="not a run state document"):
        records_from_document({"status": "running", "nodes": "not a list"})


def test_a_node_attempt_keeps_when_it_started_and_ended_across_a_rebuild() -> None:
    state = new_run("r", PLAN)
    apply(state, RunStarted(at=10.0, input=None))
    node = state.nodes[("a", "")]
    assert (node.started_at, node.finished_at) == (10.0, None)
    apply(state, NodeSucceeded(at=10.25, node_id="a", attempt=1, output=1))
    assert (node.started_at, node.finished_at) == (10.0, 10.25)
    rebuilt = state_from_records("r", PLAN, header_of(state), all_records(state), {})
    again = rebuilt.nodes[("a", "")]
    assert (again.started_at, again.finished_at) == (10.0, 10.25)
