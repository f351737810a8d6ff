"""flowcraft-kafka against Celery 5 on Kafka, a bare Kafka round trip and a bare LWT (issue 18).

The workload, the table shape and the procedure are ``bench_rabbitmq.py``'s (read its
docstring): ``--runs`` runs of the 10-node fan-out/fan-in (``start`` -> 8 parallel nodes ->
``join``) of async no-op nodes started at once, results awaited in start order; steps/s = runs
x 10 / wall time; step latency = successor start - predecessor end (9 samples per run); every
configuration once per repeat, interleaved; figures are medians over ``--repeat`` repeats, and
a last table gives the ratios within each repeat.

* **flowcraft-kafka**, 1, 2 and 4 worker processes (``_bench_kafka_worker``: ``flowcraft worker
  --backend kafka --concurrency C`` as ``python -m flowcraft.core`` runs it, plus counting), a
  fresh namespace (topics ``<ns>-jobs*`` with the backend's 12 partitions, the namespace's rows
  in the shared tables; created by ``KafkaBackend.create``, destroyed after) per configuration.
  The clock starts once every worker's log says it is up, the consumer groups ``<ns>-workers``
  and ``<ns>-workers.delays`` (the delay forwarders') are stable with one member per worker
  process, each assigned partitions (so no rebalance falls into the window), **and** the
  workers' offset look-ups are over: a partition without a committed offset is looked up once
  (``ListOffsets``, ``auto.offset.reset``) after its assignment, 12 jobs and 72 delay
  partitions per process; before this wait they fell into the window and read as ~0.8
  ListOffsets per step.
* **Requests per step**, counted in the worker processes (``_bench_kafka_worker``): Kafka
  protocol requests by API from librdkafka's own statistics (every client's ``brokers.*.req``
  counters, refreshed every 100 ms), the clients' Python calls (produce / poll / consume /
  commit), and the statements cassandra-driver's sessions send, by kind (``BATCH`` is the
  adapter's conditional save). Each worker writes its counts on SIGUSR1; the bench takes them
  right before starting the clock and right after the last result, so a figure is the window's
  requests over its steps (idle fetches and heartbeats of that window included; the client's
  own requests, starting runs and reading results, are not).
* **Celery**: ``_bench_celery``'s chord over kombu's ``confluentkafka://`` transport on the
  same Kafka (``_bench_celery_kafka``), Redis results, a fresh topic, consumer group and key
  prefix per configuration; ``--celery-mode prefork`` (default) or ``solo`` as in
  ``bench_rabbitmq`` (kombu creates the topic with ONE partition, and its consumers of a topic
  share one group, so ``solo`` workers beyond the first get no partition: prefork is the fair
  setting); ``--celery-polling-interval`` (default 0.01 s; empty: kombu's 1 s) is kombu's
  sleep after an empty poll.
* **Bare Kafka round trip**: produce one small message (idempotent producer, ``acks=all``, as
  the adapter's; ``linger.ms`` 0) and wait for its delivery report -> receive it with a
  consumer assigned the topic's one partition -> commit its offset synchronously, sequentially,
  ``--round-trips`` times (20 warm-up trips not counted), on a fresh one-partition topic.
* **Bare LWT write**: ``INSERT ... IF NOT EXISTS`` of a new key into the keyspace's
  ``flowcraft_contexts_keys`` (``LOCAL_QUORUM``, serial ``LOCAL_SERIAL``, as the adapter),
  prepared, ``--round-trips`` times; the rows are deleted after.
* **8 concurrent LWTs on one partition** (reference, not part of a target): what the fan-out's
  8 claims of one run cost at once (Paxos serialises a partition's LWTs; the report names the
  node's ``paxos_variant``), wall time per group of 8, ``--round-trips`` / 8 groups.
* **1 run in flight** (both systems, one worker): ``--sequential-runs`` runs one after another.
* **CPU per step** of Kafka, Cassandra and Redis (pids from ``tools/services``' pid files), of
  the worker processes (with their children) and of this process, from ``/proc``.

Targets (issue 18): flowcraft / Celery steps/s >= 1.5x (runs started at once); p50 step with
one run in flight <= 3 x (bare Kafka round trip p50 + bare LWT p50).

    python tools/bench/bench_kafka.py                     # markdown tables on stdout
    python tools/bench/bench_kafka.py --runs 50 --repeat 1 --workers 1,2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _bench_celery_kafka
from _bench_common import (
    STEPS,
    Sample,
    Snapshot,
    add_common_arguments,
    celery_commands,
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
from _bench_kafka_worker import STATS_MS
from _bench_nodes import FLOW, MIDDLE
from bench_rabbitmq import celery_runs
from cassandra import ConsistencyLevel
from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from flowcraft.core import Client, dump_blueprint
from flowcraft.core.backends import Backend
from flowcraft.kafka import KafkaBackend

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """Where Kafka, Cassandra and Redis listen (and their pids, for their CPU time)."""

    bootstrap: str
    contact_points: str
    redis_url: str
    server_pids: Mapping[str, int]

    def options(self) -> list[str]:
        """``flowcraft worker --option`` arguments naming the three servers."""
        pairs = {"bootstrap_servers": self.bootstrap, "redis_url": self.redis_url,
                 "cassandra_contact_points": self.contact_points}  # fmt: skip
        return [arg for name, value in pairs.items() for arg in ("--option", f"{name}={value}")]

    def factory(self) -> KafkaBackend:
        """The backend factory on these servers."""
        return KafkaBackend(bootstrap_servers=self.bootstrap, redis_url=self.redis_url,
                            cassandra_contact_points=self.contact_points)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """One measurement: the sample, its step count, CPU seconds and the workers' counts."""

    sample: Sample
    steps: int
    cpu: Mapping[str, float]  # CPU seconds of the window: per server, "workers", "bench"
    workers: Snapshot | None = None


