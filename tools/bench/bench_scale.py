r"""Wide fan-in and parked runs at scale: does a run cost what changed, or the run's size?

**Wide fan-in** (``--sizes``): one start node -> ``N`` parallel no-op nodes -> one ``all``
join, one run at a time. Configurations, side by side: the in-process ``FlowRuntime`` (the
engine alone); each backend (``memory`` always; any other installed one by name, e.g.
``--backend rabbitmq``) with ``--workers`` in-process workers (one event loop: exact counts,
contention rather than CPU parallelism); and each backend other than memory with
``--processes`` worker processes (``_scale_worker.py``, a ``Worker`` per OS process, the run
started by a client in this process). Every run store is wrapped in a counting proxy
(``_scale_common.CountingStore``); a row sums the counts of the client and every worker:
wall time, saves, saves refused by the compare-and-set, full loads (``since=None``),
catch-up loads (``since`` given), bytes sent to the store (compact JSON of each save's
header, records and context writes plus its outbox bodies) in total and per save, and
``ConflictError``s (jobs that gave up after repeated lost compare-and-sets).

**Parked runs** (``--parked COUNT``): COUNT runs of a blueprint whose only node is a wait node
(``--parked-after-task``: a no-op node first, so a worker decides the wait), started by the
client (64 at a time) after as many warm-up runs, until all are awaiting (the time this
takes is measured with ``tracemalloc`` on, which slows this process down). Per parked run:
resident memory growth of the worker processes (``/proc``), memory growth of this process
(``tracemalloc``: the client, and with in-process workers the workers too, and for memory the
store), and growth of the namespace's PostgreSQL tables (``pg_total_relation_size`` summed,
for backends with a ``postgres_dsn``).

Each measurement uses a fresh namespace, destroyed afterwards; each figure is the median of
``--repeat`` measurements. Markdown tables on stdout::

    python tools/bench/bench_scale.py --sizes 200 --repeat 1             # memory only
    python tools/bench/bench_scale.py --sizes 1000,3000 --backend rabbitmq --workers 1,2 \
        --processes 1,2,4
    python tools/bench/bench_scale.py --sizes '' --parked 10000 --backend rabbitmq \
        --workers 1 --processes 1 --repeat 1
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from _scale_common import (
    PARKED_ID,
    Counted,
    Counts,
    count_store,
    counting_conflicts,
    fan_in,
    fan_in_id,
    parked,
    uncount_store,
)
from _scale_processes import WorkerProcesses, worker_processes
from flowcraft.core import Client, FlowRuntime, RunStatus
from flowcraft.core.backends import Backend, BackendFactory, load_backend_factory
from flowcraft.core.ports import RunStore
from flowcraft.core.testing.harness import Harness

#: Runs started at once while parking.
START_AT_ONCE = 64

#: Reads the bytes a namespace's run store takes.
Sizer = Callable[[], Awaitable[int]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """One configuration: ``workers`` in-process workers (or worker processes) on a backend."""

    backend: str
    workers: int
    processes: bool

    @property
    def label(self) -> str:
        """E.g. ``rabbitmq, 2 worker processes`` or ``memory, 1 worker (in-process)``."""
        many = self.workers > 1
        if self.processes:
            return f"{self.backend}, {self.workers} worker process{'es' if many else ''}"
        return f"{self.backend}, {self.workers} worker{'s' if many else ''} (in-process)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Setup:
    """What every measurement needs: the factories and their options, the parked shape."""

    factories: dict[str, BackendFactory]
    options: dict[str, str]
    after_task: bool = False

    def worker_arguments(self, config: Config, namespace: str, width: int) -> list[str]:
        """The command-line arguments of a ``_scale_worker`` process for ``config``."""
        arguments = ["--backend", config.backend, "--namespace", namespace, "--width", str(width)]
        for key, value in self.options.items():
            arguments += ["--option", f"{key}={value}"]
        return arguments + (["--parked-after-task"] if self.after_task else [])


@dataclass(slots=True, kw_only=True)
class Sample:
    """One fan-in run: its wall time and what it cost the store."""

    wall: float
    counts: Counts = field(default_factory=Counts)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParkedSample:
    """One parked-runs measurement.

    Attributes:
        seconds: From the first start to every run awaiting.
        worker_rss: Growth of the worker processes' resident memory per run (None: no
            worker processes).
        traced: Growth of this process's traced memory per run (``tracemalloc``).
        store: Growth of the namespace's PostgreSQL tables per run (None: not measured).
    """

    seconds: float
    worker_rss: float | None
    traced: float
    store: float | None


# -- fan-in ----------------------------------------------------------------------------------


async def flow_runtime(width: int) -> Sample:
    """The engine alone, in this process."""
    flow = fan_in(width)
    runtime = FlowRuntime(registry=flow.registry())
    began = time.perf_counter()
    result = await runtime.run(flow.build())
    assert result.output == 1, result
    return Sample(wall=time.perf_counter() - began)


async def fan_in_in_process(setup: Setup, config: Config, width: int) -> Sample:
    """One run served by ``config.workers`` workers in this process."""
    counts = Counts()
    flow = fan_in(width)
    harness = Harness(Counted(setup.factories[config.backend], counts))
    with counting_conflicts(counts):
        async with harness.session(
            flow.build(),
            workers=config.workers,
            concurrency=16,
            registry=flow.registry(),
            lease=60.0,
        ) as session:
            began = time.perf_counter()
            result = await (await session.start(fan_in_id(width))).result(timeout=3600)
            wall = time.perf_counter() - began
    assert result.output == 1, result
    return Sample(wall=wall, counts=counts)


async def fan_in_processes(setup: Setup, config: Config, width: int) -> Sample:
    """One run served by ``config.workers`` worker processes; the client's counts included."""
    factory = setup.factories[config.backend]
    namespace = f"bench_{uuid.uuid4().hex[:10]}"
    backend = await factory.create(namespace)
    sample = Sample(wall=0.0)
    try:
        arguments = setup.worker_arguments(config, namespace, width)
        async with worker_processes(arguments, config.workers) as workers:
            count_store(backend, sample.counts)
            with counting_conflicts(sample.counts):
                sample.wall = await workers.guard(_run_fan_in(backend, width))
            sample.counts.add(await workers.stop())
    finally:
        uncount_store(backend)
        await factory.destroy(backend)
    return sample


