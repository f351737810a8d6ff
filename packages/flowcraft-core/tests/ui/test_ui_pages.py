"""The web view's pages: every run value escaped, filters, paging, actions (``_ui.pages``)."""

from __future__ import annotations

import re

from flowcraft.core import Blueprint, BlueprintSet, NodeStatus, parse_blueprint
from flowcraft.core._engine.state import NodeError, NodeRecord, RunState
from flowcraft.core._ui import pages
from flowcraft.core._ui.view import run_view
from flowcraft.core.ports import RunPage, RunRecord


def n(node_id: str, uses: str) -> dict[str, object]:
    return {"id": node_id, "uses": uses}


def e(source: str, target: str, action: str | None = None) -> dict[str, object]:
    return {"source": source, "target": target, "action": action}


def bp(name: str, nodes: list[dict[str, object]], edges: list[dict[str, object]]) -> Blueprint:
    return parse_blueprint({"id": name, "version": "1", "nodes": nodes, "edges": edges})


EVIL = '<script>alert("x")</script>&\'"'
BLUEPRINT = bp(
    "review",
    [n("W", "flowcraft.wait"), n("OK", "app.echo"), n("NO", "app.echo")],
    [e("W", "OK", action="approve"), e("W", "NO", action="<b>reject</b>")],
)


def _record(run_id: str = "r1", status: str = "running", **more: object) -> RunRecord:
    fields: dict[str, object] = {"created_at": 1_700_000_000.0, "updated_at": 1_700_000_010.0}
    fields.update(more)
    return RunRecord(
        run_id=run_id,
        blueprint_id="review",
        blueprint_version="1",
        blueprint_digest="d",
        status=status,
        **fields,  # type: ignore[arg-type]
    )


def _state(*records: NodeRecord) -> RunState:
    plan = BlueprintSet([BLUEPRINT]).latest("review").plan
    return RunState(run_id="r1", plan=plan, nodes={r.key: r for r in records})


def _no_raw_evil(text: str) -> None:
    assert "<script>" not in text
    assert 'alert("x")' not in text


def test_run_values_are_escaped_everywhere() -> None:
    error = NodeError(node_id="W", frame="", attempt=2, type=EVIL, message=EVIL, traceback=EVIL)
    node = NodeRecord(node_id="W", frame="", status=NodeStatus.FAILED, attempt=2, input=EVIL,
                      output={EVIL: EVIL}, action=EVIL, error=error)  # fmt: skip
    record = _record(EVIL, EVIL, input=EVIL, output=EVIL, errors=(error.as_dict(),))
    view = run_view(record, _state(node), BLUEPRINT, now=1_700_000_020.0)
    for allowed in (False, True):
        text = pages.run_page(view, pages.Actions(allowed=allowed, csrf=EVIL), notice=EVIL)
        _no_raw_evil(text)
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#x27;" in text
    listed = pages.runs_page(RunPage(runs=(record,)), status=None, cursor=EVIL, limit=5)
    _no_raw_evil(listed)
    assert "%3Cscript%3E" in listed  # the run's link is percent-encoded


def test_an_unknown_status_gets_a_neutral_badge() -> None:
    assert pages.status_badge("running").startswith('<span class="status status-running">')
    badge = pages.status_badge('x" onclick="y')
    assert 'class="status status-unknown"' in badge
    assert 'onclick="' not in badge


def test_filter_links_keep_the_page_size_and_mark_the_current_status() -> None:
    text = pages.runs_page(RunPage(runs=()), status="failed", cursor=None, limit=7)
    assert '<a class="filter" data-status="failed" href="/?status=failed&amp;limit=7" ' \
        'aria-current="page">' in text  # fmt: skip
    assert 'href="/?limit=7"' in text  # "all"
    assert "No runs." in text


