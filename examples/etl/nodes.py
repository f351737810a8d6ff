"""Node implementations of the ETL example (sync and async forms side by side)."""

from __future__ import annotations

import asyncio
from typing import Any

from flowcraft.core import NodeContext, node

CUSTOMERS = {"c1": "Ada", "c2": "Grace", "c3": "Edsger"}


@node
def extract(ctx: NodeContext) -> list[dict[str, Any]]:
    """Read the orders from the run input."""
    orders: list[dict[str, Any]] = ctx.input["orders"]
    return orders


@node
def clean_orders(ctx: NodeContext) -> list[dict[str, Any]]:
    """Drop invalid orders (a plain function: it runs in the thread pool)."""
    return [order for order in ctx.input if order["amount"] > 0]


@node
async def fetch_rates(ctx: NodeContext) -> dict[str, float]:
    """A flaky rates API: the first attempt of every run fails, the retry succeeds."""
    await asyncio.sleep(0.01)
    if ctx.attempt == 1:
        raise ConnectionError("rates API unavailable")
    return {"EUR": 1.0, "USD": 0.92, "GBP": 1.17}


@node
def default_rates(ctx: NodeContext) -> dict[str, float]:
    """Stands in for fetch_rates when every attempt failed."""
    return {"EUR": 1.0, "USD": 1.0, "GBP": 1.0}


@node
async def load_customers(ctx: NodeContext) -> dict[str, str]:
    """Look up customer names."""
    ids = {order["customer"] for order in ctx.input}
    return {cid: CUSTOMERS[cid] for cid in sorted(ids)}


@node
def transform(ctx: NodeContext) -> dict[str, Any]:
    """Join the three branches: the input maps each predecessor to its output."""
    orders, rates, customers = (
        ctx.input["clean_orders"],
        ctx.input["fetch_rates"],
        ctx.input["load_customers"],
    )
    rows = [
        {
            "id": o["id"],
            "customer": customers[o["customer"]],
            "eur": round(o["amount"] * rates[o["currency"]], 2),
        }
        for o in orders
    ]
    return {"rows": rows}


@node
async def load(ctx: NodeContext) -> dict[str, Any]:
    """Write a summary to the run context and return it."""
    total = round(sum(row["eur"] for row in ctx.input["rows"]), 2)
    ctx.context.set("loaded_rows", len(ctx.input["rows"]))
    return {"rows": len(ctx.input["rows"]), "total_eur": total}


registry = {
    f"examples.etl.nodes.{fn.__name__}": fn
    for fn in (extract, clean_orders, fetch_rates, default_rates, load_customers, transform, load)
}
