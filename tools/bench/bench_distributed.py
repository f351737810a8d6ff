"""Distributed throughput and per-step latency on a backend (in-memory by default).

Workload: ``--runs`` runs of a ``--nodes``-node chain of async no-op nodes, started at once,
processed by ``--workers`` in-process workers. Reports steps/s (node attempts committed per
second of wall time) and p50/p99 step latency: the time from one node's end to the next node's
start in the same run (claim, commit, decide, enqueue, receive). Median of ``--repeat`` runs.

    python tools/bench/bench_distributed.py                 # in-memory baseline
    python tools/bench/bench_distributed.py --backend rabbitmq --option ...
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from collections import defaultdict
from typing import Any

from flowcraft.core import Flow, NodeContext
from flowcraft.core.backends import load_backend_factory
from flowcraft.core.testing.harness import BackendFactory, Harness

SPANS: defaultdict[str, list[tuple[float, float]]] = defaultdict(list)


async def step(ctx: NodeContext) -> int:
    began = time.perf_counter()
    SPANS[ctx.run_id].append((began, time.perf_counter()))
    return int(ctx.input or 0) + 1


def _flow(nodes: int) -> Any:  # noqa: ANN401
    flow = Flow("bench-chain", version="1")
    for i in range(nodes):
        flow = flow.node(f"n{i}", step)
    for i in range(nodes - 1):
        flow = flow.edge(f"n{i}", f"n{i + 1}")
    return flow


async def _once(
    factory: BackendFactory, runs: int, nodes: int, workers: int, concurrency: int
) -> dict[str, float]:
    SPANS.clear()
    flow = _flow(nodes)
    harness = Harness(factory)
    async with harness.session(
        flow.build(), workers=workers, concurrency=concurrency, registry=flow.registry()
    ) as session:
        began = time.perf_counter()
        handles = await asyncio.gather(*(session.start("bench-chain", 0) for _ in range(runs)))
        results = await asyncio.gather(*(h.result(timeout=600) for h in handles))
        wall = time.perf_counter() - began
    assert all(r.output == nodes for r in results), "a run did not complete"
    gaps = [b[0] - a[1] for spans in SPANS.values() for a, b in itertools.pairwise(spans)]
    gaps.sort()
    return {
        "steps_per_s": runs * nodes / wall,
        "p50_ms": gaps[len(gaps) // 2] * 1e3,
        "p99_ms": gaps[int(len(gaps) * 0.99)] * 1e3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="memory")
    parser.add_argument("--option", action="append", default=[])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    options = dict(pair.split("=", 1) for pair in args.option)
    factory = load_backend_factory(args.backend, options)
    samples = [
        asyncio.run(_once(factory, args.runs, args.nodes, args.workers, args.concurrency))
        for _ in range(args.repeat)
    ]
    med = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    print("| backend | runs x nodes | workers | steps/s | p50 step ms | p99 step ms |")
    print("|---|---|---:|---:|---:|---:|")
    print(
        f"| {args.backend} | {args.runs} x {args.nodes} | {args.workers} | "
        f"{med['steps_per_s']:.0f} | {med['p50_ms']:.1f} | {med['p99_ms']:.1f} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