async def _run_fan_in(backend: Backend, width: int) -> float:
    """Start the fan-in through a client, wait for its result; the wall time."""
    async with Client(
        queue=backend.queue, store=backend.store, blueprints=[fan_in(width).build()]
    ) as client:
        began = time.perf_counter()
        result = await (await client.start(fan_in_id(width))).result(timeout=3600)
        wall = time.perf_counter() - began
    assert result.output == 1, result
    return wall


def median_sample(samples: Sequence[Sample]) -> Sample:
    """Each figure's median over the repeats (ConflictErrors: the most seen)."""
    counts = Counts(
        saves=_median(samples, lambda s: s.counts.saves),
        refused=_median(samples, lambda s: s.counts.refused),
        loads=_median(samples, lambda s: s.counts.loads),
        catch_ups=_median(samples, lambda s: s.counts.catch_ups),
        bytes=_median(samples, lambda s: s.counts.bytes),
        conflicts=max(s.counts.conflicts for s in samples),
    )
    return Sample(wall=statistics.median(s.wall for s in samples), counts=counts)


def _median(samples: Sequence[Sample], get: Callable[[Sample], int]) -> int:
    return int(statistics.median(get(s) for s in samples))


# -- parked runs -----------------------------------------------------------------------------


async def parked_in_process(setup: Setup, config: Config, count: int) -> ParkedSample:
    """``count`` runs parked on a backend served by in-process workers."""
    flow = parked(after_task=setup.after_task)
    harness = Harness(setup.factories[config.backend])
    async with harness.session(
        flow.build(), workers=config.workers, concurrency=16, registry=flow.registry()
    ) as session:
        sizer = _store_sizer(setup.factories[config.backend], session.backend)
        return await _park(session.client, session.backend.store, count, sizer, None)


async def parked_processes(setup: Setup, config: Config, count: int) -> ParkedSample:
    """``count`` runs parked on a fresh namespace served by worker processes."""
    factory = setup.factories[config.backend]
    namespace = f"bench_{uuid.uuid4().hex[:10]}"
    backend = await factory.create(namespace)
    try:
        arguments = setup.worker_arguments(config, namespace, 0)
        async with worker_processes(arguments, config.workers) as workers:
            blueprint = parked(after_task=setup.after_task).build()
            async with Client(
                queue=backend.queue, store=backend.store, blueprints=[blueprint]
            ) as client:
                sizer = _store_sizer(factory, backend)
                parking = _park(client, backend.store, count, sizer, workers)
                sample = await workers.guard(parking)
            await workers.stop()
    finally:
        await factory.destroy(backend)
    return sample


