"""flowcraft-sqs against Celery 5 on SQS and bare SQS / DynamoDB round trips, on moto (issue 16).

The workload, the table shape and the procedure are ``bench_rabbitmq.py``'s (read its
docstring): ``--runs`` runs of the 10-node fan-out/fan-in (``start`` -> 8 parallel nodes ->
``join``) of async no-op nodes started at once, results awaited in start order; steps/s = runs
x 10 / wall time; step latency = successor start - predecessor end (9 samples per run); every
configuration once per repeat, interleaved; figures are medians over ``--repeat`` repeats.

* **flowcraft-sqs**, 1, 2 and 4 worker processes (``_bench_sqs_worker``: ``flowcraft worker
  --backend sqs --option endpoint_url=... --concurrency C`` as ``python -m flowcraft.core``
  runs it, plus call counting), a fresh namespace (tables and queues, created by
  ``SqsBackend.create`` and deleted after) per configuration.
* **Calls per step**: every worker process counts its boto3 calls with botocore's event hooks
  (``before-call.*`` per API call, ``before-send.*`` per HTTP attempt, ``after-call.*`` for
  error answers), per service and operation; on SIGUSR1 it writes its counts, which the
  bench takes right before starting the clock and right after the last result, so a figure
  is exactly the measured window's calls over its steps (idle long polls of that window
  included). The client's calls (``start``: the run's creation and first job; ``result``:
  polls of the run record, then the state) are counted the same way in this process and
  shown apart.
* **Celery**: ``_bench_celery``'s chord over kombu's SQS transport on the same moto
  (``_bench_celery_sqs``: ``sqs://`` with the endpoint in the URL, pycurl receiving), with
  each result backend of ``--celery-results``: ``redis`` (Redis, as in ``bench_rabbitmq``) and
  ``dynamodb`` (Celery's DynamoDB backend on the same moto: the same stack as flowcraft-sqs),
  a fresh queue, key prefix and results table per configuration; ``--celery-mode prefork``
  (default) or ``solo`` as in ``bench_rabbitmq``. kombu's default ``polling_interval`` of 1 s
  (the consumer also sleeps that long whenever its prefetch window is full) makes a run take
  2-3 s; ``--celery-polling-interval`` (default 0.01 s) sets it (empty: kombu's default).
* **Bare SQS round trip**: send one small message to a queue -> ``ReceiveMessage`` (long poll,
  one message) -> ``DeleteMessage``, sequentially, ``--round-trips`` times (20 warm-up trips
  not counted), with a boto3 client configured as the adapter's (``flowcraft.sqs._aws.Aws``).
* **Bare DynamoDB conditional put**: ``PutItem`` of a new small item with
  ``attribute_not_exists`` on its key, ``--round-trips`` times; and, for reference, the same
  put as a one-item ``TransactWriteItems`` (the adapter saves a run with transactions).
* **1 run in flight** (both systems, one worker): ``--sequential-runs`` runs one after another.
* **CPU per step** of moto, of the worker processes (with their children), of this process
  (the client) and of Redis, from ``/proc`` over the measured window (moto's and Redis's pids
  from ``tools/services``' pid files, or ``--moto-pid``): on moto, whose one process (one GIL)
  serves every call, the throughput is about 1 / moto's CPU per step.

``--runs`` is 50 by default (``bench_rabbitmq``: 500): moto's ``ReceiveMessage`` computes every
attribute of the queue, walking all its messages, for each message it returns, so on moto a
step costs more the longer the queue is, for both systems alike.

Targets (issue 16): flowcraft / Celery steps/s >= 1.5x (runs started at once); p50 step with
one run in flight <= 3 x (bare SQS round trip p50 + bare conditional put p50); calls per step
<= 5.

    python tools/bench/bench_sqs.py                       # markdown tables on stdout
    python tools/bench/bench_sqs.py --runs 100 --repeat 1 --workers 1,2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import _bench_celery
import _bench_celery_sqs
from _bench_common import (
    STEPS,
    Sample,
    Snapshot,
    add_common_arguments,
    celery_commands,
    celery_gaps,
    celery_version,
    child_env,
    cpu_spent,
    difference,
    flowcraft_runs,
    logs_say,
    median_sample,
    process_cpu,
    processes,
    purge_redis_keys,
    service_pids,
    summarize,
    verdict,
    wait_until,
    worker_counts,
)
from _bench_nodes import FLOW
from _bench_sqs_worker import Calls
from flowcraft.core import Client, dump_blueprint
from flowcraft.sqs import SqsBackend
from flowcraft.sqs._aws import Aws

# worker_counts is re-exported (bench_azure imports it from here).
__all__ = ["main", "worker_counts"]

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """Where moto (SQS, DynamoDB) and Redis (Celery's result backend) listen."""

    endpoint_url: str
    redis_url: str
    visibility_timeout: int
    server_pids: Mapping[str, int]  # "moto", "redis": for their CPU time (none: not shown)


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """One measurement: the sample, and the calls of the workers and of the client."""

    sample: Sample
    steps: int
    cpu: Mapping[str, float]  # CPU seconds of the window: per server, "workers", "bench"
    workers: Snapshot | None = None
    client: Snapshot | None = None


# -- CPU time ---------------------------------------------------------------------------------

_T = TypeVar("_T")


def cpu_now(services: Services, workers: Iterable[int]) -> dict[str, float]:
    """CPU seconds so far of the servers, the worker processes (with children) and this one."""
    found = {name: process_cpu(pid) for name, pid in services.server_pids.items()}
    found["workers"] = sum(process_cpu(pid) for pid in workers)
    found["bench"] = time.process_time()
    return found


def server_pids(repo: Path, moto: int = 0) -> dict[str, int]:
    """moto's and Redis's pids from ``tools/services``' pid files (missing ones left out)."""
    found = service_pids(repo, ["moto", "redis"])
    return {**found, "moto": moto} if moto else found


# -- flowcraft-sqs ----------------------------------------------------------------------------


def flowcraft_commands(
    services: Services, namespace: str, blueprint: Path, counts: Sequence[Path], concurrency: int
) -> list[list[str]]:
    """One counting ``flowcraft worker`` command line per worker process."""
    flowcraft = [
        "worker", "--backend", "sqs",
        "--option", f"endpoint_url={services.endpoint_url}",
        "--option", f"visibility_timeout={services.visibility_timeout}",
        "--namespace", namespace, "--registry", "_bench_nodes:FLOW",
        "--blueprint", str(blueprint), "--concurrency", str(concurrency),
    ]  # fmt: skip
    return [
        [sys.executable, "-m", "_bench_sqs_worker", "--counts", str(path), *flowcraft]
        for path in counts
    ]


@contextlib.asynccontextmanager
async def namespace_backend(services: Services) -> AsyncIterator[tuple[SqsBackend, Any]]:
    """A fresh namespace's ports (tables and queues created), destroyed afterwards."""
    factory = SqsBackend(endpoint_url=services.endpoint_url,
                         visibility_timeout=services.visibility_timeout)  # fmt: skip
    backend = await factory.create(f"bench-{uuid.uuid4().hex[:10]}")
    try:
        yield factory, backend
    finally:
        await factory.destroy(backend)


async def flowcraft_once(
    services: Services, runs: int, workers: int, concurrency: int, *, at_once: bool = True
) -> Measured:
    """One configuration: fresh namespace, ``workers`` counting worker processes, ``runs`` runs."""
    async with namespace_backend(services) as (_factory, backend):
        aws = backend.extra["aws"]
        client_calls = Calls()
        client_calls.watch(aws.sqs_client)
        client_calls.watch(aws.dynamodb_client)
        with tempfile.TemporaryDirectory(prefix="bench-sqs-") as tmp:
            logs = Path(tmp)
            blueprint = logs / "bench-fan.yaml"
            blueprint.write_text(dump_blueprint(FLOW.build(), format="yaml"))
            files = [logs / f"counts-{i}.json" for i in range(workers)]
            namespace = str(backend.extra["namespace"])
            commands = flowcraft_commands(services, namespace, blueprint, files, concurrency)
            with processes(commands, child_env(), logs) as started:
                wait_until(logs_say(logs, workers, "flowcraft worker "), started)
                async with Client(
                    queue=backend.queue, store=backend.store, blueprints=[FLOW.build()]
                ) as client:
                    pids = [p.pid for p in started]
                    before = await worker_counts(started, files, 1)
                    client_before = client_calls.snapshot()
                    cpu_before = cpu_now(services, pids)
                    sample = await flowcraft_runs(client, runs, at_once=at_once)
                    cpu = cpu_spent(cpu_now(services, pids), cpu_before)
                    after = await worker_counts(started, files, 2)
                    client_after = client_calls.snapshot()
    return Measured(sample=sample, steps=runs * STEPS, cpu=cpu, workers=difference(after, before),
                    client=difference(client_after, client_before))  # fmt: skip


# -- Celery on SQS ----------------------------------------------------------------------------


@contextlib.contextmanager
def celery_session(
    services: Services, workers: int, mode: str, polling_interval: str, results: str
) -> Iterator[tuple[Any, list[int]]]:
    """An app on a fresh SQS queue and results, and the pids of its ready workers."""
    tag = f"bench-celery-{uuid.uuid4().hex[:10]}"
    settings = {
        "endpoint": services.endpoint_url,
        "backend": _bench_celery_sqs.result_backend(
            results, endpoint=services.endpoint_url, redis_url=services.redis_url, tag=tag
        ),
        "queue": tag,
        "prefix": f"{tag}:",
        "polling_interval": polling_interval,
    }
    app = _bench_celery_sqs.make_app(**settings)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp:
            ready = Path(tmp) / "ready"
            ready.mkdir()
            env = child_env({f"BENCH_CELERY_{k.upper()}": v for k, v in settings.items()})
            env["BENCH_CELERY_READY"] = str(ready)
            commands = celery_commands("_bench_celery_sqs", mode, workers, tag)
            with processes(commands, env, Path(tmp)) as started:
                wait_until(lambda: len(list(ready.iterdir())) >= len(commands), started)
                yield app, [p.pid for p in started]
    finally:
        app.close()
        purge_celery(services, tag)


def celery_once(
    services: Services,
    runs: int,
    workers: int,
    args: argparse.Namespace,
    results: str,
    *,
    at_once: bool = True,
) -> Measured:
    """One configuration: a fresh queue and results, Celery workers, ``runs`` runs."""
    mode, polling_interval = args.celery_mode, args.celery_polling_interval
    with celery_session(services, workers, mode, polling_interval, results) as (app, pids):
        sample, cpu = timed_cpu(services, pids, lambda: celery_runs(app, runs, at_once=at_once))
        return Measured(sample=sample, steps=runs * STEPS, cpu=cpu)


def celery_runs(app: Any, runs: int, *, at_once: bool) -> Sample:  # noqa: ANN401
    """``bench_rabbitmq.celery_runs``, polling results every 20 ms (not Celery's 0.5 s).

    Redis delivers results by pub/sub; the DynamoDB backend is polled.
    """
    began = time.perf_counter()
    if at_once:
        pending = [_bench_celery.workflow(app).apply_async() for _ in range(runs)]
        results = [p.get(timeout=900, interval=0.02) for p in pending]
    else:
        results = [
            _bench_celery.workflow(app).apply_async().get(timeout=60, interval=0.02)
            for _ in range(runs)
        ]
    wall = time.perf_counter() - began
    return summarize(runs * STEPS, wall, [g for r in results for g in celery_gaps(r)])


def timed_cpu(
    services: Services, pids: Sequence[int], work: Callable[[], _T]
) -> tuple[_T, dict[str, float]]:
    """``work()`` and the CPU seconds spent meanwhile (``cpu_now``'s keys)."""
    before = cpu_now(services, pids)
    result = work()
    return result, cpu_spent(cpu_now(services, pids), before)


def purge_celery(services: Services, tag: str) -> None:
    """Delete the configuration's SQS queues, its results table and its keys in Redis."""
    aws = Aws(endpoint_url=services.endpoint_url)
    try:
        urls = aws.sqs_client.list_queues(QueueNamePrefix=tag).get("QueueUrls", [])
        for url in urls:
            aws.sqs_client.delete_queue(QueueUrl=url)
        tables = aws.dynamodb_client.list_tables(ExclusiveStartTableName=tag, Limit=10)
        for table in tables.get("TableNames", []):
            if table.startswith(tag):
                aws.dynamodb_client.delete_table(TableName=table)
    finally:
        aws.close()
    purge_redis_keys(services.redis_url, f"{tag}:")


# -- bare round trips -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Bare:
    """The bare round trips of one repeat."""

    sqs: Sample
    put: Sample
    transact: Sample


async def bare_round_trips(services: Services, count: int, warmup: int = 20) -> Bare:
    """SQS send -> receive -> delete, and DynamoDB conditional puts, on a fresh namespace."""
    async with namespace_backend(services) as (_factory, backend):
        aws: Aws = backend.extra["aws"]
        queue_url = str(backend.extra["queues"][0])
        table = str(backend.extra["names"].coordination)
        sqs = [_sqs_trip(aws.sqs_client, queue_url) for _ in range(warmup + count)][warmup:]
        put = [_put(aws.dynamodb_client, table) for _ in range(warmup + count)][warmup:]
        tx = [_transact(aws.dynamodb_client, table) for _ in range(warmup + count)][warmup:]
    return Bare(sqs=summarize(count, sum(sqs), sqs), put=summarize(count, sum(put), put),
                transact=summarize(count, sum(tx), tx))  # fmt: skip


def _sqs_trip(client: Any, queue_url: str) -> float:  # noqa: ANN401 (a boto3 client)
    began = time.perf_counter()
    client.send_message(QueueUrl=queue_url, MessageBody='{"n": 1}')
    answer = client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=20)
    (message,) = answer["Messages"]
    client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return time.perf_counter() - began


