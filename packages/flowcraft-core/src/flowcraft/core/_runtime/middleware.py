"""Middleware: code that wraps every node attempt (tracing, metrics, policies).

A middleware is any object with some of these (sync or async) methods:

* ``before(ctx)``: called before the attempt, in list order.
* ``around(ctx, call_next)``: wraps the attempt; ``await call_next()`` runs the rest of the
  chain and the node. Returning without calling it short-circuits the node; returning another
  value replaces the result. The first middleware in the list is the outermost.
* ``after(ctx, result, error)``: called after the attempt, in reverse list order, with the
  result or the exception (observing only; ``around`` is the place to change outcomes).
* ``wrap(call)``: the hot-path form of ``around``, called once per node implementation as the
  chain is built (not per attempt) with the rest of the chain, ``call(ctx)`` returning an
  awaitable of the result; returns the callable that replaces it, with the same signature.
  Nothing is allocated per attempt but what that callable allocates (``around`` costs a
  ``call_next`` closure per attempt), and it may hand back ``call(ctx)`` itself when it has
  nothing to do for an attempt. A middleware has ``wrap`` or ``around``, not both; ``wrap``
  takes ``around``'s place in the order.

Order for ``[a, b]``: a.before, b.before, a.around( b.around( node ) ), b.after, a.after.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, cast

from flowcraft.core._runtime.context import NodeContext
from flowcraft.core._runtime.nodes import NodeFn


async def _maybe_await(value: object) -> object:
    if inspect.isawaitable(value):
        return await value
    return value


def compose(middleware: Sequence[Any], node: NodeFn) -> NodeFn:
    """The node wrapped by ``middleware`` (see the module docstring for the order).

    The hooks are looked up once, here: a chain of ``wrap`` and ``async def around`` methods
    adds no coroutine of its own per attempt, only the middleware's.
    """
    if not middleware:
        return node
    for item in middleware:
        _check(item)
    inner = node
    for item in reversed(middleware):
        if hasattr(item, "wrap"):
            inner = _wrapped(item, inner)
        elif hasattr(item, "around"):
            inner = _around(item.around, inner)
    befores = [item.before for item in middleware if hasattr(item, "before")]
    afters = [item.after for item in reversed(middleware) if hasattr(item, "after")]
    if not befores and not afters:
        return inner
    return _hooked(befores, inner, afters)


def _check(item: object) -> None:
    if not any(hasattr(item, hook) for hook in ("before", "wrap", "around", "after")):
        raise TypeError(f"{item!r} is not a middleware: it has no before/wrap/around/after")
    if hasattr(item, "wrap") and hasattr(item, "around"):
        raise TypeError(f"{item!r} has both wrap and around: a middleware has one of them")


class _Wraps(Protocol):
    def wrap(self, call: NodeFn) -> object: ...


def _wrapped(item: _Wraps, inner: NodeFn) -> NodeFn:
    fn = item.wrap(inner)
    if not callable(fn):
        raise TypeError(f"{item!r}.wrap returned {fn!r}, not a callable")
    return cast(NodeFn, fn)


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
