"""Node implementations of the loop example."""

from __future__ import annotations

from typing import Any

from flowcraft.core import NodeContext, node


@node
async def double(ctx: NodeContext) -> int:
    """One iteration: the previous iteration's output is this one's input."""
    ctx.context.set("iterations", ctx.context.get("iterations", 0) + 1)
    return int(ctx.input) * 2


@node
async def report(ctx: NodeContext) -> dict[str, Any]:
    """Report the loop's final value."""
    return {"value": ctx.input, "iterations": ctx.context.get("iterations")}


registry = {f"examples.loop.nodes.{fn.__name__}": fn for fn in (double, report)}
