"""Node implementations the conformance suite runs (stable ``uses`` keys: ``suite.*``).

They take their behaviour from ``params`` so the suite's blueprints are plain data, and they
append to :data:`LOG` (per process) so tests can count executions when workers run in-process.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

from flowcraft.core._runtime.context import NodeContext, Result

#: run_id -> node ids in execution order (this process only).
LOG: defaultdict[str, list[str]] = defaultdict(list)

#: run_id -> the tickets ``ticket`` handed out, one per execution (this process only).
TICKETS: defaultdict[str, list[str]] = defaultdict(list)

#: run_id -> ``gauge`` executions running right now, and the most that ran at once.
RUNNING: defaultdict[str, int] = defaultdict(int)
PEAK: defaultdict[str, int] = defaultdict(int)
_GATHERED: set[str] = set()

#: run_id -> ``(attempt, phase)`` of every ``overrun`` execution: started, then cancelled or
#: finished (this process only).
PHASES: defaultdict[str, list[tuple[int, str]]] = defaultdict(list)

#: Runs whose ``held`` executions may finish (this process only): the test adds the run id.
RELEASED: set[str] = set()


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


async def held(ctx: NodeContext) -> str:
    """A ``ticket`` that finishes when the test releases its run (``RELEASED``), not on a clock.

    Waits at most ``params.hold`` seconds (60 by default), so a test that forgets to release
    fails slowly instead of hanging. A test that needs a node to run "until something else has
    happened" says so with this, whatever the speed of the backend.
    """
    LOG[ctx.run_id].append(ctx.node_id)
    deadline = time.monotonic() + float(ctx.params.get("hold", 60.0))
    while ctx.run_id not in RELEASED and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    issued = f"{ctx.node_id}-{len(TICKETS[ctx.run_id])}-{ctx.attempt}"
    TICKETS[ctx.run_id].append(issued)
    return issued


async def picky(ctx: NodeContext) -> Any:  # noqa: ANN401 - any JSON value
    """Return the input; raise ``RuntimeError("item <input> refused")`` if it is in ``refuse``."""
    LOG[ctx.run_id].append(ctx.node_id)
    if ctx.input in ctx.params.get("refuse", []):
        raise RuntimeError(f"item {ctx.input} refused")
    return ctx.input


async def gauge(ctx: NodeContext) -> Any:  # noqa: ANN401 - any JSON value
    """Return the input after ``params.seconds``; counts executions running at once (``PEAK``).

    The first ``params.gather`` executions of a run wait for each other (at most
    ``params.hold`` seconds), so executions that may overlap do overlap, however slowly the
    backend hands them out: the peak then measures the limit, not the backend's speed.
    """
    LOG[ctx.run_id].append(ctx.node_id)
    run = ctx.run_id
    RUNNING[run] += 1
    PEAK[run] = max(PEAK[run], RUNNING[run])
    try:
        await _gather(run, int(ctx.params.get("gather", 1)), float(ctx.params.get("hold", 5.0)))
        await asyncio.sleep(float(ctx.params.get("seconds", 0.05)))
    finally:
        RUNNING[run] -= 1
    return ctx.input


async def _gather(run: str, count: int, hold: float) -> None:
    deadline = time.monotonic() + hold
    while run not in _GATHERED and RUNNING[run] < count and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    _GATHERED.add(run)


async def overrun(ctx: NodeContext) -> str:
    """On attempts <= ``params.times`` sleep ``params.seconds`` (to overrun a timeout); return ok.

    Records its phases in :data:`PHASES`: ``started``, then ``cancelled`` (the sleep was
    cancelled) or ``finished`` (it reached its end).
    """
    LOG[ctx.run_id].append(ctx.node_id)
    phases = PHASES[ctx.run_id]
    phases.append((ctx.attempt, "started"))
    if ctx.attempt <= int(ctx.params.get("times", 1)):
        try:
            await asyncio.sleep(float(ctx.params.get("seconds", 10)))
        except asyncio.CancelledError:
            phases.append((ctx.attempt, "cancelled"))
            raise
    phases.append((ctx.attempt, "finished"))
    return "ok"


def registry() -> dict[str, object]:
    """``suite.<name>`` -> implementation."""
    functions = (
        *(const, echo, act, fail, write, sleep, scaled, inc, big, ticket),
        *(held, picky, gauge, overrun),
    )
    return {f"suite.{fn.__name__}": fn for fn in functions}


#: The suite's registry as a mapping (for ``flowcraft worker --registry ...nodes:REGISTRY``).
REGISTRY: dict[str, object] = registry()
