"""FlowRuntime end to end in memory: node forms, timeouts, retries, waits, events, middleware."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import pytest
from flowcraft.core._engine.plan import (
    EdgeSpec,
    MapSpec,
    NodeKind,
    Plan,
    PlanNode,
    RetryPolicy,
    SubflowSpec,
    build_plan,
)
from flowcraft.core._engine.state import RunStatus
from flowcraft.core._runtime import events as fe
from flowcraft.core._runtime.context import NodeContext, Result
from flowcraft.core._runtime.runtime import FlowRuntime
from flowcraft.core.errors import NonRetryableError, ResumeError


def chain(*nodes: PlanNode, id: str = "bp") -> Plan:
    edges = [EdgeSpec(source=a.id, target=b.id) for a, b in itertools.pairwise(nodes)]
    return build_plan(id=id, version="1", nodes=list(nodes), edges=edges)


async def test_async_and_sync_nodes_in_a_chain() -> None:
    async def double(ctx: NodeContext) -> int:
        return int(ctx.input) * 2

    def plus_one(ctx: NodeContext) -> int:
        assert threading.current_thread() is not threading.main_thread()
        return int(ctx.input) + 1

    rt = FlowRuntime(registry={"double": double, "plus": plus_one})
    result = await rt.run(chain(PlanNode(id="a", uses="double"), PlanNode(id="b", uses="plus")), 4)
    assert result.status is RunStatus.COMPLETED
    assert result.output == 9
    assert result.outputs == {"a": 8, "b": 9}


async def test_sync_nodes_run_in_parallel_without_blocking_the_loop() -> None:
    def slow(ctx: NodeContext) -> str:
        time.sleep(0.3)
        return ctx.node_id

    ticks: list[float] = []

    async def ticker() -> None:
        for _ in range(5):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.05)

    plan = build_plan(
        id="par",
        version="1",
        nodes=[PlanNode(id="a", uses="slow"), PlanNode(id="b", uses="slow")],
        edges=[],
    )
    rt = FlowRuntime(registry={"slow": slow})
    began = time.monotonic()
    result, _ = await asyncio.gather(rt.run(plan), ticker())
    assert result.output == {"a": "a", "b": "b"}
    assert time.monotonic() - began < 0.55  # both slept at once, not one after the other
    assert len(ticks) == 5
    assert ticks[1] - ticks[0] < 0.2  # the loop kept turning


async def test_timeout_cancels_the_attempt_and_counts_as_failure() -> None:
    finished = asyncio.Event()

    async def hang(ctx: NodeContext) -> None:
        try:
            await asyncio.sleep(10)
        finally:
            finished.set()

    rt = FlowRuntime(registry={"hang": hang})
    plan = chain(PlanNode(id="h", uses="hang", timeout=0.05, retry=RetryPolicy(max_attempts=2)))
    result = await rt.run(plan)
    assert result.status is RunStatus.FAILED
    (error,) = result.errors
    assert (error.node_id, error.attempt, error.type) == ("h", 2, "TimeoutError")
    assert "timed out after 0.05s" in error.message
    assert finished.is_set()


async def test_failed_attempt_leaves_no_context_writes() -> None:
    async def flaky(ctx: NodeContext) -> str:
        if ctx.attempt == 1:
            ctx.context.set("k", 1)
            raise RuntimeError("first attempt")
        ctx.context.set("j", 2)
        return "ok"

    rt = FlowRuntime(registry={"flaky": flaky})
    result = await rt.run(chain(PlanNode(id="n", uses="flaky", retry=RetryPolicy(max_attempts=2))))
    assert result.context == {"j": 2}


async def test_error_keeps_type_and_message_and_non_retryable_stops_retries() -> None:
    class BoomError(NonRetryableError):
        pass

    calls: list[int] = []

    async def fail(ctx: NodeContext) -> None:
        calls.append(ctx.attempt)
        raise BoomError("no point retrying")

    rt = FlowRuntime(registry={"fail": fail})
    result = await rt.run(chain(PlanNode(id="f", uses="fail", retry=RetryPolicy(max_attempts=5))))
    assert calls == [1]
    (error,) = result.errors
    assert error.type.endswith("BoomError")
    assert error.message == "no point retrying"
    assert error.traceback is not None
    assert "no point retrying" in error.traceback


async def test_class_node_prep_once_exec_retried_post_once() -> None:
    log: list[str] = []

    class Node:
        def prep(self, ctx: NodeContext) -> int:
            log.append("prep")
            return int(ctx.input)

        async def exec(self, prepared: int, ctx: NodeContext) -> int:
            log.append(f"exec{ctx.attempt}")
            if ctx.attempt < 3:
                raise RuntimeError("again")
            return prepared * 10

        def recover(self, error: Exception, ctx: NodeContext) -> None:
            log.append("recover")

        async def post(self, result: int, ctx: NodeContext) -> Result:
            log.append("post")
            return Result(output=result + 1, action="done")

    rt = FlowRuntime(registry={"n": Node})
    result = await rt.run(chain(PlanNode(id="n", uses="n", retry=RetryPolicy(max_attempts=3))), 2)
    assert result.output == 21
    assert log == ["prep", "exec1", "recover", "exec2", "recover", "exec3", "post"]


async def test_class_node_fallback_hook_after_last_attempt() -> None:
    class Node:
        async def exec(self, prepared: Any, ctx: NodeContext) -> str:
            raise RuntimeError("always")

        async def fallback(self, prepared: Any, error: Exception, ctx: NodeContext) -> str:
            return f"fallback after {ctx.attempt}: {error}"

    rt = FlowRuntime(registry={"n": Node})
    result = await rt.run(chain(PlanNode(id="n", uses="n", retry=RetryPolicy(max_attempts=2))))
    assert result.output == "fallback after 2: always"


async def test_middleware_order_short_circuit_and_replacement() -> None:
    log: list[str] = []

    class Outer:
        def before(self, ctx: NodeContext) -> None:
            log.append(f"outer.before {ctx.node_id}")

        async def around(self, ctx: NodeContext, call_next: Any) -> object:
            log.append("outer.around>")
            value = await call_next()
            log.append("outer.around<")
            return f"[{value}]"

        def after(self, ctx: NodeContext, result: object, error: Exception | None) -> None:
            log.append(f"outer.after {result}")

    class Inner:
        def before(self, ctx: NodeContext) -> None:
            log.append("inner.before")

        async def around(self, ctx: NodeContext, call_next: Any) -> object:
            if ctx.params.get("skip"):
                return "short"
            return await call_next()

        def after(self, ctx: NodeContext, result: object, error: Exception | None) -> None:
            log.append("inner.after")

    async def node(ctx: NodeContext) -> str:
        log.append("node")
        return "v"

    rt = FlowRuntime(registry={"n": node}, middleware=[Outer(), Inner()])
    assert (await rt.run(chain(PlanNode(id="a", uses="n")))).output == "[v]"
    assert log == [
        "outer.before a",
        "inner.before",
        "outer.around>",
        "node",
        "outer.around<",
        "inner.after",
        "outer.after [v]",
    ]
    skipped = await rt.run(chain(PlanNode(id="b", uses="n", params={"skip": True}), id="bp2"))
    assert skipped.output == "[short]"


async def test_wrap_middleware_is_built_once_and_takes_around_s_place() -> None:
    log: list[str] = []
    built: list[str] = []

    class Wrapping:
        def before(self, ctx: NodeContext) -> None:
            log.append("wrap.before")

        def wrap(self, call: Any) -> Any:
            built.append("wrap")

            def attempt(ctx: NodeContext) -> Any:
                log.append(f"wrap {ctx.node_id}#{ctx.attempt}")
                return call(ctx)

            return attempt

    class Around:
        async def around(self, ctx: NodeContext, call_next: Any) -> object:
            log.append("around>")
            value = await call_next()
            log.append("around<")
            return f"[{value}]"

    async def node(ctx: NodeContext) -> str:
        log.append("node")
        if ctx.attempt == 1:
            raise RuntimeError("once")
        return "v"

    rt = FlowRuntime(registry={"n": node}, middleware=[Around(), Wrapping()])
    plan = chain(PlanNode(id="a", uses="n", retry=RetryPolicy(max_attempts=2)))
    assert (await rt.run(plan)).output == "[v]"
    assert built == ["wrap"]
    first = ["wrap.before", "around>", "wrap a#1", "node"]
    assert log == [*first, "wrap.before", "around>", "wrap a#2", "node", "around<"]


@pytest.mark.parametrize(
    ("middleware", "message"),
    [
        (type("Both", (), {"wrap": lambda s, c: c, "around": lambda s, x, n: n()}), "both wrap"),
        (type("Bad", (), {"wrap": lambda s, c: None}), "wrap returned None, not a callable"),
        (type("Nothing", (), {}), "it has no before/wrap/around/after"),
    ],
)
async def test_a_wrong_middleware_is_refused_when_the_node_is_built(
    middleware: type, message: str
) -> None:
    async def node(ctx: NodeContext) -> str:
        return "v"

    rt = FlowRuntime(registry={"n": node}, middleware=[middleware()])
    result = await rt.run(chain(PlanNode(id="a", uses="n")))
    assert result.status is RunStatus.FAILED
    assert message in result.errors[0].message


async def test_events_are_typed_ordered_and_listener_failures_never_fail_a_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def broken(event: fe.FlowEvent) -> None:
        raise RuntimeError("listener bug")

    async def collect(event: fe.FlowEvent) -> None:
        seen.append(type(event).__name__)

    async def flaky(ctx: NodeContext) -> str:
        if ctx.attempt == 1:
            raise RuntimeError("once")
        return "ok"

    rt = FlowRuntime(registry={"f": flaky})
    rt.events.subscribe(broken)
    rt.events.subscribe(collect)
    result = await rt.run(chain(PlanNode(id="f", uses="f", retry=RetryPolicy(max_attempts=2))))
    await asyncio.sleep(0)
    assert result.ok
    assert seen == [
        "RunStarted",
        "NodeStarted",
        "NodeRetrying",
        "NodeStarted",
        "NodeSucceeded",
        "RunCompleted",
    ]
    assert "listener bug" in caplog.text


async def test_unserialisable_output_fails_the_node_with_a_clear_error() -> None:
    async def bad(ctx: NodeContext) -> object:
        return {"when": object()}

    result = await FlowRuntime(registry={"bad": bad}).run(chain(PlanNode(id="bad", uses="bad")))
    (error,) = result.errors
    assert error.type == "SerializationError"
    assert "node bad" in error.message


async def test_unknown_uses_fails_the_run_naming_it() -> None:
    result = await FlowRuntime(registry={"known": lambda c: 1}).run(
        chain(PlanNode(id="x", uses="knwon"))
    )
    (error,) = result.errors
    assert "knwon" in error.message
    assert "did you mean 'known'" in error.message


def _wait_plan() -> Plan:
    return build_plan(
        id="approval",
        version="1",
        nodes=[
            PlanNode(id="W", kind=NodeKind.WAIT),
            PlanNode(id="ok", uses="echo"),
            PlanNode(id="no", uses="echo"),
        ],
        edges=[
            EdgeSpec(source="W", target="ok", action="approve"),
            EdgeSpec(source="W", target="no", action="reject"),
        ],
    )


async def _echo(ctx: NodeContext) -> object:
    return ctx.input


async def test_wait_resume_by_handle_and_token_and_errors() -> None:
    rt = FlowRuntime(registry={"echo": _echo})
    handle = await rt.start(_wait_plan())
    await asyncio.sleep(0)
    assert handle.status() is RunStatus.AWAITING
    with pytest.raises(ResumeError, match=r"'ok'.*not awaiting") as info:
        await handle.resume("ok")
    assert info.value.code in ("not-awaiting", "unknown-node")
    await handle.resume("W", output={"by": "ann"}, action="approve")
    await handle.resume("W", output={"by": "ann"}, action="approve")  # duplicate: no-op
    result = await handle.result(timeout=2)
    assert result.outputs["ok"] == {"by": "ann"}
    assert "no" not in result.outputs


async def test_a_resume_with_an_undeclared_action_is_refused_and_the_wait_stays() -> None:
    rt = FlowRuntime(registry={"echo": _echo})
    handle = await rt.start(_wait_plan())
    await asyncio.sleep(0)
    (waiting,) = handle.snapshot().awaiting
    assert (waiting.node_id, waiting.frame, waiting.actions) == ("W", "", ("approve", "reject"))
    assert waiting.token
    with pytest.raises(ResumeError, match=r"no edge for action 'maybe'.*approve, reject") as info:
        await handle.resume("W", action="maybe")
    assert info.value.code == "unknown-action"
    assert handle.status() is RunStatus.AWAITING  # nothing moved: resume it properly
    assert handle.snapshot().to_dict()["awaiting"][0]["actions"] == ["approve", "reject"]
    await handle.resume(token=waiting.token, output="fine", action="reject")
    result = await handle.result(timeout=2)
    assert (result.outputs["no"], result.awaiting) == ("fine", ())
    assert "awaiting" not in result.to_dict()


async def test_cancel_keeps_committed_work() -> None:
    started = asyncio.Event()

    async def a(ctx: NodeContext) -> int:
        ctx.context.set("a", 1)
        return 1

    async def long(ctx: NodeContext) -> str:
        started.set()
        await asyncio.sleep(10)
        return "never"

    rt = FlowRuntime(registry={"a": a, "long": long})
    handle = await rt.start(chain(PlanNode(id="A", uses="a"), PlanNode(id="B", uses="long")))
    await asyncio.wait_for(started.wait(), 2)
    await handle.cancel()
    await handle.cancel()
    result = await handle.result(timeout=2)
    assert result.status is RunStatus.CANCELLED
    assert result.context == {"a": 1}
    assert result.outputs == {"A": 1}


async def test_subflow_waits_resumes_by_child_token_and_cancel_propagates() -> None:
    child = build_plan(
        id="child", version="1", nodes=[PlanNode(id="CW", kind=NodeKind.WAIT)], edges=[]
    )
    parent = chain(
        PlanNode(id="SF", kind=NodeKind.SUBFLOW, subflow=SubflowSpec(blueprint="child")),
        id="parent",
    )
    tokens: list[str] = []
    rt = FlowRuntime(blueprints=[child])
    rt.events.subscribe(lambda e: tokens.append(e.token or ""), fe.NodeAwaiting)  # type: ignore[attr-defined]
    handle = await rt.start(parent, "x")
    for _ in range(5):
        await asyncio.sleep(0)
    assert handle.status() is RunStatus.AWAITING
    (token,) = [t for t in tokens if ":CW" in t]
    await rt.resume(handle.run_id, token=token, output="approved")
    assert (await handle.result(timeout=2)).output == "approved"

    second = await rt.start(parent, "y")
    for _ in range(5):
        await asyncio.sleep(0)
    await second.cancel()
    assert (await second.result(timeout=2)).status is RunStatus.CANCELLED
    for _ in range(5):
        await asyncio.sleep(0)
    children = [d for rid, d in rt._drivers.items() if rid.startswith(f"{second.run_id}:")]
    assert [d.state.status for d in children] == [RunStatus.CANCELLED]


async def test_map_respects_concurrency_and_item_order() -> None:
    active = 0
    peak = 0

    async def work(ctx: NodeContext) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01 * (5 - int(ctx.input)))
        active -= 1
        return int(ctx.input) * 10

    body = build_plan(id="body", version="1", nodes=[PlanNode(id="w", uses="work")], edges=[])
    plan = chain(
        PlanNode(id="M", kind=NodeKind.MAP, map=MapSpec(body=body, items=None, concurrency=2))
    )
    result = await FlowRuntime(registry={"work": work}).run(plan, [1, 2, 3, 4, 5])
    assert result.output == [10, 20, 30, 40, 50]
    assert peak == 2


async def test_idempotent_start_returns_the_same_run() -> None:
    calls: list[str] = []

    async def once(ctx: NodeContext) -> str:
        calls.append(ctx.run_id)
        return "x"

    rt = FlowRuntime(registry={"once": once})
    plan = chain(PlanNode(id="o", uses="once"))
    first = await rt.start(plan, idempotency_key="k")
    second = await rt.start(plan, idempotency_key="k")
    assert first.run_id == second.run_id
    await first.result(timeout=2)
    assert len(calls) == 1


def test_run_sync() -> None:
    rt = FlowRuntime(registry={"echo": _echo})
    assert rt.run_sync(chain(PlanNode(id="e", uses="echo")), {"a": (1, 2)}).output == {"a": [1, 2]}
