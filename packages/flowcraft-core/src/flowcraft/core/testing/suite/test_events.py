"""Lifecycle events across the workers and the client of a session; middleware on workers.

Events are counted per run over the session's shared bus (``Session.events``): every committed
transition once, whichever process decided it, duplicates included; ``NodeStarted`` once per
execution of an attempt (at least once per attempt: an attempt run again after a crash starts
again), so it is checked against the executions the suite's nodes logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from flowcraft.core import events as fe
from flowcraft.core._engine.state import RunStatus
from flowcraft.core._model.graph import Blueprint
from flowcraft.core._runtime.context import NodeContext
from flowcraft.core.testing.harness import Harness, Session
from flowcraft.core.testing.nodes import LOG
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.core.testing.suite._poll import eventually

#: run_id -> (node id, attempt, hook) of every middleware call, in call order.
HOOKS: defaultdict[str, list[tuple[str, int, str]]] = defaultdict(list)

_Next = Callable[[], Awaitable[object]]


class _Recorder:
    """Records each of its hooks (``before`` sync, ``around`` and ``after`` async)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _log(self, ctx: NodeContext, hook: str) -> None:
        HOOKS[ctx.run_id].append((ctx.node_id, ctx.attempt, f"{self.name}.{hook}"))

    def before(self, ctx: NodeContext) -> None:
        self._log(ctx, "before")

    async def around(self, ctx: NodeContext, call_next: _Next) -> object:
        self._log(ctx, "enter")
        try:
            return await call_next()
        finally:
            self._log(ctx, "exit")

    async def after(self, ctx: NodeContext, result: object, error: Exception | None) -> None:
        self._log(ctx, f"after {result!r}" if error is None else f"after {type(error).__name__}")


class _Override:
    """``around`` changes outcomes: rescues node A's error; short-circuits node B."""

    async def around(self, ctx: NodeContext, call_next: _Next) -> object:
        if ctx.node_id == "B":
            return "from-middleware"  # B's implementation never runs
        try:
            return await call_next()
        except RuntimeError:
            return "rescued"


def _wrapped(node: str, attempt: int, outcome: str) -> list[tuple[str, int, str]]:
    hooks = ["outer.before", "inner.before", "outer.enter", "inner.enter", "inner.exit",
             "outer.exit", f"inner.after {outcome}", f"outer.after {outcome}"]  # fmt: skip
    return [(node, attempt, hook) for hook in hooks]


async def test_worker_middleware_wraps_every_attempt_in_order(harness: Harness) -> None:
    retry = {"retry": {"max_attempts": 2}}
    blueprint = bp(
        "middleware",
        [n("A", "const", value=1), n("B", "fail", times=1, config=retry), n("C", "echo")],
        [e("A", "B"), e("B", "C")],
    )
    middleware = [_Recorder("outer"), _Recorder("inner")]
    async with harness.session(blueprint, middleware=middleware) as s:
        handle = await s.start("middleware")
        result = await handle.result(timeout=20)
    assert result.output == "ok"
    hooks = HOOKS[handle.run_id]
    assert [h for h in hooks if h[0] == "A"] == _wrapped("A", 1, "1")
    assert [h for h in hooks if h[0] == "B"] == [
        *_wrapped("B", 1, "RuntimeError"),
        *_wrapped("B", 2, "'ok'"),
    ]
    assert [h for h in hooks if h[0] == "C"] == _wrapped("C", 1, "'ok'")
    assert len(hooks) == 4 * 8  # nothing else: every attempt once, each hook once


async def test_worker_middleware_around_changes_the_committed_outcome(harness: Harness) -> None:
    blueprint = bp(
        "override",
        [n("A", "fail", times=9), n("B", "const", value="b"), n("C", "echo")],
        [e("A", "B"), e("B", "C")],
    )
    async with harness.session(blueprint, middleware=[_Override()]) as s:
        handle = await s.start("override")
        result = await handle.result(timeout=20)
    assert result.errors == ()
    assert result.outputs == {"A": "rescued", "B": "from-middleware", "C": "from-middleware"}
    assert LOG[handle.run_id] == ["A", "C"]


# ---------------------------------------------------------------------- lifecycle events

#: Seconds to let late (duplicate) deliveries arrive before the events are counted.
_SETTLE = 0.3

_Key = tuple[str, str, int]  # (event type, node id, attempt)
_E = TypeVar("_E", bound=fe.FlowEvent)


