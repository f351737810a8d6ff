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
    """The node wrapped by ``middleware`` (see the module docstring for the order)."""
    if not middleware:
        return node
    for item in middleware:
        if not any(hasattr(item, m) for m in ("before", "around", "after")):
            raise TypeError(f"{item!r} is not a middleware: it has no before/around/after")
    inner = node
    for item in reversed(middleware):
        if hasattr(item, "around"):
            inner = _around(item, inner)

    async def call(ctx: NodeContext) -> object:
        for item in middleware:
            if hasattr(item, "before"):
                await _maybe_await(item.before(ctx))
        try:
            result = await inner(ctx)
        except Exception as exc:
            await _after(middleware, ctx, None, exc)
            raise
        await _after(middleware, ctx, result, None)
        return result

    return call


def _around(item: object, inner: NodeFn) -> NodeFn:
    async def call(ctx: NodeContext) -> object:
        def call_next() -> Awaitable[object]:
            return inner(ctx)

        around: Callable[..., object] = getattr(item, "around")  # noqa: B009
        return await _maybe_await(around(ctx, call_next))

    return call


async def _after(
    middleware: Sequence[Any], ctx: NodeContext, result: object, error: Exception | None
) -> None:
    for item in reversed(middleware):
        hook: Callable[..., object] | None = getattr(item, "after", None)
        if hook is not None:
            await _maybe_await(hook(ctx, result, error))