def cpu_now(services: Services, workers: Iterable[int]) -> dict[str, float]:
    """CPU seconds so far of the servers, the worker processes (with children) and this one."""
    found = {name: process_cpu(pid) for name, pid in services.server_pids.items()}
    found["workers"] = sum(process_cpu(pid) for pid in workers)
    found["bench"] = time.process_time()
    return found


# -- flowcraft-kafka --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def namespace_backend(services: Services) -> AsyncIterator[tuple[KafkaBackend, Backend]]:
    """A fresh namespace's ports (topics and tables created), destroyed afterwards."""
    factory = services.factory()
    namespace = f"bench-{uuid.uuid4().hex[:10]}"
    backend = await factory.create(namespace)
    try:
        yield factory, backend
    finally:
        await factory.destroy(backend)  # its Redis keys too


def flowcraft_commands(
    services: Services, namespace: str, blueprint: Path, counts: Sequence[Path], concurrency: int
) -> list[list[str]]:
    """One counting ``flowcraft worker`` command line per worker process."""
    flowcraft = [
        "worker", "--backend", "kafka", *services.options(),
        "--namespace", namespace, "--registry", "_bench_nodes:FLOW",
        "--blueprint", str(blueprint), "--concurrency", str(concurrency),
    ]  # fmt: skip
    return [
        [sys.executable, "-m", "_bench_kafka_worker", "--counts", str(path), *flowcraft]
        for path in counts
    ]


def group_ready(admin: AdminClient, group: str, members: int) -> bool:
    """True once ``group`` is stable with ``members`` members, each assigned partitions."""
    try:
        found = admin.describe_consumer_groups([group], request_timeout=5)[group].result()
    except Exception:  # not there yet (the workers are still joining)
        return False
    assigned = [m for m in found.members if m.assignment.topic_partitions]
    return found.state == ConsumerGroupState.STABLE and len(assigned) == members == len(
        found.members
    )