def _record(session: Session) -> list[fe.FlowEvent]:
    seen: list[fe.FlowEvent] = []
    session.events.subscribe(seen.append)
    return seen


def _of(seen: list[fe.FlowEvent], run_id: str) -> list[fe.FlowEvent]:
    return [event for event in seen if event.run_id == run_id]


def _transitions(events: list[fe.FlowEvent]) -> Counter[_Key]:
    """Every event but node starts, as (type, node id, attempt); run events have node "-"."""
    return Counter(
        (type(event).__name__, event.node_id, event.attempt)
        if isinstance(event, fe.NodeEvent)
        else (type(event).__name__, "-", 0)
        for event in events
        if not isinstance(event, fe.NodeStarted)
    )


def _starts(events: list[fe.FlowEvent]) -> list[tuple[str, int]]:
    return [(x.node_id, x.attempt) for x in events if isinstance(x, fe.NodeStarted)]


def _check_fields(events: list[fe.FlowEvent], run_id: str, since: float) -> None:
    now = time.time()
    for event in events:
        assert event.run_id == run_id
        assert since <= event.at <= now, event
        if isinstance(event, fe.NodeEvent):
            assert (event.frame, type(event.attempt)) == ("", int), event


async def _until(session: Session, run_id: str, status: RunStatus) -> None:
    async def reached() -> bool:
        return await session.client.status(run_id) is status

    await eventually(reached, f"run {run_id} {status.value}")


def _one(events: list[fe.FlowEvent], kind: type[_E]) -> _E:
    (found,) = [event for event in events if isinstance(event, kind)]
    return found


def _diamond() -> Blueprint:
    retry = {"retry": {"max_attempts": 2, "delay": 0.05}}
    return bp(
        "events-diamond",
        [
            n("S", "const", value=1),
            n("B", "fail", times=1, config=retry),
            n("W", "flowcraft.wait"),
            n("X", "echo"),
            n("F", "fail", times=9, config={"fallback": "H"}),
            n("H", "echo"),
            n("D", "echo"),
        ],
        [
            *(e("S", "B"), e("S", "W"), e("S", "X", condition="false"), e("S", "F")),
            *(e("B", "D"), e("W", "D"), e("X", "D"), e("F", "D")),
        ],
    )


#: The committed transitions of a diamond run: S, then B (a retry), W (a wait), X (skipped) and
#: F (failed, its fallback H stands in), joined by D.
_DIAMOND: Counter[_Key] = Counter(
    {
        ("RunStarted", "-", 0): 1,
        ("NodeSucceeded", "S", 1): 1,
        ("NodeRetrying", "B", 1): 1,
        ("NodeSucceeded", "B", 2): 1,
        ("NodeAwaiting", "W", 0): 1,
        ("NodeSkipped", "X", 0): 1,
        ("NodeFailed", "F", 1): 1,
        ("NodeSucceeded", "H", 1): 1,
        ("RunAwaiting", "-", 0): 1,
        ("NodeResumed", "W", 0): 1,
        ("RunResumed", "-", 0): 1,
        ("NodeSucceeded", "D", 1): 1,
        ("RunCompleted", "-", 0): 1,
    }
)
_DIAMOND_STARTS = {("S", 1), ("B", 1), ("B", 2), ("F", 1), ("H", 1), ("D", 1)}


async def _diamond_events(harness: Harness, *, duplicate: bool) -> None:
    since = time.time()
    async with harness.session(_diamond(), workers=3, duplicate=duplicate) as s:
        seen = _record(s)
        handle = await s.start("events-diamond", idempotency_key="diamond")
        await s.start("events-diamond", idempotency_key="diamond")  # the same run: no events
        await _until(s, handle.run_id, RunStatus.AWAITING)
        await handle.resume("W", output="w")
        await handle.resume("W", output="again")  # a no-op: no events
        result = await handle.result(timeout=20)
        await eventually(
            lambda: any(isinstance(x, fe.RunCompleted) for x in _of(seen, handle.run_id)),
            "RunCompleted emitted",
        )
        await asyncio.sleep(_SETTLE)
    assert result.status is RunStatus.COMPLETED
    events = _of(seen, handle.run_id)
    _check_fields(events, handle.run_id, since)
    assert _transitions(events) == _DIAMOND
    starts = _starts(events)
    assert set(starts) == _DIAMOND_STARTS
    assert Counter(node for node, _ in starts) == Counter(LOG[handle.run_id])  # per execution
    assert _one(events, fe.RunCompleted).output == result.output
    assert _one(events, fe.NodeAwaiting).token
    for failed in (_one(events, fe.NodeRetrying), _one(events, fe.NodeFailed)):
        assert failed.error is not None
        assert failed.error.message == "boom"