async def _park(
    client: Client,
    store: RunStore,
    count: int,
    sizer: Sizer | None,
    workers: WorkerProcesses | None,
) -> ParkedSample:
    """Warm up with as many runs as start at once, then park ``count`` more and measure."""
    warm = min(count, START_AT_ONCE)
    await _start_parked(client, warm)
    await _wait_awaiting(store, warm, timeout=600)
    store_before = await sizer() if sizer else None
    rss_before = workers.rss() if workers else None
    gc.collect()
    tracemalloc.start()
    try:
        began = time.perf_counter()
        await _start_parked(client, count)
        await _wait_awaiting(store, warm + count, timeout=600 + count / 10)
        seconds = time.perf_counter() - began
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return ParkedSample(
        seconds=seconds,
        worker_rss=None if workers is None else (workers.rss() - (rss_before or 0)) / count,
        traced=traced / count,
        store=None if sizer is None else (await sizer() - (store_before or 0)) / count,
    )


async def _start_parked(client: Client, count: int) -> None:
    gate = asyncio.Semaphore(START_AT_ONCE)

    async def start() -> None:
        async with gate:
            await client.start(PARKED_ID)

    await asyncio.gather(*(start() for _ in range(count)))


async def _wait_awaiting(store: RunStore, count: int, *, timeout: float) -> None:
    """Until ``count`` runs are awaiting (a run that failed or completed is an error)."""
    async with asyncio.timeout(timeout):
        while await _count_runs(store, RunStatus.AWAITING) < count:
            for status in (RunStatus.FAILED, RunStatus.COMPLETED):
                if await _count_runs(store, status):
                    raise RuntimeError(f"a parked run is {status.value}")
            await asyncio.sleep(0.2)


async def _count_runs(store: RunStore, status: RunStatus) -> int:
    found, cursor = 0, None
    while True:
        page = await store.list_runs(status=status.value, limit=1000, cursor=cursor)
        found += len(page.runs)
        if page.cursor is None:
            return found
        cursor = page.cursor


def _store_sizer(factory: BackendFactory, backend: Backend) -> Sizer | None:
    """Bytes of the namespace's PostgreSQL tables, for a factory with a ``postgres_dsn``."""
    dsn = getattr(factory, "postgres_dsn", None)
    namespace = backend.extra.get("namespace")
    if not isinstance(dsn, str) or not isinstance(namespace, str):
        return None

    async def size() -> int:
        return await postgres_table_bytes(dsn, namespace)

    return size


_TABLE_BYTES = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema() AND c.relname LIKE %s
"""


async def postgres_table_bytes(dsn: str, namespace: str) -> int:
    """``pg_total_relation_size`` (indexes and TOAST included) of the tables ``{namespace}_*``."""
    import psycopg

    pattern = namespace.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "\\_%"
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        row = await (await conn.execute(_TABLE_BYTES, (pattern,))).fetchone()
    return int(row[0]) if row else 0


def median_parked(samples: Sequence[ParkedSample]) -> ParkedSample:
    """Each figure's median over the repeats."""

    def med(values: list[float | None]) -> float | None:
        return None if None in values else statistics.median(v for v in values if v is not None)

    return ParkedSample(
        seconds=statistics.median(s.seconds for s in samples),
        worker_rss=med([s.worker_rss for s in samples]),
        traced=statistics.median(s.traced for s in samples),
        store=med([s.store for s in samples]),
    )


# -- tables ----------------------------------------------------------------------------------


def size(value: float | None) -> str:
    """Bytes for a table cell: B, kB or MB (empty: not measured)."""
    if value is None:
        return ""
    if abs(value) < 10_000:
        return f"{value:,.0f} B"
    if abs(value) < 1_000_000:
        return f"{value / 1e3:,.1f} kB"
    return f"{value / 1e6:,.2f} MB"


