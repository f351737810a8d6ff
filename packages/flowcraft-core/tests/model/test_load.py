"""Loading blueprints from data, text and files; round trips; the TypeScript dialect."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
from flowcraft.core import (
    Blueprint,
    BlueprintError,
    Limits,
    dump_blueprint,
    load_blueprint,
    loads_blueprint,
    parse_blueprint,
    validate_blueprint,
)

FULL: dict[str, Any] = {
    "id": "orders",
    "version": "3",
    "nodes": [
        {
            "id": "fetch",
            "uses": "orders.fetch",
            "params": {"url": "https://x", "limits": [1, 2, {"a": None}]},
            "inputs": {"order": "order_id"},
            "config": {
                "retry": {"max_attempts": 3, "delay": 0.5, "backoff": 3, "max_delay": 9},
                "timeout": 10,
                "fallback": "cached",
                "join": "any",
            },
        },
        {"id": "cached", "uses": "orders.cached", "inputs": "order_id"},
        {"id": "done", "uses": "orders.done"},
    ],
    "edges": [
        {"source": "fetch", "target": "done", "action": "ok", "condition": "result.total > 1"},
        {"source": "fetch", "target": "done", "transform": "{'total': input.total}"},
    ],
    "metadata": {"owner": "team-a"},
}


def test_full_document_loads_into_typed_models() -> None:
    bp = parse_blueprint(FULL)
    fetch = bp.node("fetch")
    assert fetch.config.retry.max_attempts == 3
    assert fetch.config.retry.max_delay == 9.0
    assert fetch.config.join == "any"
    assert fetch.inputs == {"order": "order_id"}
    assert bp.node("cached").inputs == "order_id"
    assert bp.edges[0].key == ("fetch", "done", "ok")
    assert bp.metadata == {"owner": "team-a"}


def test_round_trip_is_identical() -> None:
    bp = parse_blueprint(FULL)
    again = parse_blueprint(bp.to_dict())
    assert again == bp
    assert again.to_dict() == bp.to_dict()
    assert loads_blueprint(dump_blueprint(bp, format="yaml")) == bp
    assert loads_blueprint(dump_blueprint(bp)) == bp


def test_dump_leaves_defaults_out() -> None:
    bp = parse_blueprint({"id": "x", "nodes": [{"id": "a", "uses": "u"}]})
    assert bp.to_dict() == {"id": "x", "nodes": [{"id": "a", "uses": "u"}]}


def test_numeric_version_is_kept_as_text() -> None:
    nodes = [{"id": "a", "uses": "u"}]
    assert parse_blueprint({"id": "x", "version": 2, "nodes": nodes}).version == "2"


def test_every_problem_is_reported_at_once() -> None:
    doc = {
        "id": "x",
        "nodes": [
            {"id": "a", "uses": "u", "config": {"retry": {"max_attempts": 0}}},
            {"id": "a", "uses": "u"},
        ],
        "edges": [{"source": "a", "target": "nope", "condition": "1 +"}],
    }
    with pytest.raises(BlueprintError) as info:
        parse_blueprint(doc)
    found = {(p.code, p.path) for p in info.value.problems}
    assert found == {
        ("FC005", "$.nodes[0].config.retry.max_attempts"),
        ("FC102", "$.nodes[1].id"),
        ("FC202", "$.edges[0].target"),
        ("FC301", "$.edges[0].condition"),
    }
    assert isinstance(info.value, ValueError)
    assert "4 problems" in str(info.value)


def test_problems_come_in_document_order() -> None:
    nodes = [{"id": "", "uses": "u"} for _ in range(12)]
    paths = [p.path for p in validate_blueprint({"id": "x", "nodes": nodes})]
    assert paths == [f"$.nodes[{i}].id" for i in range(12)]


def test_registry_check_with_builtins_always_known() -> None:
    doc = {
        "id": "x",
        "nodes": [{"id": "a", "uses": "orders.fetc"}, {"id": "w", "uses": "flowcraft.wait"}],
    }
    problems = validate_blueprint(doc, registry={"orders.fetch"})
    assert [(p.code, p.path) for p in problems] == [("FC103", "$.nodes[0].uses")]
    assert "did you mean 'orders.fetch'" in problems[0].message
    assert validate_blueprint(doc) == ()


def test_not_a_mapping_is_a_problem_not_a_traceback() -> None:
    (problem,) = validate_blueprint(["not", "a", "blueprint"])
    assert (problem.code, problem.path) == ("FC005", "$")


def test_node_and_edge_count_limits() -> None:
    doc = {"id": "x", "nodes": [{"id": str(i), "uses": "u"} for i in range(5)]}
    (problem,) = validate_blueprint(doc, limits=Limits(max_nodes=4))
    assert problem.code == "FC002"
    edges = [{"source": "0", "target": "1"}, {"source": "1", "target": "2"}]
    (problem,) = validate_blueprint({**doc, "edges": edges}, limits=Limits(max_edges=1))
    assert problem.code == "FC002"


class TestTypeScriptDialect:
    TS: ClassVar[dict[str, Any]] = {
        "id": "ts",
        "nodes": [
            {
                "id": "a",
                "uses": "api",
                "config": {"maxRetries": 3, "retryDelay": 250, "timeout": 5000, "fallback": "b"},
            },
            {"id": "b", "uses": "api"},
            {"id": "j", "uses": "api", "config": {"joinStrategy": "any"}},
            {"id": "w", "uses": "wait"},
            {"id": "s", "uses": "sleep", "params": {"duration": "2m"}},
            {"id": "sub", "uses": "subflow", "params": {"blueprintId": "c", "outputs": "r"}},
        ],
        "edges": [{"source": "a", "target": "j"}, {"source": "w", "target": "j"}],
    }

    def test_camel_case_means_the_same(self) -> None:
        bp = parse_blueprint(self.TS)
        config = bp.node("a").config
        assert config.retry.max_attempts == 3
        assert config.retry.delay == 0.25
        assert config.retry.backoff == 1.0
        assert config.timeout == 5.0
        assert config.fallback == "b"
        assert bp.node("j").config.join == "any"

    def test_builtins_are_mapped(self) -> None:
        bp = parse_blueprint(self.TS)
        assert bp.node("w").uses == "flowcraft.wait"
        assert bp.node("s").sleep_spec().seconds == 120.0
        spec = bp.node("sub").subflow_spec()
        assert (spec.blueprint, spec.output) == ("c", "r")

    def test_default_ts_retry_delay_is_one_second(self) -> None:
        doc = {"id": "t", "nodes": [{"id": "a", "uses": "u", "config": {"maxRetries": 2}}]}
        assert parse_blueprint(doc).node("a").config.retry.delay == 1.0

    def test_round_trip_goes_through_canonical_form(self) -> None:
        bp = parse_blueprint(self.TS)
        dumped = bp.to_dict()
        assert "maxRetries" not in json.dumps(dumped)
        assert parse_blueprint(dumped) == bp

    def test_problem_paths_use_the_spelling_of_the_document(self) -> None:
        doc = {"id": "t", "nodes": [{"id": "a", "uses": "u", "config": {"maxRetries": 0}}]}
        (problem,) = validate_blueprint(doc)
        assert (problem.code, problem.path) == ("FC005", "$.nodes[0].config.maxRetries")

    def test_both_spellings_conflict(self) -> None:
        config = {"joinStrategy": "any", "join": "all"}
        doc = {"id": "t", "nodes": [{"id": "a", "uses": "u", "config": config}]}
        (problem,) = validate_blueprint(doc)
        assert (problem.code, problem.path) == ("FC006", "$.nodes[0].config.joinStrategy")

    def test_timeout_is_seconds_in_python_dialect(self) -> None:
        doc = {"id": "t", "nodes": [{"id": "a", "uses": "u", "config": {"timeout": 5}}]}
        assert parse_blueprint(doc).node("a").config.timeout == 5.0
        assert parse_blueprint(doc, dialect="typescript").node("a").config.timeout == 0.005

    def test_ts_loop_is_rejected_with_a_pointer_to_flowcraft_loop(self) -> None:
        doc = {
            "id": "t",
            "metadata": {"cycleEntryPoints": ["a"]},
            "nodes": [{"id": "a", "uses": "work"}, {"id": "lc", "uses": "loop-controller"}],
            "edges": [
                {"source": "a", "target": "lc"},
                {"source": "lc", "target": "a", "action": "continue"},
            ],
        }
        problems = validate_blueprint(doc)
        assert [(p.code, p.path) for p in problems] == [
            ("FC402", "$.edges[1]"),
            ("FC402", "$.nodes[1].uses"),
        ]
        assert "a -> lc -> a" in problems[0].message
        assert all("flowcraft.loop" in p.message for p in problems)

    def test_batch_nodes_point_to_flowcraft_map(self) -> None:
        doc = {"id": "t", "nodes": [{"id": "b", "uses": "batch-scatter"}]}
        (problem,) = validate_blueprint(doc)
        assert problem.code == "FC109"
        assert "flowcraft.map" in problem.message


class TestFiles:
    def test_yaml_and_json_files(self, tmp_path: Path) -> None:
        (tmp_path / "bp.json").write_text(json.dumps(FULL))
        (tmp_path / "bp.yml").write_text(dump_blueprint(parse_blueprint(FULL), format="yaml"))
        assert load_blueprint(tmp_path / "bp.json") == load_blueprint(tmp_path / "bp.yml")

    def test_yaml_timestamps_stay_text(self) -> None:
        node = "{id: s, uses: flowcraft.sleep, params: {until: 2030-01-01T00:00:00Z}}"
        text = f"id: t\nnodes:\n  - {node}\n"
        bp = loads_blueprint(text)
        assert bp.node("s").params["until"] == "2030-01-01T00:00:00Z"
        assert bp.node("s").sleep_spec().until is not None

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("{not json", "not valid JSON or YAML"),
            ("a: [1, 2", "not valid JSON or YAML"),
            ("a: &x [1]\nb: *x\n", "aliases are not allowed"),
            (b"\xff\xfe\x00", "not UTF-8"),
            ("[" * 100_000, "not valid"),
        ],
    )
    def test_unreadable_text(self, text: str | bytes, expected: str) -> None:
        with pytest.raises(BlueprintError) as info:
            loads_blueprint(text)
        (problem,) = info.value.problems
        assert problem.code == "FC001"
        assert expected in problem.message

    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(BlueprintError) as info:
            load_blueprint(tmp_path / "absent.yaml")
        assert info.value.problems[0].code == "FC001"
        assert "absent.yaml" in info.value.problems[0].message

    def test_oversize_file(self, tmp_path: Path) -> None:
        path = tmp_path / "big.json"
        path.write_text(json.dumps(FULL))
        with pytest.raises(BlueprintError) as info:
            load_blueprint(path, limits=Limits(max_bytes=100))
        assert info.value.problems[0].code == "FC002"

    def test_explicit_format(self) -> None:
        with pytest.raises(BlueprintError):
            loads_blueprint("id: x\nnodes: [{id: a, uses: u}]", format="json")
        text = "id: x\nnodes: [{id: a, uses: u}]"
        assert isinstance(loads_blueprint(text, format="yaml"), Blueprint)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id: x\nid: y\nnodes: [{id: a, uses: u}]", "duplicate key 'id' (first at line 1)"),
        ('{"id": "x", "id": "y", "nodes": [{"id": "a", "uses": "u"}]}', "duplicate key 'id'"),
        ("id: x\nnodes:\n  - {id: a, uses: u, uses: v}", "duplicate key 'uses'"),
    ],
)
def test_duplicate_keys_are_refused_never_last_wins(text: str, expected: str) -> None:
    with pytest.raises(BlueprintError, match=re.escape(expected)) as refused:
        loads_blueprint(text)
    assert refused.value.problems[0].code == "FC001"


def test_values_of_the_wrong_type_are_named_in_plain_words() -> None:
    with pytest.raises(BlueprintError) as refused:
        loads_blueprint("id: x\nnodes:\n  - {id: a, uses: u, config: {retry: 3}}")
    (problem,) = refused.value.problems
    assert problem.path == "$.nodes[0].config.retry"
    assert problem.message == "should be a mapping (got 3)"


def test_an_empty_document_says_so() -> None:
    with pytest.raises(BlueprintError, match="the document is empty"):
        loads_blueprint("", format="yaml")