def wait_for_group(
    services: Services, group: str, members: int, started: Sequence[subprocess.Popen[bytes]]
) -> None:
    """Block until the workers' consumer group is stable (see :func:`group_ready`)."""
    admin = AdminClient({"bootstrap.servers": services.bootstrap})
    wait_until(lambda: group_ready(admin, group, members), started)


async def flowcraft_once(
    services: Services, runs: int, workers: int, concurrency: int, *, at_once: bool = True
) -> Measured:
    """One configuration: fresh namespace, ``workers`` counting worker processes, ``runs`` runs."""
    async with namespace_backend(services) as (_factory, backend):
        namespace = str(backend.extra["namespace"])
        with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp:
            logs = Path(tmp)
            blueprint = logs / "bench-fan.yaml"
            blueprint.write_text(dump_blueprint(FLOW.build(), format="yaml"))
            files = [logs / f"counts-{i}.json" for i in range(workers)]
            commands = flowcraft_commands(services, namespace, blueprint, files, concurrency)
            with processes(commands, child_env(), logs) as started:
                wait_until(logs_say(logs, workers, "flowcraft worker "), started)
                for group in (f"{namespace}-workers", f"{namespace}-workers.delays"):
                    await asyncio.to_thread(wait_for_group, services, group, workers, started)
                async with Client(
                    queue=backend.queue, store=backend.store, blueprints=[FLOW.build()]
                ) as client:
                    pids = [p.pid for p in started]
                    before, seq = await settled_counts(started, files)
                    cpu_before = cpu_now(services, pids)
                    sample = await flowcraft_runs(client, runs, at_once=at_once)
                    cpu = cpu_spent(cpu_now(services, pids), cpu_before)
                    after = await worker_counts(started, files, seq + 1)
    return Measured(sample=sample, steps=runs * STEPS, cpu=cpu,
                    workers=difference(after, before))  # fmt: skip


async def settled_counts(
    started: Sequence[subprocess.Popen[bytes]], files: Sequence[Path]
) -> tuple[Snapshot, int]:
    """The workers' counts once their offset look-ups stopped (``ListOffsets`` and
    ``OffsetFetch`` unchanged over three statistics intervals, at most 15 s); its number."""
    seq, last = 1, await worker_counts(started, files, 1)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        await asyncio.sleep(3 * STATS_MS / 1000)
        seq += 1
        now = await worker_counts(started, files, seq)
        if _lookups(now) == _lookups(last):
            return now, seq
        last = now
    return last, seq


def _lookups(snapshot: Snapshot) -> tuple[int, int]:
    requests = snapshot.get("kafka_requests", {})
    return requests.get("ListOffsets", 0), requests.get("OffsetFetch", 0)


# -- Celery on Kafka --------------------------------------------------------------------------


@contextlib.contextmanager
def celery_session(
    services: Services, workers: int, args: argparse.Namespace
) -> Iterator[tuple[Any, list[int]]]:
    """An app on a fresh topic and key prefix, and the pids of its ready workers."""
    tag = f"bench-celery-{uuid.uuid4().hex[:10]}"
    settings = {"bootstrap": services.bootstrap, "backend": services.redis_url, "queue": tag,
                "prefix": f"{tag}:", "polling_interval": args.celery_polling_interval,
                "wait_time": args.celery_wait_time}  # fmt: skip
    app = _bench_celery_kafka.make_app(**settings)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp:
            ready = Path(tmp) / "ready"
            ready.mkdir()
            env = child_env({f"BENCH_CELERY_{k.upper()}": v for k, v in settings.items()})
            env["BENCH_CELERY_READY"] = str(ready)
            commands = celery_commands("_bench_celery_kafka", args.celery_mode, workers, tag)
            with processes(commands, env, Path(tmp)) as started:
                wait_until(lambda: len(list(ready.iterdir())) >= len(commands), started)
                yield app, [p.pid for p in started]
    finally:
        app.close()
        purge_celery(services, tag)


