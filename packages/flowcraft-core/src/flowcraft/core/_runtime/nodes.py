"""Node forms: plain functions, ``async def`` functions and class nodes, as one async callable.

* ``async def f(ctx)``: awaited on the event loop.
* ``def f(ctx)``: run in a bounded thread pool so it cannot block the loop; mark it
  ``inline=True`` (``@node(inline=True)`` or the runtime's ``inline_sync``) to call it directly
  when it is known not to block.
* A class with ``exec`` (and optionally ``prep``, ``post``, ``fallback``, ``recover``):
  ``prep(ctx)`` runs once per node instance (its result is kept across attempts), ``exec(prepared,
  ctx)`` is the only retried step, ``post(result, ctx)`` runs once after a successful ``exec``.
  ``recover(error, ctx)`` runs after every failed ``exec`` (cleanup); ``fallback(prepared, error,
  ctx)`` runs when the last attempt's ``exec`` failed and its value stands in for the result.
  Each method may be sync or async. A fresh instance serves each attempt.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any

from flowcraft.core._runtime.context import NodeContext

NodeFn = Callable[[NodeContext], Awaitable[object]]

#: Attribute set by ``@node(inline=True)`` on sync functions that never block.
INLINE_ATTR = "__flowcraft_inline__"


class NodeForms:
    """Turns registry entries into async callables; owns the thread pool and prep results."""

    def __init__(self, executor: Executor, *, inline_sync: bool = False) -> None:
        self._executor = executor
        self._inline_sync = inline_sync
        self._prepared: dict[tuple[str, str, str], object] = {}

    def wrap(self, impl: object) -> NodeFn:
        """The async callable for one registry entry."""
        if inspect.isclass(impl):
            return self._class_node(impl)
        if inspect.iscoroutinefunction(impl):
            return impl
        if hasattr(impl, "exec") and not callable(impl):
            raise TypeError(f"{impl!r} has exec() but is an instance: register the class")
        if callable(impl):
            return self._sync(impl)
        raise TypeError(f"a node implementation must be callable or a class, got {impl!r}")

    def _sync(self, fn: Callable[..., object]) -> NodeFn:
        inline = self._inline_sync or getattr(fn, INLINE_ATTR, False)

        async def call(ctx: NodeContext) -> object:
            if inline:
                return fn(ctx)
            loop = asyncio.get_running_loop()  # the thread sees the task's context variables
            run = contextvars.copy_context().run
            return await loop.run_in_executor(self._executor, run, fn, ctx)

        return call

    async def _call(self, method: Callable[..., Any], *args: object) -> object:
        if inspect.iscoroutinefunction(method):
            return await method(*args)
        if self._inline_sync or getattr(method, INLINE_ATTR, False):
            return method(*args)
        loop = asyncio.get_running_loop()
        run = contextvars.copy_context().run
        return await loop.run_in_executor(self._executor, lambda: run(method, *args))

    def _class_node(self, cls: type) -> NodeFn:
        if not hasattr(cls, "exec"):
            raise TypeError(f"class node {cls.__qualname__} needs an exec() method")

        async def call(ctx: NodeContext) -> object:
            instance = cls()
            key = (ctx.run_id, ctx.node_id, ctx.frame)
            prepared = await self._prep(instance, key, ctx)
            try:
                result = await self._call(instance.exec, prepared, ctx)
            except Exception as exc:
                result = await self._exec_failed(instance, key, prepared, exc, ctx)
            self._prepared.pop(key, None)
            if hasattr(instance, "post"):
                return await self._call(instance.post, result, ctx)
            return result

        return call

    async def _prep(self, instance: object, key: tuple[str, str, str], ctx: NodeContext) -> object:
        if key in self._prepared:
            return self._prepared[key]
        prep = getattr(instance, "prep", None)
        prepared = ctx.input if prep is None else await self._call(prep, ctx)
        self._prepared[key] = prepared
        return prepared

    async def _exec_failed(
        self,
        instance: object,
        key: tuple[str, str, str],
        prepared: object,
        exc: Exception,
        ctx: NodeContext,
    ) -> object:
        recover = getattr(instance, "recover", None)
        if recover is not None:
            await self._call(recover, exc, ctx)
        last = ctx.attempt >= ctx.max_attempts
        if last:
            self._prepared.pop(key, None)
        fallback = getattr(instance, "fallback", None)
        if last and fallback is not None:
            return await self._call(fallback, prepared, exc, ctx)
        raise exc