def test_paging_links_carry_the_filter_and_the_cursor() -> None:
    page = RunPage(runs=(_record(),), cursor="c/2+")
    first = pages.runs_page(page, status="completed", cursor=None, limit=2)
    assert (
        'class="next" rel="next" href="/?status=completed&amp;cursor=c%2F2%2B&amp;limit=2"' in first
    )
    assert 'class="first"' not in first
    last = pages.runs_page(RunPage(runs=(_record(),)), status="completed", cursor="c", limit=2)
    assert 'class="next"' not in last
    assert 'class="first" href="/?status=completed&amp;limit=2"' in last


def test_read_only_pages_have_no_forms_and_say_how_to_act() -> None:
    awaiting = NodeRecord(node_id="W", frame="", status=NodeStatus.AWAITING)
    view = run_view(_record(), _state(awaiting), BLUEPRINT, now=0.0)
    text = pages.run_page(view, pages.Actions(allowed=False))
    assert "<form" not in text
    assert "--allow-actions" in text


def test_action_forms_post_with_the_token_and_the_declared_actions() -> None:
    awaiting = NodeRecord(node_id="W", frame="", status=NodeStatus.AWAITING, attempt=1)
    view = run_view(_record(), _state(awaiting), BLUEPRINT, now=0.0)
    text = pages.run_page(view, pages.Actions(allowed=True, csrf="tok"))
    forms = re.findall(r'<form class="(\w+)" method="post" action="([^"]+)">', text)
    assert forms == [("cancel", "/runs/r1/cancel"), ("resume", "/runs/r1/resume")]
    assert text.count('<input type="hidden" name="csrf" value="tok">') == 2
    assert '<option value="&lt;b&gt;reject&lt;/b&gt;">' in text
    assert '<option value="approve">' in text


def test_a_finished_run_offers_no_actions_and_is_not_live() -> None:
    view = run_view(_record(status="completed"), _state(), BLUEPRINT, now=0.0)
    data = pages.run_json(view, pages.Actions(allowed=True, csrf="t"))
    assert data["live"] is False
    assert data["html"]["actions"] == ""  # type: ignore[index]
    assert 'data-live="false"' in pages.run_page(view, pages.Actions(allowed=True, csrf="t"))


def test_a_run_whose_blueprint_is_not_loaded_shows_its_record_and_says_so() -> None:
    view = run_view(_record(input={"a": 1}), None, None, now=0.0)
    text = pages.run_page(view, pages.Actions(allowed=False))
    assert "--blueprint FILE of review version 1" in text
    assert 'id="diagram"' not in text
    assert pages.run_json(view, pages.Actions(allowed=False))["mermaid"] is None


def test_long_values_are_cut() -> None:
    node = NodeRecord(node_id="OK", frame="", status=NodeStatus.SUCCEEDED, output="x" * 10_000)
    view = run_view(_record(), _state(node), BLUEPRINT, now=0.0)
    nodes = pages.run_fragments(view, pages.Actions(allowed=False))["nodes"]
    assert "more characters)" in nodes
    assert "x" * 10_000 not in nodes


def test_each_node_shows_when_its_attempt_started_and_how_long_it_took() -> None:
    done = NodeRecord(node_id="A", frame="", status=NodeStatus.SUCCEEDED, attempt=1,
                      started_at=1_700_000_000.25, finished_at=1_700_000_000.292)  # fmt: skip
    slow = NodeRecord(node_id="W", frame="", status=NodeStatus.FAILED, attempt=2,
                      started_at=1_700_000_001.0, finished_at=1_700_000_003.5)  # fmt: skip
    running = NodeRecord(node_id="OK", frame="", status=NodeStatus.RUNNING, attempt=1,
                         started_at=1_700_000_004.0)  # fmt: skip
    view = run_view(_record("r1", "running"), _state(done, slow, running), BLUEPRINT,
                    now=1_700_000_005.0)  # fmt: skip
    text = pages.run_page(view, pages.Actions(allowed=False))
    rows = {row.split('"')[0]: row for row in text.split('<tr data-node="')[1:]}
    assert "2023-11-14 22:13:20.250</td><td>42 ms</td>" in rows["A"]
    assert "2023-11-14 22:13:21.000</td><td>2.50 s</td>" in rows["W"]
    assert "<td>running</td>" in rows["OK"]
