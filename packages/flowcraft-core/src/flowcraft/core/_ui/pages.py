"""The web view's HTML, drawn from :mod:`.view` data (pure).

Every value that comes from a run (ids, statuses, inputs, outputs, errors, blueprint names) is
user data: it goes through :func:`_e` (``html.escape`` with quotes) into text and attribute
values, and through :func:`_q` (percent-encoding) into URLs. Nothing here emits inline script
or event-handler attributes: the pages run under a ``script-src 'self'`` policy, and
``/static/ui.js`` finds what it needs through ``data-`` attributes.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from flowcraft.core._analysis.mermaid import STATE_STYLES
from flowcraft.core._engine.state import RunStatus
from flowcraft.core._ui.view import NodeView, RunView
from flowcraft.core.ports import RunPage, RunRecord

#: Longest rendering of one input, output or traceback before it is cut (characters).
MAX_VALUE = 4000
READ_ONLY = (
    "This view is read-only: start it with `flowcraft ui --allow-actions` to cancel or resume runs."
)
_STATUSES = tuple(s.value for s in RunStatus)
_STYLE_NAMES = {"fill": "background", "stroke": "border-color", "color": "color"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Actions:
    """Whether this server acts on runs, and the token its forms carry (see ``app``)."""

    allowed: bool
    csrf: str = ""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _q(value: str) -> str:
    return quote(value, safe="")


def layout(title: str, body: str, *, scripts: Sequence[str] = ()) -> str:
    """A whole page: ``title`` is escaped here, ``body`` is HTML drawn by this module."""
    tags = "".join(f'<script src="{_e(src)}" defer></script>' for src in scripts)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)} · flowcraft</title>"
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/ui.css">'
        f'{tags}</head><body><header><a class="home" href="/">flowcraft runs</a></header>'
        f"<main>{body}</main></body></html>"
    )


def message_page(title: str, message: str) -> str:
    """A page that says one thing (an error, a refusal), with a way back."""
    body = (
        f'<h1>{_e(title)}</h1><p class="message">{_e(message)}</p><p><a href="/">all runs</a></p>'
    )
    return layout(title, body)


# ---------------------------------------------------------------- the list of runs


def runs_page(page: RunPage, *, status: str | None, cursor: str | None, limit: int) -> str:
    """Runs newest first: the status filter, one page of rows, links to the first and next."""
    rows = "".join(_run_row(record) for record in page.runs)
    table = (
        '<table class="runs"><thead><tr><th>run</th><th>status</th><th>blueprint</th>'
        f"<th>created (UTC)</th><th>updated (UTC)</th></tr></thead><tbody>{rows}</tbody></table>"
        if page.runs
        else '<p class="empty">No runs.</p>'
    )
    body = (
        f"<h1>Runs</h1>{_filter(status, limit)}{table}"
        f"{_pager(status=status, cursor=cursor, following=page.cursor, limit=limit)}"
    )
    return layout("runs", body)


def _filter(current: str | None, limit: int) -> str:
    links = []
    for value in (None, *_STATUSES):
        label = value or "all"
        href = _list_url(status=value, cursor=None, limit=limit)
        chosen = ' aria-current="page"' if value == current else ""
        links.append(
            f'<a class="filter" data-status="{label}" href="{_e(href)}"{chosen}>{label}</a>'
        )
    return f'<nav class="filters" aria-label="status">{"".join(links)}</nav>'


def _pager(*, status: str | None, cursor: str | None, following: str | None, limit: int) -> str:
    parts = []
    if cursor is not None:
        first = _list_url(status=status, cursor=None, limit=limit)
        parts.append(f'<a class="first" href="{_e(first)}">first page</a>')
    if following is not None:
        href = _list_url(status=status, cursor=following, limit=limit)
        parts.append(f'<a class="next" rel="next" href="{_e(href)}">next page</a>')
    return f'<nav class="pager">{" ".join(parts)}</nav>'


def _list_url(*, status: str | None, cursor: str | None, limit: int) -> str:
    query = {"status": status, "cursor": cursor, "limit": str(limit)}
    return "/?" + urlencode({k: v for k, v in query.items() if v is not None})


def _run_row(record: RunRecord) -> str:
    link = f'<a href="/runs/{_q(record.run_id)}">{_e(record.run_id)}</a>'
    blueprint = f"{record.blueprint_id}@{record.blueprint_version}"
    return (
        f'<tr data-run="{_e(record.run_id)}"><td>{link}</td><td>{status_badge(record.status)}</td>'
        f"<td>{_e(blueprint)}</td><td>{_time(record.created_at)}</td>"
        f"<td>{_time(record.updated_at)}</td></tr>"
    )


def status_badge(status: str) -> str:
    """A status as a coloured badge (unknown strings get a neutral one)."""
    known = status if status in _STATUSES or status in STATE_STYLES else "unknown"
    return f'<span class="status status-{known}">{_e(status)}</span>'


def _time(at: float | None, *, precise: bool = False) -> str:
    if not at:
        return "-"
    shown = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return shown[:-3] if precise else shown[:-7]


def _took(node: NodeView) -> str:
    """How long the node's current attempt took (or "running" while it has no end)."""
    if node.started_at is None:
        return "-"
    if node.finished_at is None:
        return "running" if node.status == "running" else "-"
    seconds = max(0.0, node.finished_at - node.started_at)
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