async def test_events_of_a_diamond_with_a_retry_a_wait_a_skip_and_a_fallback(
    harness: Harness,
) -> None:
    await _diamond_events(harness, duplicate=False)


async def test_duplicate_deliveries_emit_each_committed_transition_once(harness: Harness) -> None:
    await _diamond_events(harness, duplicate=True)


async def test_failure_and_cancellation_events(harness: Harness) -> None:
    failing = bp(
        "events-fail",
        [n("S", "const", value=1), n("F", "fail", times=9), n("W", "flowcraft.wait")],
        [e("S", "F"), e("S", "W")],
    )
    waiting = bp("events-cancel", [n("W", "flowcraft.wait"), n("T", "echo")], [e("W", "T")])
    since = time.time()
    async with harness.session(failing, waiting) as s:
        seen = _record(s)
        failed = await s.run("events-fail")
        handle = await s.start("events-cancel")
        await _until(s, handle.run_id, RunStatus.AWAITING)
        await handle.cancel()
        await handle.cancel()  # a no-op: no events
        cancelled = await handle.result(timeout=20)
        await eventually(
            lambda: any(isinstance(x, fe.RunFailed) for x in _of(seen, failed.run_id)),
            "RunFailed emitted",
        )
        await asyncio.sleep(_SETTLE)
    assert (failed.status, cancelled.status) == (RunStatus.FAILED, RunStatus.CANCELLED)
    events = _of(seen, failed.run_id)
    _check_fields(events, failed.run_id, since)
    assert _transitions(events) == Counter(
        {
            ("RunStarted", "-", 0): 1,
            ("NodeSucceeded", "S", 1): 1,
            ("NodeAwaiting", "W", 0): 1,
            ("NodeFailed", "F", 1): 1,
            ("NodeCancelled", "W", 0): 1,
            ("RunFailed", "-", 0): 1,
        }
    )
    assert sorted(_starts(events)) == [("F", 1), ("S", 1)]
    assert _one(events, fe.RunFailed).errors == failed.errors
    events = _of(seen, handle.run_id)
    _check_fields(events, handle.run_id, since)
    assert _transitions(events) == Counter(
        {
            ("RunStarted", "-", 0): 1,
            ("NodeAwaiting", "W", 0): 1,
            ("RunAwaiting", "-", 0): 1,
            ("NodeCancelled", "W", 0): 1,
            ("RunCancelled", "-", 0): 1,
        }
    )
    assert _starts(events) == []


async def test_a_failing_or_slow_listener_never_fails_or_holds_a_run(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()

    def broken(event: fe.FlowEvent) -> None:
        raise RuntimeError(f"listener bug on {type(event).__name__}")

    async def broken_later(event: fe.FlowEvent) -> None:
        raise RuntimeError("async listener bug")

    async def slow(event: fe.FlowEvent) -> None:
        await release.wait()  # never returns while the run goes on

    retry = {"retry": {"max_attempts": 2}}
    blueprint = bp(
        "events-listeners",
        [n("A", "const", value=1), n("B", "fail", times=1, config=retry), n("C", "echo")],
        [e("A", "B"), e("B", "C")],
    )
    with caplog.at_level(logging.ERROR, logger="flowcraft.events"):
        async with harness.session(blueprint) as s:
            s.events.subscribe(broken)
            s.events.subscribe(broken_later)
            s.events.subscribe(slow)
            seen = _record(s)
            try:
                result = await s.run("events-listeners")
                await eventually(
                    lambda: any(isinstance(x, fe.RunCompleted) for x in seen),
                    "RunCompleted emitted",
                )
            finally:
                release.set()
            await asyncio.sleep(0)  # the async listeners finish (and fail)
    assert (result.status, result.output) == (RunStatus.COMPLETED, "ok")
    events = _of(seen, result.run_id)
    assert [type(x).__name__ for x in events if isinstance(x, fe.RunEvent)] == [
        "RunStarted",
        "RunCompleted",
    ]
    assert sorted(_starts(events)) == [("A", 1), ("B", 1), ("B", 2), ("C", 1)]
    assert "listener bug on RunStarted" in caplog.text
    assert "async listener bug" in caplog.text