def celery_once(
    services: Services, runs: int, workers: int, args: argparse.Namespace, *, at_once: bool = True
) -> Measured:
    """One configuration: a fresh topic and key prefix, Celery workers, ``runs`` runs."""
    with celery_session(services, workers, args) as (app, pids):
        before = cpu_now(services, pids)
        sample = celery_runs(app, runs, at_once=at_once)
        cpu = cpu_spent(cpu_now(services, pids), before)
    return Measured(sample=sample, steps=runs * STEPS, cpu=cpu)


def purge_celery(services: Services, tag: str) -> None:
    """Delete the configuration's topics and consumer groups and its keys in Redis."""
    admin = AdminClient({"bootstrap.servers": services.bootstrap})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(tag)]
    for future in admin.delete_topics(topics).values() if topics else ():
        with contextlib.suppress(Exception):
            future.result()
    groups = [f"{topic}-consumer-group" for topic in topics]
    for future in admin.delete_consumer_groups(groups).values() if groups else ():
        with contextlib.suppress(Exception):  # a group still emptying, or never created
            future.result()
    purge_redis_keys(services.redis_url, f"{tag}:")


# -- bare round trips -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Bare:
    """The bare round trips of one repeat."""

    kafka: Sample
    lwt: Sample
    contended: Sample  # ``FAN`` concurrent LWTs on one partition, wall time per group
    paxos: str  # the node's paxos_variant


async def bare_round_trips(services: Services, count: int, warmup: int = 20) -> Bare:
    """Kafka produce -> consume -> commit, and Cassandra LWT inserts (a fresh namespace)."""
    kafka = await asyncio.to_thread(kafka_round_trips, services.bootstrap, warmup + count)
    async with namespace_backend(services) as (factory, backend):
        session = backend.store.inner.cql.session  # type: ignore[attr-defined]
        namespace = str(backend.extra["namespace"])
        lwt = await asyncio.to_thread(
            lwt_writes, session, factory.keyspace, namespace, warmup + count
        )
        paxos = await asyncio.to_thread(paxos_variant, session)
        groups = max(1, count // FAN)
        contended = await asyncio.to_thread(
            contended_lwts, session, factory.keyspace, namespace, groups
        )
    kafka, lwt = kafka[warmup:], lwt[warmup:]
    return Bare(kafka=summarize(count, sum(kafka), kafka), lwt=summarize(count, sum(lwt), lwt),
                contended=summarize(groups, sum(contended), contended), paxos=paxos)  # fmt: skip


def kafka_round_trips(bootstrap: str, count: int) -> list[float]:
    """``count`` sequential produce (delivery awaited) -> receive -> synchronous commit trips."""
    topic = f"bench-rt-{uuid.uuid4().hex[:10]}"
    group = f"{topic}-group"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result()
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 0})  # fmt: skip
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})  # fmt: skip
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        return [_kafka_trip(producer, consumer, topic) for _ in range(count)]
    finally:
        consumer.close()
        producer.flush(10)
        admin.delete_topics([topic])[topic].result()
        with contextlib.suppress(Exception):
            admin.delete_consumer_groups([group])[group].result()


def _kafka_trip(producer: Any, consumer: Any, topic: str) -> float:  # noqa: ANN401
    began = time.perf_counter()
    producer.produce(topic, b'{"n": 1}')
    if producer.flush(30) != 0:
        raise RuntimeError("bare round trip: the message was not delivered within 30 s")
    deadline = began + 30
    while True:
        message = consumer.poll(1.0)
        if message is not None and message.error() is None:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError("bare round trip: the message did not arrive within 30 s")
    consumer.commit(message=message, asynchronous=False)
    return time.perf_counter() - began