# ---------------------------------------------------------------- one run


def run_page(view: RunView, actions: Actions, *, notice: str | None = None) -> str:
    """A run: summary, diagram, actions and node instances; ui.js refreshes it while live."""
    run_id = view.record.run_id
    parts = run_fragments(view, actions)
    said = f'<p class="notice">{_e(notice)}</p>' if notice else ""
    body = (
        f'<section id="run" data-api="/api/runs/{_q(run_id)}" data-live="{str(view.live).lower()}">'
        f"<h1>Run <code>{_e(run_id)}</code></h1>{said}"
        f'<div id="summary">{parts["summary"]}</div>'
        f'<h2>Diagram</h2><div id="legend">{legend()}</div>{_diagram(view)}'
        f'<div id="actions">{parts["actions"]}</div>'
        f'<h2>Nodes</h2><div id="nodes">{parts["nodes"]}</div></section>'
    )
    return layout(f"run {run_id}", body, scripts=["/static/vendor/mermaid.min.js", "/static/ui.js"])


def run_fragments(view: RunView, actions: Actions) -> dict[str, str]:
    """The parts of a run's page that change while it runs (what ``/api/runs/ID`` sends)."""
    return {
        "summary": _summary(view),
        "nodes": _nodes(view),
        "actions": _actions(view, actions),
    }


def run_json(view: RunView, actions: Actions) -> dict[str, object]:
    """The JSON the page polls: status, whether it is live, the Mermaid text, the fragments."""
    return {
        "run_id": view.record.run_id,
        "status": view.record.status,
        "live": view.live,
        "mermaid": view.mermaid,
        "html": run_fragments(view, actions),
    }


def _summary(view: RunView) -> str:
    r = view.record
    rows = [
        ("status", status_badge(r.status)),
        ("blueprint", _e(f"{r.blueprint_id}@{r.blueprint_version}")),
        ("created (UTC)", _time(r.created_at)),
        ("updated (UTC)", _time(r.updated_at)),
        ("elapsed", f"{view.elapsed:.2f} s"),
        ("input", _value(r.input)),
        ("output", _value(r.output)),
    ]
    if r.parent:
        parent = f'<a href="/runs/{_q(r.parent[0])}">{_e(r.parent[0])}</a> node {_e(r.parent[1])}'
        rows.append(("parent run", parent))
    if r.errors:
        rows.append(("errors", "".join(_error(e) for e in r.errors)))
    cells = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in rows)
    return f'<table class="summary">{cells}</table>'


def _diagram(view: RunView) -> str:
    if view.mermaid is None:
        r = view.record
        return (
            '<p class="notice">The blueprint this run is pinned to is not loaded: start the view '
            f"with --blueprint FILE of {_e(r.blueprint_id)} version {_e(r.blueprint_version)} "
            "to see its diagram and nodes.</p>"
        )
    return '<div id="diagram" class="diagram" aria-busy="true"></div>'


def legend() -> str:
    """A swatch per node state, coloured as the diagram colours it."""
    items = "".join(
        f'<span class="swatch" style="{_css(style)}">{_e(state)}</span>'
        for state, style in STATE_STYLES.items()
    )
    return f'{items}<span class="swatch unreached">not reached</span>'


