"""The fan-out/fan-in workload of ``bench_rabbitmq.py``, importable by its worker processes.

``FLOW``: ``start`` -> ``m0`` .. ``m7`` -> ``join`` (10 nodes). Every node is an async no-op that
returns ``{"t0": ..., "t1": ...}`` (``time.time()`` at its start and end) so step latencies can
be computed across processes from the run's outputs. ``flowcraft worker --registry
_bench_nodes:FLOW`` (with ``tools/bench`` on ``PYTHONPATH``) loads the implementations.
"""

from __future__ import annotations

import time

from flowcraft.core import Flow, NodeContext, node

FLOW_ID = "bench-fan"
MIDDLE = tuple(f"m{i}" for i in range(8))


def stamp(began: float) -> dict[str, float]:
    """The output of every benchmark node: its start and end (epoch seconds)."""
    return {"t0": began, "t1": time.time()}


@node("bench.noop")
async def noop(ctx: NodeContext) -> dict[str, float]:
    """An async no-op that reports when it ran."""
    del ctx
    return stamp(time.time())


def _flow() -> Flow:
    flow = Flow(FLOW_ID, version="1").node("start", noop).node("join", noop)
    for middle in MIDDLE:
        flow = flow.node(middle, noop).edge("start", middle).edge(middle, "join")
    return flow


FLOW = _flow()
