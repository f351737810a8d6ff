"""Node implementations the conformance suite runs (stable ``uses`` keys: ``suite.*``).

They take their behaviour from ``params`` so the suite's blueprints are plain data, and they
append to :data:`LOG` (per process) so tests can count executions when workers run in-process.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from flowcraft.core._runtime.context import NodeContext, Result

#: run_id -> node ids in execution order (this process only).
LOG: defaultdict[str, list[str]] = defaultdict(list)

#: run_id -> the tickets ``ticket`` handed out, one per execution (this process only).
TICKETS: defaultdict[str, list[str]] = defaultdict(list)


async def const(ctx: NodeContext) -> Any:  # noqa: ANN401 - any JSON value
    """Return ``params.value``."""
    LOG[ctx.run_id].append(ctx.node_id)
    return ctx.params.get("value")


async def echo(ctx: NodeContext) -> Any:  # noqa: ANN401 - any JSON value
    """Return the input."""
    LOG[ctx.run_id].append(ctx.node_id)
    return ctx.input


async def act(ctx: NodeContext) -> Result:
    """Return output None with ``params.action``."""
    LOG[ctx.run_id].append(ctx.node_id)
    return Result(output=ctx.params.get("output"), action=str(ctx.params["action"]))


async def fail(ctx: NodeContext) -> str:
    """Raise ``RuntimeError("boom")`` on the first ``params.times`` attempts, then return ok."""
    LOG[ctx.run_id].append(ctx.node_id)
    if ctx.attempt <= int(ctx.params.get("times", 1)):
        raise RuntimeError("boom")
    return "ok"


async def write(ctx: NodeContext) -> Any:  # noqa: ANN401 - any JSON value
    """Write ``params.writes`` into the context; fail afterwards on attempts < ``fail_until``."""
    LOG[ctx.run_id].append(ctx.node_id)
    writes: dict[str, Any] = ctx.params.get("writes", {})
    for key, value in writes.items():
        ctx.context.set(key, value)
    if ctx.attempt < int(ctx.params.get("fail_until", 0)):
        ctx.context.set("failed_attempt", ctx.attempt)
        raise RuntimeError(f"attempt {ctx.attempt} fails after writing")
    return ctx.params.get("value", ctx.input)


async def sleep(ctx: NodeContext) -> Any:  # noqa: ANN401 - any JSON value
    """Sleep ``params.seconds`` cooperatively, then return the input."""
    LOG[ctx.run_id].append(ctx.node_id)
    await asyncio.sleep(float(ctx.params.get("seconds", 0)))
    return ctx.input


async def scaled(ctx: NodeContext) -> Any:  # noqa: ANN401 - any JSON value
    """Sleep ``input / 10`` seconds, then return ``input * 10`` (map order)."""
    item = float(ctx.input)
    await asyncio.sleep(item / 10)
    return int(item * 10)


async def inc(ctx: NodeContext) -> int:
    """Return ``input + 1``."""
    LOG[ctx.run_id].append(ctx.node_id)
    return int(ctx.input) + 1


async def big(ctx: NodeContext) -> str:
    """Return and store in the context a string of ``params.size`` bytes."""
    value = "x" * int(ctx.params["size"])
    ctx.context.set("big", value)
    return value


async def ticket(ctx: NodeContext) -> str:
    """A non-idempotent side effect: a fresh ticket per execution, returned and in the context.

    Sleeps ``params.seconds`` first (so duplicates overlap). Every execution hands out a new
    ticket; the run's committed output, context and downstream inputs must all carry the one
    ticket of the single attempt whose commit stands.
    """
    LOG[ctx.run_id].append(ctx.node_id)
    await asyncio.sleep(float(ctx.params.get("seconds", 0)))
    issued = f"{ctx.node_id}-{len(TICKETS[ctx.run_id])}-{ctx.attempt}"
    TICKETS[ctx.run_id].append(issued)
    ctx.context.set(f"ticket_{ctx.node_id}", issued)
    return issued


def registry() -> dict[str, object]:
    """``suite.<name>`` -> implementation."""
    functions = (const, echo, act, fail, write, sleep, scaled, inc, big, ticket)
    return {f"suite.{fn.__name__}": fn for fn in functions}


#: The suite's registry as a mapping (for ``flowcraft worker --registry ...nodes:REGISTRY``).
REGISTRY: dict[str, object] = registry()