def _new_item() -> dict[str, Any]:
    return {"coordinationKey": {"S": f"bench-{uuid.uuid4().hex}"}, "value": {"S": "1"}}


def _put(client: Any, table: str) -> float:  # noqa: ANN401 (a boto3 client)
    item = _new_item()
    began = time.perf_counter()
    client.put_item(TableName=table, Item=item,
                    ConditionExpression="attribute_not_exists(coordinationKey)")  # fmt: skip
    return time.perf_counter() - began


def _transact(client: Any, table: str) -> float:  # noqa: ANN401 (a boto3 client)
    put = {"TableName": table, "Item": _new_item(),
           "ConditionExpression": "attribute_not_exists(coordinationKey)"}  # fmt: skip
    began = time.perf_counter()
    client.transact_write_items(TransactItems=[{"Put": put}])
    return time.perf_counter() - began


# -- the run ----------------------------------------------------------------------------------

FLOWCRAFT = "flowcraft-sqs"
BARE_SQS = "bare SQS round trip (send -> receive -> delete)"
BARE_PUT = "bare DynamoDB conditional put"
BARE_TX = "bare DynamoDB TransactWriteItems (1 conditional put)"
ONE = ", 1 run in flight"


@dataclass(slots=True)
class Table:
    """Measurements per configuration row (label, workers), in first-measured order."""

    rows: dict[tuple[str, int], list[Measured]]

    def add(self, label: str, workers: int, measured: Measured) -> None:
        """Record one measurement (and echo it to stderr as progress)."""
        self.rows.setdefault((label, workers), []).append(measured)
        s = measured.sample
        extra = ""
        if measured.workers is not None:
            extra = f" calls/step {per_step(measured.workers, measured.steps)}"
        if measured.cpu:
            cpu = {k: round(v / measured.steps * 1e3, 2) for k, v in measured.cpu.items()}
            extra += f" CPU ms/step {cpu}"
        load = Path("/proc/loadavg").read_text().split()[0]
        print(f"  [{time.strftime('%H:%M:%S')} load {load}] "
              f"{label} x{workers}: {s.steps_per_s:.1f} steps/s p50 {s.p50_ms:.2f} ms "
              f"p99 {s.p99_ms:.2f} ms{extra}", file=sys.stderr, flush=True)  # fmt: skip

    def median(self, label: str, workers: int) -> Sample:
        """The row's median sample."""
        return median_sample([m.sample for m in self.rows[(label, workers)]])


