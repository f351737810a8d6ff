"""Node implementations of the approval example."""

from __future__ import annotations

from typing import Any

from flowcraft.core import NodeContext, node


@node
async def draft(ctx: NodeContext) -> dict[str, Any]:
    """Prepare a document for review and remember its title in the context."""
    ctx.context.set("title", ctx.input["title"])
    return {"title": ctx.input["title"], "status": "draft"}


@node
async def publish(ctx: NodeContext) -> dict[str, Any]:
    """Publish; the input is what the reviewer resumed the wait with."""
    return {"published": ctx.context.get("title"), "approved_by": ctx.input["by"]}


@node
async def archive(ctx: NodeContext) -> dict[str, Any]:
    """Archive a rejected draft."""
    return {"archived": ctx.context.get("title"), "reason": (ctx.input or {}).get("reason")}


registry = {f"examples.approval.nodes.{fn.__name__}": fn for fn in (draft, publish, archive)}
