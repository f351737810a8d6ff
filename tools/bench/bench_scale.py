"""Wide fan-in at scale: does a run's cost grow with what changed, or with the run's size?

Workload: one start node -> ``N`` parallel no-op nodes -> one ``all`` join, one run at a time.
Configurations, side by side in one invocation: the in-process ``FlowRuntime`` (the engine
alone), and distributed backends with in-process workers (``memory`` always; any other
installed backend by name, e.g. ``--backend rabbitmq``). Every distributed configuration runs
over a counting proxy of the backend's run store, so the table shows, per run: wall time,
saves, saves refused by the compare-and-set, state loads, bytes of state sent to the store
(JSON of the documents, context writes and outbox bodies of every save), and
``ConflictError``s (jobs that gave up after repeated lost compare-and-sets).

    python tools/bench/bench_scale.py                                  # N = 1000, 3000
    python tools/bench/bench_scale.py --sizes 1000,3000,10000 --backend rabbitmq --workers 1,2

Workers run in this process (one event loop): the counts are exact; the wall time of several
workers shows contention on one run's state, not CPU parallelism.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowcraft.core import Flow, FlowRuntime, NodeContext
from flowcraft.core.backends import Backend, BackendFactory, load_backend_factory
from flowcraft.core.ports import Message, RunStore, StoredState
from flowcraft.core.testing.harness import Harness


async def noop(ctx: NodeContext) -> int:
    """A branch: no work at all."""
    del ctx
    return 1


def _fan_in(width: int) -> Flow:
    flow = Flow(f"fan-in-{width}", version="1").node("start", noop).node("join", noop)
    for i in range(width):
        flow = flow.node(f"b{i}", noop).edge("start", f"b{i}").edge(f"b{i}", "join")
    return flow


@dataclass(slots=True)
class Counts:
    """What one run cost the store."""

    saves: int = 0
    refused: int = 0
    loads: int = 0
    bytes: int = 0
    conflicts: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class CountingStore:
    """A run store proxy that counts saves, refused saves, loads and bytes sent."""

    def __init__(self, inner: RunStore, counts: Counts) -> None:
        self._inner = inner
        self.counts = counts

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - every other port method
        return getattr(self._inner, name)

    async def load_state(self, run_id: str) -> StoredState | None:
        """Count, then load."""
        self.counts.loads += 1
        return await self._inner.load_state(run_id)

    async def save_state(
        self,
        run_id: str,
        *,
        document: Mapping[str, object],
        context_writes: Mapping[str, object],
        outbox: Sequence[Message],
        **fields: Any,  # noqa: ANN401 - the rest of the port's keywords
    ) -> bool:
        """Count the save and its bytes, then save."""
        counts = self.counts
        counts.saves += 1
        counts.bytes += len(json.dumps(document, separators=(",", ":")))
        counts.bytes += len(json.dumps(context_writes, separators=(",", ":")))
        counts.bytes += sum(len(m.body) for m in outbox)
        saved = await self._inner.save_state(
            run_id, document=document, context_writes=context_writes, outbox=outbox, **fields
        )
        counts.refused += not saved
        return saved


class _Conflicts(logging.Handler):
    def __init__(self, counts: Counts) -> None:
        super().__init__(logging.ERROR)
        self.counts = counts

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and "ConflictError" in repr(record.exc_info[1].__class__):
            self.counts.conflicts += 1


class _Counted:
    """A factory whose backends' run stores count (``BackendFactory``)."""

    def __init__(self, inner: BackendFactory, counts: Counts) -> None:
        self._inner = inner
        self.counts = counts
        self.capabilities = inner.capabilities

    async def create(self, namespace: str) -> Backend:
        backend = await self._inner.create(namespace)
        self._store = backend.store
        backend.store = CountingStore(backend.store, self.counts)
        return backend

    async def close(self, backend: Backend) -> None:
        backend.store = self._store
        await self._inner.close(backend)

    async def destroy(self, backend: Backend) -> None:
        backend.store = self._store
        await self._inner.destroy(backend)


async def _in_process(width: int) -> Counts:
    flow = _fan_in(width)
    runtime = FlowRuntime(registry=flow.registry())
    began = time.perf_counter()
    result = await runtime.run(flow.build())
    counts = Counts(extra={"wall": time.perf_counter() - began})
    assert result.output == 1, result
    return counts


async def _distributed(factory: BackendFactory, width: int, workers: int) -> Counts:
    counts = Counts()
    handler = _Conflicts(counts)
    logging.getLogger("flowcraft").addHandler(handler)
    flow = _fan_in(width)
    try:
        harness = Harness(_Counted(factory, counts))
        async with harness.session(
            flow.build(), workers=workers, concurrency=16, registry=flow.registry(), lease=60.0
        ) as session:
            began = time.perf_counter()
            handle = await session.start(f"fan-in-{width}")
            result = await handle.result(timeout=3600)
            counts.extra["wall"] = time.perf_counter() - began
    finally:
        logging.getLogger("flowcraft").removeHandler(handler)
    assert result.output == 1, result
    return counts


def _median(samples: Sequence[Counts]) -> Counts:
    def med(get: Any) -> Any:  # noqa: ANN401
        return statistics.median(get(s) for s in samples)

    return Counts(
        saves=int(med(lambda s: s.saves)),
        refused=int(med(lambda s: s.refused)),
        loads=int(med(lambda s: s.loads)),
        bytes=int(med(lambda s: s.bytes)),
        conflicts=max(s.conflicts for s in samples),
        extra={"wall": med(lambda s: s.extra["wall"])},
    )


def _row(label: str, width: int, c: Counts) -> str:
    if label == "FlowRuntime":
        return f"| {label} | {width:,} | {c.extra['wall']:.2f} s | | | | | |"
    return (
        f"| {label} | {width:,} | {c.extra['wall']:.2f} s | {c.saves:,} | {c.refused:,} | "
        f"{c.loads:,} | {c.bytes / 1e6:.1f} MB | {c.conflicts} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,3000")
    parser.add_argument("--backend", action="append", default=[], help="besides memory")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workers", default="2", help="worker counts, e.g. 1,2,4")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    sizes = [int(s) for s in args.sizes.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    options = dict(pair.split("=", 1) for pair in args.option)
    backends = {"memory": load_backend_factory("memory")}
    for name in args.backend:
        backends[name] = load_backend_factory(name, options)
    print("| configuration | N | wall | saves | refused saves | loads | bytes to the store "
          "| ConflictErrors |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for width in sizes:
        runs = [asyncio.run(_in_process(width)) for _ in range(args.repeat)]
        print(_row("FlowRuntime", width, _median(runs)), flush=True)
        for name, factory in backends.items():
            for workers in worker_counts:
                samples = [
                    asyncio.run(_distributed(factory, width, workers)) for _ in range(args.repeat)
                ]
                label = f"{name}, {workers} worker{'s' if workers > 1 else ''} (in-process)"
                print(_row(label, width, _median(samples)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