def per_step(snapshot: Snapshot, steps: int, kind: str = "calls") -> dict[str, float]:
    """Calls (or requests, errors) per step, per service."""
    by_service: dict[str, float] = {}
    for key, count in snapshot.get(kind, {}).items():
        service = key.split(".", 1)[0]
        by_service[service] = by_service.get(service, 0.0) + count / steps
    return {k: round(v, 3) for k, v in sorted(by_service.items())}


def measure(args: argparse.Namespace, services: Services, celeries: Mapping[str, str]) -> Table:
    """Every configuration once per repeat, interleaved."""
    table = Table(rows={})
    for repeat in range(args.repeat):
        print(f"repeat {repeat + 1}/{args.repeat}", file=sys.stderr, flush=True)
        bare = asyncio.run(bare_round_trips(services, args.round_trips))
        table.add(BARE_SQS, 0, Measured(sample=bare.sqs, steps=args.round_trips, cpu={}))
        table.add(BARE_PUT, 0, Measured(sample=bare.put, steps=args.round_trips, cpu={}))
        table.add(BARE_TX, 0, Measured(sample=bare.transact, steps=args.round_trips, cpu={}))
        if args.sequential_runs > 0:
            fc = flowcraft_once(services, args.sequential_runs, 1, args.concurrency, at_once=False)
            table.add(FLOWCRAFT + ONE, 1, asyncio.run(fc))
            for results, celery in celeries.items():
                m = celery_once(services, args.sequential_runs, 1, args, results, at_once=False)
                table.add(celery + ONE, 1, m)
        for workers in args.workers:
            fc = flowcraft_once(services, args.runs, workers, args.concurrency)
            table.add(FLOWCRAFT, workers, asyncio.run(fc))
            for results, celery in celeries.items():
                table.add(celery, workers, celery_once(services, args.runs, workers, args, results))
    return table


