"""Node implementations of the map example."""

from __future__ import annotations

import asyncio
from typing import Any

from flowcraft.core import NodeContext, node


@node
async def score(ctx: NodeContext) -> int:
    """Score one item; bigger items take longer, so they finish out of order."""
    item = int(ctx.input)
    await asyncio.sleep(item / 100)
    return item * 10


@node
async def summarize(ctx: NodeContext) -> dict[str, Any]:
    """The map's output is the list of scores in item order."""
    return {"scores": ctx.input, "best": max(ctx.input)}


registry = {f"examples.map_items.nodes.{fn.__name__}": fn for fn in (score, summarize)}