def lwt_writes(session: Any, keyspace: str, namespace: str, count: int) -> list[float]:  # noqa: ANN401
    """``count`` ``INSERT ... IF NOT EXISTS`` of new keys; the rows deleted after."""
    table = f"{keyspace}.flowcraft_contexts_keys"
    insert = session.prepare(
        f"INSERT INTO {table} (namespace, idempotency_key, run_id) VALUES (?, ?, ?) IF NOT EXISTS"
    )
    insert.consistency_level = ConsistencyLevel.LOCAL_QUORUM
    insert.serial_consistency_level = ConsistencyLevel.LOCAL_SERIAL
    delete = session.prepare(f"DELETE FROM {table} WHERE namespace = ? AND idempotency_key = ?")
    keys = [f"bench-{uuid.uuid4().hex}" for _ in range(count)]
    times = []
    try:
        for key in keys:
            began = time.perf_counter()
            if not session.execute(insert, (namespace, key, "r")).was_applied:
                raise RuntimeError(f"bare LWT: key {key} already existed")
            times.append(time.perf_counter() - began)
    finally:
        for key in keys:
            session.execute(delete, (namespace, key))
    return times


FAN = len(MIDDLE)  # the fan-out's middle nodes (8)


def contended_lwts(session: Any, keyspace: str, namespace: str, groups: int) -> list[float]:  # noqa: ANN401
    """``groups`` times: ``FAN`` concurrent ``INSERT ... IF NOT EXISTS`` of different rows of
    ONE partition of the contexts table (as the fan-out's claims of one run); wall times.

    Paxos serialises the LWTs of a partition: with Paxos v1 the losers back off and retry.
    """
    table = f"{keyspace}.flowcraft_contexts"
    insert = session.prepare(
        f"INSERT INTO {table} (namespace, run_id, kind, key, value) VALUES (?, ?, 'bench', ?, 'v') "
        "IF NOT EXISTS"
    )
    insert.consistency_level = ConsistencyLevel.LOCAL_QUORUM
    insert.serial_consistency_level = ConsistencyLevel.LOCAL_SERIAL
    delete = session.prepare(f"DELETE FROM {table} WHERE namespace = ? AND run_id = ?")
    runs = [f"bench-{uuid.uuid4().hex}" for _ in range(groups)]
    times = []
    try:
        for run in runs:
            began = time.perf_counter()
            futures = [session.execute_async(insert, (namespace, run, f"k{i}")) for i in range(FAN)]
            for future in futures:
                future.result()
            times.append(time.perf_counter() - began)
    finally:
        for run in runs:
            session.execute(delete, (namespace, run))
    return times


def paxos_variant(session: Any) -> str:  # noqa: ANN401
    """The Cassandra node's ``paxos_variant`` setting (``?``: not readable)."""
    query = "SELECT value FROM system_views.settings WHERE name = 'paxos_variant'"
    try:
        row = session.execute(query).one()
    except Exception:  # an older Cassandra without the virtual table
        return "?"
    return str(row.value) if row is not None else "?"


# -- the run ----------------------------------------------------------------------------------

FLOWCRAFT = "flowcraft-kafka"
BARE_KAFKA = "bare Kafka round trip (produce -> consume -> commit)"
BARE_LWT = "bare Cassandra LWT (INSERT IF NOT EXISTS)"
CONTENDED = "8 concurrent LWTs on one partition, wall per group (reference: the fan-out's claims)"
ONE = ", 1 run in flight"


@dataclass(slots=True)
class Table:
    """Measurements per configuration row (label, workers), in first-measured order."""

    rows: dict[tuple[str, int], list[Measured]]
    paxos: str = "?"  # Cassandra's paxos_variant

    def add(self, label: str, workers: int, measured: Measured) -> None:
        """Record one measurement (and echo it to stderr as progress)."""
        self.rows.setdefault((label, workers), []).append(measured)
        s = measured.sample
        extra = ""
        if measured.workers is not None:
            found = per_step(measured.workers, measured.steps)
            extra = f" Kafka requests/step {found['kafka']:.2f} CQL/step {found['cql']:.2f}"
        load = Path("/proc/loadavg").read_text().split()[0]
        print(f"  [{time.strftime('%H:%M:%S')} load {load}] "
              f"{label} x{workers}: {s.steps_per_s:.1f} steps/s p50 {s.p50_ms:.2f} ms "
              f"p99 {s.p99_ms:.2f} ms{extra}", file=sys.stderr, flush=True)  # fmt: skip

    def median(self, label: str, workers: int) -> Sample:
        """The row's median sample."""
        return median_sample([m.sample for m in self.rows[(label, workers)]])