def print_report(args: argparse.Namespace, table: Table, celeries: Mapping[str, str]) -> None:
    """The results, the ratios against the targets, calls per step and per-repeat ratios."""
    print(f"{args.runs} runs x {STEPS} nodes at once (one run at a time: {args.sequential_runs}); "
          f"median of {args.repeat}\n")  # fmt: skip
    print("| configuration | workers | steps/s | p50 step ms | p99 step ms |")
    print("|---|---:|---:|---:|---:|")
    for label, workers in table.rows:
        s = table.median(label, workers)
        shown = (str(workers), f"{s.steps_per_s:.0f}") if workers else ("-", "-")
        print(f"| {label} | {shown[0]} | {shown[1]} | {s.p50_ms:.2f} | {s.p99_ms:.2f} |")
    print()
    print_ratios(args, table, celeries)
    print()
    print_calls(table)
    print()
    print_operations(table)
    print()
    print_cpu(table)
    print()
    print_repeats(args, table, celeries)


def _bare_sum(table: Table, i: int | None = None) -> float:
    """Bare SQS round trip p50 + bare conditional put p50 (median, or of repeat ``i``)."""
    if i is None:
        return table.median(BARE_SQS, 0).p50_ms + table.median(BARE_PUT, 0).p50_ms
    rows = table.rows
    return rows[(BARE_SQS, 0)][i].sample.p50_ms + rows[(BARE_PUT, 0)][i].sample.p50_ms


