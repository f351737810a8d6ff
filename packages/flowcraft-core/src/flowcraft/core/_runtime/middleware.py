"""Middleware: code that wraps every node attempt (tracing, metrics, policies).

A middleware is any object with some of these (sync or async) methods:

* ``before(ctx)``: called before the attempt, in list order.
* ``around(ctx, call_next)``: wraps the attempt; ``await call_next()`` runs the rest of the
  chain and the node. Returning without calling it short-circuits the node; returning another
  value replaces the result. The first middleware in the list is the outermost.
* ``after(ctx, result, error)``: called after the attempt, in reverse list order, with the
  result or the exception (observing only; ``around`` is the place to change outcomes).

Order for ``[a, b]``: a.before, b.before, a.around( b.around( node ) ), b.after, a.after.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from flowcraft.core._runtime.context import NodeContext
from flowcraft.core._runtime.nodes import NodeFn


async def _maybe_await(value: object) -> object:
    if inspect.isawaitable(value):
        return await value
    return value


def compose(middleware: Sequence[Any], node: NodeFn) -> NodeFn:
    """The node wrapped by ``middleware`` (see the module docstring for the order).

    The hooks are looked up once, here: an ``around``-only chain of ``async def`` methods adds
    no coroutine of its own per attempt, only the middleware's.
    """
    if not middleware:
        return node
    for item in middleware:
        if not any(hasattr(item, m) for m in ("before", "around", "after")):
            raise TypeError(f"{item!r} is not a middleware: it has no before/around/after")
    inner = node
    for item in reversed(middleware):
        if hasattr(item, "around"):
            inner = _around(item.around, inner)
    befores = [item.before for item in middleware if hasattr(item, "before")]
    afters = [item.after for item in reversed(middleware) if hasattr(item, "after")]
    if not befores and not afters:
        return inner
    return _hooked(befores, inner, afters)


def _hooked(
    befores: Sequence[Callable[..., object]], inner: NodeFn, afters: Sequence[Callable[..., object]]
) -> NodeFn:
    async def call(ctx: NodeContext) -> object:
        for before in befores:
            await _maybe_await(before(ctx))
        try:
            result = await inner(ctx)
        except Exception as exc:
            await _after(afters, ctx, None, exc)
            raise
        await _after(afters, ctx, result, None)
        return result

    return call


def _around(around: Callable[..., object], inner: NodeFn) -> NodeFn:
    if inspect.iscoroutinefunction(around):  # its coroutine is the call: no layer of ours

        def direct(ctx: NodeContext) -> Awaitable[object]:
            return around(ctx, lambda: inner(ctx))

        return direct

    async def call(ctx: NodeContext) -> object:
        return await _maybe_await(around(ctx, lambda: inner(ctx)))

    return call


async def _after(
    afters: Sequence[Callable[..., object]],
    ctx: NodeContext,
    result: object,
    error: Exception | None,
) -> None:
    for hook in afters:
        await _maybe_await(hook(ctx, result, error))