def per_step(snapshot: Snapshot, steps: int) -> dict[str, float]:
    """Kafka requests, Kafka client calls, CQL statements (and LWTs among them) per step."""
    requests = snapshot.get("kafka_requests", {})
    calls = snapshot.get("kafka_calls", {})
    cql = snapshot.get("cql", {})
    lwt = sum(n for kind, n in cql.items() if kind == "BATCH" or kind.endswith("+LWT"))
    return {
        "kafka": sum(requests.values()) / steps,
        "produce": requests.get("Produce", 0) / steps,
        "fetch": requests.get("Fetch", 0) / steps,
        "commit": requests.get("OffsetCommit", 0) / steps,
        "calls": sum(calls.values()) / steps,
        "cql": sum(cql.values()) / steps,
        "lwt": lwt / steps,
    }


def measure(args: argparse.Namespace, services: Services, celery: str | None) -> Table:
    """Every configuration once per repeat, interleaved."""
    table = Table(rows={})
    for repeat in range(args.repeat):
        print(f"repeat {repeat + 1}/{args.repeat}", file=sys.stderr, flush=True)
        bare = asyncio.run(bare_round_trips(services, args.round_trips))
        table.add(BARE_KAFKA, 0, Measured(sample=bare.kafka, steps=args.round_trips, cpu={}))
        table.add(BARE_LWT, 0, Measured(sample=bare.lwt, steps=args.round_trips, cpu={}))
        table.add(CONTENDED, 0, Measured(sample=bare.contended, steps=1, cpu={}))
        table.paxos = bare.paxos
        if args.sequential_runs > 0:
            fc = flowcraft_once(services, args.sequential_runs, 1, args.concurrency, at_once=False)
            table.add(FLOWCRAFT + ONE, 1, asyncio.run(fc))
            if celery is not None:
                m = celery_once(services, args.sequential_runs, 1, args, at_once=False)
                table.add(celery + ONE, 1, m)
        for workers in args.workers:
            fc = flowcraft_once(services, args.runs, workers, args.concurrency)
            table.add(FLOWCRAFT, workers, asyncio.run(fc))
            if celery is not None:
                table.add(celery, workers, celery_once(services, args.runs, workers, args))
    return table


def print_report(args: argparse.Namespace, table: Table, celery: str | None) -> None:
    """The results, the targets, the counts per step, CPU per step and per-repeat ratios."""
    print(f"{args.runs} runs x {STEPS} nodes at once (one run at a time: {args.sequential_runs}); "
          f"median of {args.repeat}; Cassandra paxos_variant {table.paxos}\n")  # fmt: skip
    print("| configuration | workers | steps/s | p50 step ms | p99 step ms |")
    print("|---|---:|---:|---:|---:|")
    for label, workers in table.rows:
        s = table.median(label, workers)
        shown = (str(workers), f"{s.steps_per_s:.0f}") if workers else ("-", "-")
        print(f"| {label} | {shown[0]} | {shown[1]} | {s.p50_ms:.2f} | {s.p99_ms:.2f} |")
    print()
    print_ratios(args, table, celery)
    print()
    print_start_to_result(args, table, celery)
    print_counts(table)
    print()
    print_operations(table)
    print()
    print_cpu(table)
    print()
    print_repeats(args, table, celery)