FAN_IN_HEADER = (
    "| configuration | N | wall | saves | refused saves | full loads | catch-up loads "
    "| bytes to the store | bytes per save | ConflictErrors |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def fan_in_row(label: str, width: int, sample: Sample) -> str:
    """One row of the fan-in table (FlowRuntime: wall time only)."""
    if label == "FlowRuntime":
        return f"| {label} | {width:,} | {sample.wall:.2f} s | | | | | | | |"
    c = sample.counts
    per_save = c.bytes / c.saves if c.saves else None
    return (
        f"| {label} | {width:,} | {sample.wall:.2f} s | {c.saves:,} | {c.refused:,} | "
        f"{c.loads:,} | {c.catch_ups:,} | {size(c.bytes)} | {size(per_save)} | {c.conflicts} |"
    )


PARKED_HEADER = (
    "| configuration | parked runs | time to park (traced) | worker processes' RSS per run "
    "| this process (tracemalloc) per run | PostgreSQL per run |\n"
    "|---|---:|---:|---:|---:|---:|"
)


def parked_row(label: str, count: int, sample: ParkedSample) -> str:
    """One row of the parked-runs table."""
    return (
        f"| {label} | {count:,} | {sample.seconds:.1f} s | {size(sample.worker_rss)} | "
        f"{size(sample.traced)} | {size(sample.store)} |"
    )


# -- main ------------------------------------------------------------------------------------


def _numbers(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]`` (zeros dropped: ``""`` or ``"0"`` is none)."""
    return [n for n in (int(part) for part in text.split(",") if part.strip()) if n > 0]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,3000", help="fan-in widths ('': none)")
    parser.add_argument("--backend", action="append", default=[], help="besides memory")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workers", default="2", help="in-process worker counts, e.g. 1,2")
    parser.add_argument("--processes", default="", help="worker process counts, e.g. 1,2,4")
    parser.add_argument("--parked", type=int, default=0, metavar="COUNT", help="runs to park")
    parser.add_argument(
        "--parked-after-task", action="store_true", help="a no-op node before the wait node"
    )
    parser.add_argument("--repeat", type=int, default=3)
    return parser


def configurations(args: argparse.Namespace) -> list[Config]:
    """In-process workers on every backend; worker processes on every backend but memory."""
    names = ["memory", *(name for name in args.backend if name != "memory")]
    found = [Config(backend=n, workers=w, processes=False) for n in names
             for w in _numbers(args.workers)]  # fmt: skip
    # The memory backend lives in one process: worker processes could not share it.
    found += [Config(backend=n, workers=p, processes=True) for n in names[1:]
              for p in _numbers(args.processes)]  # fmt: skip
    return found


def setup_of(args: argparse.Namespace) -> Setup:
    """The factories of ``memory`` and every ``--backend`` (with the ``--option`` pairs)."""
    options = dict(pair.split("=", 1) for pair in args.option)
    factories = {"memory": load_backend_factory("memory")}
    for name in args.backend:
        factories[name] = load_backend_factory(name, options)
    return Setup(factories=factories, options=options, after_task=args.parked_after_task)


def fan_in_table(
    setup: Setup, configs: Sequence[Config], sizes: Sequence[int], repeat: int
) -> None:
    """Print the fan-in table, a row at a time."""
    print(FAN_IN_HEADER, flush=True)
    for width in sizes:
        samples = [asyncio.run(flow_runtime(width)) for _ in range(repeat)]
        print(fan_in_row("FlowRuntime", width, median_sample(samples)), flush=True)
        for config in configs:
            once = fan_in_processes if config.processes else fan_in_in_process
            samples = [asyncio.run(once(setup, config, width)) for _ in range(repeat)]
            print(fan_in_row(config.label, width, median_sample(samples)), flush=True)


def parked_table(setup: Setup, configs: Sequence[Config], count: int, repeat: int) -> None:
    """Print the parked-runs table, a row at a time."""
    print(PARKED_HEADER, flush=True)
    for config in configs:
        once = parked_processes if config.processes else parked_in_process
        samples = [asyncio.run(once(setup, config, count)) for _ in range(repeat)]
        print(parked_row(config.label, count, median_parked(samples)), flush=True)


def main() -> int:
    """Print the tables the arguments ask for."""
    args = _parser().parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    setup, configs = setup_of(args), configurations(args)
    if sizes := _numbers(args.sizes):
        fan_in_table(setup, configs, sizes, args.repeat)
    if args.parked:
        if sizes:
            print()
        parked_table(setup, configs, args.parked, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
