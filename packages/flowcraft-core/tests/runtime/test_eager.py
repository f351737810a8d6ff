"""Eager starts (``_runtime/eager.py``): one context from the first step to the last."""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

from flowcraft.core._runtime.eager import start_eagerly

VAR: ContextVar[str] = ContextVar("test_eager_var", default="caller")


async def test_a_variable_set_before_a_suspension_is_reset_after_it() -> None:
    seen: list[str] = []

    async def node() -> None:
        token = VAR.set("node")
        await asyncio.sleep(0)  # suspends: a task continues it
        seen.append(VAR.get())
        VAR.reset(token)  # a token of another context would raise ValueError here

    task = start_eagerly(node())
    assert task is not None
    assert VAR.get() == "caller"  # the node's first step did not leak into the caller
    await task
    assert seen == ["node"]
    assert VAR.get() == "caller"


async def test_a_node_that_never_suspends_needs_no_task_and_leaks_nothing() -> None:
    async def node() -> None:
        VAR.set("node")

    assert start_eagerly(node()) is None
    assert VAR.get() == "caller"