def _bare_sum(table: Table, i: int | None = None) -> float:
    """Bare Kafka round trip p50 + bare LWT p50 (median, or of repeat ``i``)."""
    if i is None:
        return table.median(BARE_KAFKA, 0).p50_ms + table.median(BARE_LWT, 0).p50_ms
    rows = table.rows
    return rows[(BARE_KAFKA, 0)][i].sample.p50_ms + rows[(BARE_LWT, 0)][i].sample.p50_ms


def print_ratios(args: argparse.Namespace, table: Table, celery: str | None) -> None:
    """flowcraft/Celery throughput and flowcraft p50 / (bare round trip + LWT), with targets.

    The throughput target applies to the runs started at once; the step latency target to one
    run in flight (with every run started at once, a step waits behind the backlog: those
    ratios are shown, marked as backlog-bound).
    """
    bare = _bare_sum(table)
    print("| workers | flowcraft / Celery steps/s (target >= 1.5x) "
          "| flowcraft p50 step / (bare round trip + LWT) p50 (target <= 3x) |")  # fmt: skip
    print("|---|---:|---:|")
    rows = [(str(w), "", w, False) for w in args.workers]
    if args.sequential_runs > 0:
        rows.insert(0, ("1, one run in flight", ONE, 1, True))
    for shown, suffix, workers, alone in rows:
        fc = table.median(FLOWCRAFT + suffix, workers)
        throughput = "-"
        if celery is not None:
            speedup = fc.steps_per_s / table.median(celery + suffix, workers).steps_per_s
            target = verdict(speedup, 1.5, above=True)
            throughput = f"{speedup:.2f}x (no target)" if alone else target
        ratio = fc.p50_ms / bare
        latency = verdict(ratio, 3.0, above=False) if alone else f"{ratio:.2f}x (backlog-bound)"
        print(f"| {shown} | {throughput} | {latency} |")
    print()
    print(f"bare Kafka round trip p50 + bare LWT p50 = {bare:.2f} ms")


def print_start_to_result(args: argparse.Namespace, table: Table, celery: str | None) -> None:
    """One run in flight: start call -> result, split into its steps and the tail after them."""
    if args.sequential_runs <= 0:
        return
    print("| one run in flight, p50 | start -> result ms | start -> last node end ms "
          "| last node end -> result ms |")  # fmt: skip
    print("|---|---:|---:|---:|")
    for label in [FLOWCRAFT + ONE] + ([] if celery is None else [celery + ONE]):
        s = table.median(label, 1)
        cells = [f"{v:.2f}" if v is not None else "-" for v in (s.run_ms, s.steps_ms, s.tail_ms)]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()


def _median_per_step(measured: Sequence[Measured]) -> dict[str, float]:
    values: dict[str, list[float]] = {}
    for m in measured:
        if m.workers is None:
            continue
        for key, value in per_step(m.workers, m.steps).items():
            values.setdefault(key, []).append(value)
    return {k: statistics.median(v) for k, v in values.items()}