def print_ratios(args: argparse.Namespace, table: Table, celeries: Mapping[str, str]) -> None:
    """flowcraft/Celery throughput (per Celery variant) and flowcraft p50 / (bare SQS + put).

    The throughput target applies to the runs started at once; the step latency target to one
    run in flight (with every run started at once, a step waits behind the backlog: those
    ratios are shown, marked as backlog-bound).
    """
    bare = _bare_sum(table)
    heads = [f"flowcraft / Celery ({r} results) steps/s (target >= 1.5x)" for r in celeries]
    heads.append("flowcraft p50 step / (bare SQS round trip + conditional put) p50 (target <= 3x)")
    print("| workers | " + " | ".join(heads) + " |")
    print("|---|" + "---:|" * len(heads))
    rows = [(str(w), "", w, False) for w in args.workers]
    if args.sequential_runs > 0:
        rows.insert(0, ("1, one run in flight", ONE, 1, True))
    for shown, suffix, workers, alone in rows:
        fc = table.median(FLOWCRAFT + suffix, workers)
        cells = []
        for celery in celeries.values():
            speedup = fc.steps_per_s / table.median(celery + suffix, workers).steps_per_s
            cells.append(
                f"{speedup:.2f}x (no target)" if alone else verdict(speedup, 1.5, above=True)
            )
        ratio = fc.p50_ms / bare
        cells.append(verdict(ratio, 3.0, above=False) if alone else f"{ratio:.2f}x (backlog-bound)")
        print(f"| {shown} | " + " | ".join(cells) + " |")


