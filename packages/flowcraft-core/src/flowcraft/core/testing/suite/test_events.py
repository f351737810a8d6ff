"""Middleware around node attempts on workers.

Lifecycle events are the in-memory runtime's (``FlowRuntime.events``): the distributed
worker, client and coordinator emit none, so only middleware is tested here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable

from flowcraft.core._runtime.context import NodeContext
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.nodes import LOG
from flowcraft.core.testing.suite._dsl import bp, e, n

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