def _css(mermaid_style: str) -> str:
    declarations = []
    for part in mermaid_style.split(","):
        name, _, value = part.partition(":")
        if name in _STYLE_NAMES:
            declarations.append(f"{_STYLE_NAMES[name]}:{value}")
    return _e(";".join(declarations))


def _nodes(view: RunView) -> str:
    if not view.nodes:
        return '<p class="empty">No node instances.</p>'
    head = (
        "<tr><th>node</th><th>frame</th><th>status</th><th>attempt</th><th>started (UTC)</th>"
        "<th>took</th><th>timer due (UTC)</th><th>input</th><th>output</th><th>error</th></tr>"
    )
    rows = "".join(_node_row(node) for node in view.nodes)
    return f'<table class="nodes"><thead>{head}</thead><tbody>{rows}</tbody></table>'


def _node_row(node: NodeView) -> str:
    output = _value(node.output)
    if node.action:
        output = f'<div class="action">action: {_e(node.action)}</div>{output}'
    if node.child_run_id:
        child = _q(node.child_run_id)
        output += f'<div>child run <a href="/runs/{child}">{_e(node.child_run_id)}</a></div>'
    return (
        f'<tr data-node="{_e(node.node_id)}" data-status="{_e(node.status)}">'
        f"<td>{_e(node.node_id)}</td><td>{_e(node.frame) or '-'}</td>"
        f"<td>{status_badge(node.status)}</td><td>{node.attempt}</td>"
        f"<td>{_time(node.started_at, precise=True)}</td><td>{_took(node)}</td>"
        f"<td>{_time(node.due_at)}</td>"
        f"<td>{_value(node.input)}</td><td>{output}</td>"
        f"<td>{_error(node.error) if node.error else ''}</td></tr>"
    )


def _error(error: Mapping[str, object]) -> str:
    head = f"{error.get('type', 'Error')}: {error.get('message', '')}"
    where = error.get("node_id")
    if where:
        head = f"{where} (attempt {error.get('attempt', '?')}): {head}"
    trace = error.get("traceback")
    detail = f"<details><summary>traceback</summary><pre>{_cut(str(trace))}</pre></details>"
    return f'<div class="error">{_e(head)}{detail if trace else ""}</div>'


def _value(value: object) -> str:
    if value is None:
        return '<span class="none">-</span>'
    return f"<pre>{_cut(json.dumps(value, indent=2, default=str, ensure_ascii=False))}</pre>"


def _cut(text: str) -> str:
    if len(text) > MAX_VALUE:
        text = text[:MAX_VALUE] + f"\n… ({len(text) - MAX_VALUE} more characters)"
    return _e(text)


# ---------------------------------------------------------------- cancel and resume


def _actions(view: RunView, actions: Actions) -> str:
    if not view.live:
        return ""
    awaiting = [node for node in view.nodes if node.status == "awaiting"]
    if not actions.allowed:
        return f'<h2>Actions</h2><p class="read-only">{_e(READ_ONLY)}</p>'
    forms = [_cancel_form(view.record.run_id, actions.csrf)]
    forms.extend(_resume_form(view.record.run_id, node, actions.csrf) for node in awaiting)
    return "<h2>Actions</h2>" + "".join(forms)


def _hidden(fields: Iterable[tuple[str, str]]) -> str:
    return "".join(f'<input type="hidden" name="{n}" value="{_e(v)}">' for n, v in fields)


def _cancel_form(run_id: str, csrf: str) -> str:
    return (
        f'<form class="cancel" method="post" action="/runs/{_q(run_id)}/cancel">'
        f'{_hidden([("csrf", csrf)])}<button type="submit">Cancel run</button></form>'
    )


def _resume_form(run_id: str, node: NodeView, csrf: str) -> str:
    options = "".join(f'<option value="{_e(a)}">{_e(a)}</option>' for a in node.actions)
    choose = f'<label>action <select name="action">{options}</select></label>' if options else ""
    fields = [("csrf", csrf), ("node", node.node_id), ("frame", node.frame)]
    return (
        f'<form class="resume" method="post" action="/runs/{_q(run_id)}/resume">'
        f"{_hidden(fields)}<strong>{_e(node.node_id)}</strong> {choose}"
        '<label>output (JSON) <input name="output" value="null"></label>'
        '<button type="submit">Resume</button></form>'
    )