def print_counts(table: Table) -> None:
    """Kafka requests and Cassandra statements per step of the flowcraft rows (workers)."""
    print("| configuration | workers | Kafka requests/step | of which Produce | Fetch "
          "| OffsetCommit | Kafka client calls/step | Cassandra statements/step "
          "| of which LWT (batch or IF) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (label, workers), measured in table.rows.items():
        if not label.startswith(FLOWCRAFT):
            continue
        f = _median_per_step(measured)
        keys = ("kafka", "produce", "fetch", "commit", "calls", "cql", "lwt")
        print(f"| {label} | {workers} | " + " | ".join(f"{f[k]:.2f}" for k in keys) + " |")


def print_operations(table: Table) -> None:
    """Worker requests per step by Kafka API and by CQL kind, one column per flowcraft row."""
    columns = [(label, w) for (label, w) in table.rows if label.startswith(FLOWCRAFT)]
    medians: dict[tuple[str, int], dict[str, float]] = {}
    for column in columns:
        values: dict[str, list[float]] = {}
        for m in table.rows[column]:
            snapshot = m.workers or {}
            for kind, prefix in (("kafka_requests", "Kafka "), ("kafka_calls", "client "),
                                 ("cql", "CQL ")):  # fmt: skip
                for key, count in snapshot.get(kind, {}).items():
                    values.setdefault(prefix + key, []).append(count / m.steps)
        runs = len(table.rows[column])
        medians[column] = {
            k: statistics.median(v + [0.0] * (runs - len(v))) for k, v in values.items()
        }
    names = sorted({k for found in medians.values() for k in found})
    heads = [
        f"{label.removeprefix(FLOWCRAFT).strip(', ') or 'at once'} x{w}" for label, w in columns
    ]
    print("| worker requests per step | " + " | ".join(heads) + " |")
    print("|---|" + "---:|" * len(columns))
    for name in names:
        cells = [f"{medians[c].get(name, 0.0):.3f}" for c in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")


def print_cpu(table: Table) -> None:
    """CPU milliseconds per step of each process group (median over repeats)."""
    keys = [k for k in ("kafka", "cassandra", "redis", "workers", "bench")
            if any(k in m.cpu for ms in table.rows.values() for m in ms)]  # fmt: skip
    names = {"kafka": "Kafka", "cassandra": "Cassandra", "redis": "Redis",
             "workers": "worker processes", "bench": "this process (client)"}  # fmt: skip
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


def print_repeats(args: argparse.Namespace, table: Table, celery: str | None) -> None:
    """The ratios within each repeat (figures of the same minute: this machine drifts)."""
    heads = ["repeat", "bare round trip p50 ms", "bare LWT p50 ms"]
    if args.sequential_runs > 0:
        heads.append("1 run in flight p50 ms (/ bare sum)")
    if celery is not None:
        heads.extend(f"{w} workers / Celery" for w in args.workers)
    print("| " + " | ".join(heads) + " |")
    print("|" + "---:|" * len(heads))
    for i in range(args.repeat):
        trip = table.rows[(BARE_KAFKA, 0)][i].sample.p50_ms
        lwt = table.rows[(BARE_LWT, 0)][i].sample.p50_ms
        cells = [str(i + 1), f"{trip:.2f}", f"{lwt:.2f}"]
        if args.sequential_runs > 0:
            step = table.rows[(FLOWCRAFT + ONE, 1)][i].sample.p50_ms
            cells.append(f"{step:.2f} ({step / _bare_sum(table, i):.1f}x)")
        if celery is not None:
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
    add_common_arguments(parser, runs=200, round_trips=300, sequential_runs=30)
    parser.add_argument(
        "--celery-polling-interval", default="0.01",
        help="kombu's polling_interval, seconds (empty: kombu's default, 1 s)",
    )  # fmt: skip
    parser.add_argument(
        "--celery-wait-time", default="",
        help="kombu's wait_time_seconds, the consumer's poll timeout (empty: default, 5 s)",
    )  # fmt: skip
    parser.add_argument(
        "--bootstrap", default=os.environ.get("FLOWCRAFT_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    )
    parser.add_argument(
        "--cassandra",
        default=os.environ.get("FLOWCRAFT_CASSANDRA_CONTACT_POINTS", "127.0.0.1:19042"),
        help="contact points, host[:port],...",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("FLOWCRAFT_REDIS_URL", "redis://127.0.0.1:16379/0")
    )
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    services = Services(
        bootstrap=args.bootstrap, contact_points=args.cassandra, redis_url=args.redis_url,
        server_pids=service_pids(HERE.parent.parent, ["kafka", "cassandra", "redis"]),
    )  # fmt: skip
    interval = args.celery_polling_interval or "1 (default)"
    celery = None if args.no_celery else (
        f"Celery {celery_version()} chord on Kafka (confluentkafka://), Redis results "
        f"({args.celery_mode}, polling {interval} s)"
    )  # fmt: skip
    print_report(args, measure(args, services, celery), celery)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