def _median_per_step(measured: Sequence[Measured], who: str, kind: str) -> dict[str, float]:
    """Per-service figures per step, each the median over the repeats."""
    values: dict[str, list[float]] = {}
    for m in measured:
        snapshot = m.workers if who == "workers" else m.client
        if snapshot is None:
            continue
        found = per_step(snapshot, m.steps, kind)
        found["total"] = sum(found.values())
        for key in {*values, *found}:
            values.setdefault(key, []).append(found.get(key, 0.0))
    return {k: statistics.median(v) for k, v in values.items()}


def print_calls(table: Table) -> None:
    """SQS and DynamoDB calls per step of the flowcraft rows (workers; client apart)."""
    print(
        "| configuration | workers | SQS calls/step | DynamoDB calls/step | total (target <= 5) "
        "| retried requests/step | error answers/step | client's calls/step (SQS + DynamoDB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (label, workers), measured in table.rows.items():
        if not label.startswith(FLOWCRAFT):
            continue
        calls = _median_per_step(measured, "workers", "calls")
        requests = _median_per_step(measured, "workers", "requests")
        errors = _median_per_step(measured, "workers", "errors")
        client = _median_per_step(measured, "client", "calls")
        verdict = "met" if calls.get("total", 0.0) <= 5 else "NOT met"
        print(f"| {label} | {workers} | {calls.get('sqs', 0.0):.2f} "
              f"| {calls.get('dynamodb', 0.0):.2f} | {calls.get('total', 0.0):.2f} ({verdict}) "
              f"| {requests.get('total', 0.0) - calls.get('total', 0.0):.3f} "
              f"| {errors.get('total', 0.0):.3f} | {client.get('sqs', 0.0):.2f} + "
              f"{client.get('dynamodb', 0.0):.2f} |")  # fmt: skip


def print_operations(table: Table) -> None:
    """Worker calls per step by operation (median over repeats), one column per flowcraft row."""
    columns = [(label, w) for (label, w) in table.rows if label.startswith(FLOWCRAFT)]
    medians: dict[tuple[str, int], dict[str, float]] = {}
    for column in columns:
        values: dict[str, list[float]] = {}
        for m in table.rows[column]:
            snapshot = m.workers or {}
            keys = [("calls", k) for k in snapshot.get("calls", {})]
            keys += [("errors", k) for k in snapshot.get("errors", {})]
            keys += [(kind, k) for kind in ("items", "tables") for k in snapshot.get(kind, {})]
            for kind, key in keys:
                name = key if kind in ("calls", "tables") else f"{kind.removesuffix('s')} {key}"
                values.setdefault(name, []).append(snapshot[kind][key] / m.steps)
        runs = len(table.rows[column])
        medians[column] = {
            k: statistics.median(v + [0.0] * (runs - len(v))) for k, v in values.items()
        }
    names = sorted({k for found in medians.values() for k in found})
    heads = [
        f"{label.removeprefix(FLOWCRAFT).strip(', ') or 'at once'} x{w}" for label, w in columns
    ]
    print("| worker calls per step | " + " | ".join(heads) + " |")
    print("|---|" + "---:|" * len(columns))
    for name in names:
        cells = [f"{medians[c].get(name, 0.0):.3f}" for c in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")


def print_cpu(table: Table) -> None:
    """CPU milliseconds per step of each process group (median over repeats)."""
    keys = [k for k in ("moto", "workers", "bench", "redis")
            if any(k in m.cpu for ms in table.rows.values() for m in ms)]  # fmt: skip
    names = {"moto": "moto", "workers": "worker processes", "bench": "this process (client)",
             "redis": "Redis"}  # fmt: skip
    print("| configuration | workers | " + " | ".join(f"{names[k]} CPU ms/step" for k in keys)
          + " | all CPU ms/step |")  # fmt: skip
    print("|---|---:|" + "---:|" * (len(keys) + 1))
    for (label, workers), measured in table.rows.items():
        if not workers:
            continue
        per = {k: statistics.median(m.cpu.get(k, 0.0) / m.steps * 1e3 for m in measured)
               for k in keys}  # fmt: skip
        everything = statistics.median(
            sum(m.cpu.get(k, 0.0) for k in keys) / m.steps * 1e3 for m in measured
        )
        cells = " | ".join(f"{per[k]:.2f}" for k in keys)
        print(f"| {label} | {workers} | {cells} | {everything:.2f} |")


def print_repeats(args: argparse.Namespace, table: Table, celeries: Mapping[str, str]) -> None:
    """The ratios within each repeat (figures of the same minute: this machine drifts)."""
    heads = ["repeat", "bare SQS p50 ms", "bare put p50 ms"]
    if args.sequential_runs > 0:
        heads.append("1 run in flight p50 ms (/ bare sum)")
    for results in celeries:
        heads.extend(f"{w} workers / Celery ({results})" for w in args.workers)
    print("| " + " | ".join(heads) + " |")
    print("|" + "---:|" * len(heads))
    for i in range(args.repeat):
        sqs = table.rows[(BARE_SQS, 0)][i].sample.p50_ms
        put = table.rows[(BARE_PUT, 0)][i].sample.p50_ms
        cells = [str(i + 1), f"{sqs:.2f}", f"{put:.2f}"]
        if args.sequential_runs > 0:
            step = table.rows[(FLOWCRAFT + ONE, 1)][i].sample.p50_ms
            cells.append(f"{step:.2f} ({step / (sqs + put):.1f}x)")
        for celery in celeries.values():
            for w in args.workers:
                fc = table.rows[(FLOWCRAFT, w)][i].sample
                other = table.rows[(celery, w)][i].sample
                cells.append(f"{fc.steps_per_s / other.steps_per_s:.2f}x")
        print("| " + " | ".join(cells) + " |")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_common_arguments(parser, runs=50, round_trips=300, sequential_runs=30)
    parser.add_argument(
        "--celery-polling-interval", default="0.01",
        help="kombu's SQS polling_interval, seconds (empty: kombu's default, 1 s)",
    )  # fmt: skip
    parser.add_argument(
        "--celery-results", type=lambda s: [r for r in s.split(",") if r],
        default=["redis", "dynamodb"], help="Celery's result backends to run (redis, dynamodb)",
    )  # fmt: skip
    parser.add_argument("--visibility-timeout", type=int, default=30)
    parser.add_argument(
        "--endpoint-url",
        default=os.environ.get("FLOWCRAFT_AWS_ENDPOINT_URL", "http://127.0.0.1:15000"),
        help="moto (SQS and DynamoDB)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:16379/0", help="for Celery")
    parser.add_argument(
        "--moto-pid", type=int, default=0,
        help="moto's pid, for its CPU time (default: tools/services' pid file)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    services = Services(endpoint_url=args.endpoint_url, redis_url=args.redis_url,
                        visibility_timeout=args.visibility_timeout,
                        server_pids=server_pids(HERE.parent.parent, args.moto_pid))  # fmt: skip
    interval = args.celery_polling_interval or "1 (default)"
    celeries = {
        results: f"Celery {celery_version()} chord on SQS, {results} results "
        f"({args.celery_mode}, polling {interval} s)"
        for results in ([] if args.no_celery else args.celery_results)
    }
    print_report(args, measure(args, services, celeries), celeries)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
