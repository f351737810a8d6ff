"""flowcraft-rabbitmq against Celery 5 and a bare RabbitMQ round trip, side by side (issue 6).

Workload: ``--runs`` runs of a 10-node fan-out/fan-in (``start`` -> 8 parallel nodes -> ``join``)
of async no-op nodes that return ``time.time()`` at their start and end (``_bench_nodes``).

* **flowcraft-rabbitmq**, 1, 2 and 4 worker processes (``python -m flowcraft.core worker
  --backend rabbitmq --concurrency C``), a fresh namespace per configuration. The client, in this
  process, starts every run at once, then awaits the results one after another (in start order).
* **Celery**: the same shape as ``chain(start, chord([mid] * 8, join))`` (``_bench_celery``)
  over the same RabbitMQ (broker) with the Redis result backend, a fresh queue and Redis key
  prefix per configuration, Celery's defaults otherwise. ``--celery-mode prefork`` (default):
  ONE ``celery worker --pool=prefork --concurrency=N`` (N processes execute tasks; the parent
  consumes); ``solo``: N ``celery worker --pool=solo`` processes. All runs are submitted, then
  every result is awaited in submission order.
* **Bare RabbitMQ round trip**: publish one small persistent message (publisher confirms,
  ``mandatory``) to a durable queue -> receive it by ``basic.consume`` -> ack, sequentially,
  ``--round-trips`` times with pika's ``BlockingConnection`` (20 warm-up trips not counted).
* **1 run in flight** (both systems, one worker): ``--sequential-runs`` runs one after another,
  the per-step latency without a backlog (with every run started at once, step latency is
  mostly queueing: backlog / throughput).

Throughput is steps/s = runs x 10 / wall time (from the first start to the last result seen by
the client). Step latency is successor start - predecessor end, from the stamps in the results:
``start`` -> each middle node, and the last middle node's end -> ``join`` (9 samples per run).
Every configuration runs once per repeat (interleaved, so drift hits all alike); each figure is
the median over ``--repeat`` repeats, and a last table gives the ratios within each repeat
(figures of the same minute). Workers are started, awaited until ready, and only then is the
clock started; they are stopped with SIGTERM afterwards.

    python tools/bench/bench_rabbitmq.py                     # markdown tables on stdout
    python tools/bench/bench_rabbitmq.py --runs 200 --repeat 1 --workers 1,2
    python tools/bench/bench_rabbitmq.py --log-info --no-celery --sequential-runs 0

``--log-info`` measures flowcraft-rabbitmq a second time per configuration and repeat, right
after the first, with the workers at ``--log-level INFO`` (a text line per node outcome and per
run start and end, to the worker's log file), and reports the steps/s of both side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _bench_celery
import pika
from _bench_common import (
    STEPS,
    RunSpan,
    Sample,
    add_common_arguments,
    celery_commands,
    celery_gaps,
    celery_version,
    child_env,
    flowcraft_runs,
    logs_say,
    median_sample,
    percentile,
    processes,
    purge_redis_keys,
    summarize,
    verdict,
    wait_until,
)
from _bench_nodes import FLOW
from flowcraft.core import Client, dump_blueprint
from flowcraft.rabbitmq import RabbitMqBackend

# Re-exported (older benchmarks import them from here); they live in _bench_common.
__all__ = [
    "STEPS",
    "Sample",
    "celery_gaps",
    "child_env",
    "flowcraft_runs",
    "logs_say",
    "main",
    "median_sample",
    "percentile",
    "processes",
    "summarize",
    "wait_until",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """Where the three servers listen."""

    amqp_url: str
    postgres_dsn: str
    redis_url: str


# -- flowcraft-rabbitmq -----------------------------------------------------------------------


def flowcraft_commands(  # noqa: PLR0917 - one command line's parts
    services: Services,
    namespace: str,
    blueprint: Path,
    workers: int,
    concurrency: int,
    log_level: str | None = None,
) -> list[list[str]]:
    """One ``flowcraft worker`` command line per worker process."""
    command = [
        sys.executable, "-m", "flowcraft.core", "worker", "--backend", "rabbitmq",
        "--option", f"amqp_url={services.amqp_url}",
        "--option", f"postgres_dsn={services.postgres_dsn}",
        "--option", f"redis_url={services.redis_url}",
        "--namespace", namespace, "--registry", "_bench_nodes:FLOW",
        "--blueprint", str(blueprint), "--concurrency", str(concurrency),
    ]  # fmt: skip
    if log_level is not None:
        command += ["--log-level", log_level]
    return [command] * workers


@contextlib.asynccontextmanager
async def flowcraft_session(
    services: Services, workers: int, concurrency: int, log_level: str | None = None
) -> AsyncIterator[Client]:
    """A client on a fresh namespace served by ``workers`` ready worker processes."""
    namespace = f"bench_{uuid.uuid4().hex[:10]}"
    factory = RabbitMqBackend(amqp_url=services.amqp_url, postgres_dsn=services.postgres_dsn,
                              redis_url=services.redis_url)  # fmt: skip
    backend = await factory.create(namespace)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-fc-") as tmp:
            blueprint = Path(tmp) / "bench-fan.yaml"
            blueprint.write_text(dump_blueprint(FLOW.build(), format="yaml"))
            commands = flowcraft_commands(
                services, namespace, blueprint, workers, concurrency, log_level
            )
            with processes(commands, child_env(), Path(tmp)) as started:
                wait_until(logs_say(Path(tmp), workers, "flowcraft worker "), started)
                async with Client(
                    queue=backend.queue, store=backend.store, blueprints=[FLOW.build()]
                ) as client:
                    yield client
    finally:
        await factory.destroy(backend)


async def flowcraft_once(
    services: Services,
    runs: int,
    workers: int,
    concurrency: int,
    *,
    at_once: bool = True,
    log_level: str | None = None,
) -> Sample:
    """One configuration: a fresh namespace, ``workers`` worker processes, ``runs`` runs."""
    async with flowcraft_session(services, workers, concurrency, log_level) as client:
        return await flowcraft_runs(client, runs, at_once=at_once)


# -- Celery -----------------------------------------------------------------------------------


def celery_runs(app: Any, runs: int, *, at_once: bool) -> Sample:  # noqa: ANN401
    """``runs`` runs submitted at once (results awaited in order) or one after another."""
    began = time.perf_counter()
    if at_once:
        pending = [_bench_celery.workflow(app).apply_async() for _ in range(runs)]
        results = [p.get(timeout=900) for p in pending]
    else:
        results, spans = [], []
        for _ in range(runs):
            started = time.time()
            result = _bench_celery.workflow(app).apply_async().get(timeout=60)
            spans.append(RunSpan(started, result["join"]["t1"], time.time()))
            results.append(result)
    wall = time.perf_counter() - began
    gaps = [g for r in results for g in celery_gaps(r)]
    return summarize(runs * STEPS, wall, gaps, () if at_once else spans)


@contextlib.contextmanager
def celery_session(services: Services, workers: int, mode: str) -> Iterator[Any]:
    """An app on a fresh queue and key prefix, served by ready Celery workers; purged after."""
    tag = f"bench-celery-{uuid.uuid4().hex[:10]}"
    settings = {"broker": services.amqp_url, "backend": services.redis_url,
                "queue": tag, "prefix": f"{tag}:"}  # fmt: skip
    app = _bench_celery.make_app(**settings)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp:
            ready = Path(tmp) / "ready"
            ready.mkdir()
            env = child_env({f"BENCH_CELERY_{k.upper()}": v for k, v in settings.items()})
            env["BENCH_CELERY_READY"] = str(ready)
            commands = celery_commands("_bench_celery", mode, workers, tag)
            with processes(commands, env, Path(tmp)) as started:
                wait_until(lambda: len(list(ready.iterdir())) >= len(commands), started)
                yield app
    finally:
        app.close()
        purge_celery(services, tag)


def celery_once(
    services: Services, runs: int, workers: int, mode: str, *, at_once: bool = True
) -> Sample:
    """One configuration: a fresh queue and key prefix, Celery workers, ``runs`` runs."""
    with celery_session(services, workers, mode) as app:
        return celery_runs(app, runs, at_once=at_once)


def purge_celery(services: Services, tag: str) -> None:
    """Delete the configuration's queue and exchange on RabbitMQ and its keys in Redis."""
    connection = pika.BlockingConnection(pika.URLParameters(services.amqp_url))
    try:
        channel = connection.channel()
        channel.queue_delete(tag)
        channel.exchange_delete(tag)
    finally:
        connection.close()
    purge_redis_keys(services.redis_url, f"{tag}:")


# -- bare RabbitMQ round trip -----------------------------------------------------------------


def bare_round_trips(amqp_url: str, count: int, warmup: int = 20) -> Sample:
    """Publish (persistent, confirmed) -> consume -> ack of one small message, ``count`` times."""
    queue = f"bench-rt-{uuid.uuid4().hex[:10]}"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        publisher, consumer = connection.channel(), connection.channel()
        publisher.confirm_delivery()
        publisher.queue_declare(queue, durable=True)
        deliveries = consumer.consume(queue, inactivity_timeout=10)
        trips = [_round_trip(publisher, consumer, deliveries, queue) for _ in range(warmup + count)]
        consumer.cancel()
        publisher.queue_delete(queue)
    finally:
        connection.close()
    wall = sum(trips[warmup:])
    return summarize(count, wall, trips[warmup:])


def _round_trip(publisher: Any, consumer: Any, deliveries: Iterator[Any], queue: str) -> float:  # noqa: ANN401
    persistent = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
    began = time.perf_counter()
    publisher.basic_publish("", queue, b'{"n": 1}', properties=persistent, mandatory=True)
    method, _properties, _body = next(deliveries)
    consumer.basic_ack(method.delivery_tag)
    return time.perf_counter() - began


# -- the run ----------------------------------------------------------------------------------

FLOWCRAFT = "flowcraft-rabbitmq"
BARE = "bare RabbitMQ round trip"
ONE = ", 1 run in flight"
LOGGED = ", workers at --log-level INFO"


@dataclass(slots=True)
class Table:
    """Samples per configuration row (label, workers), in first-measured order."""

    rows: dict[tuple[str, int], list[Sample]]

    def add(self, label: str, workers: int, sample: Sample) -> None:
        """Record one sample (and echo it to stderr as progress)."""
        self.rows.setdefault((label, workers), []).append(sample)
        print(f"  {label} x{workers}: {sample}", file=sys.stderr, flush=True)

    def median(self, label: str, workers: int) -> Sample:
        """The row's median sample."""
        return median_sample(self.rows[(label, workers)])


def measure(args: argparse.Namespace, services: Services, celery: str) -> Table:
    """Every configuration once per repeat, interleaved."""
    table = Table(rows={})
    for repeat in range(args.repeat):
        print(f"repeat {repeat + 1}/{args.repeat}", file=sys.stderr, flush=True)
        table.add(BARE, 0, bare_round_trips(services.amqp_url, args.round_trips))
        measure_one_in_flight(args, services, celery, table)
        for workers in args.workers:
            fc = flowcraft_once(services, args.runs, workers, args.concurrency)
            table.add(FLOWCRAFT, workers, asyncio.run(fc))
            if args.log_info:
                fc = flowcraft_once(
                    services, args.runs, workers, args.concurrency, log_level="INFO"
                )
                table.add(FLOWCRAFT + LOGGED, workers, asyncio.run(fc))
            if not args.no_celery:
                sample = celery_once(services, args.runs, workers, args.celery_mode)
                table.add(celery, workers, sample)
    return table


def measure_one_in_flight(
    args: argparse.Namespace, services: Services, celery: str, table: Table
) -> None:
    """``--sequential-runs`` runs one after another on one worker: latency without a backlog."""
    if args.sequential_runs <= 0:
        return
    fc = flowcraft_once(services, args.sequential_runs, 1, args.concurrency, at_once=False)
    table.add(FLOWCRAFT + ONE, 1, asyncio.run(fc))
    if not args.no_celery:
        sample = celery_once(services, args.sequential_runs, 1, args.celery_mode, at_once=False)
        table.add(celery + ONE, 1, sample)


def print_report(args: argparse.Namespace, table: Table, celery: str) -> None:
    """The results table and the ratio table, as markdown."""
    print(f"{args.runs} runs x {STEPS} nodes at once (one run at a time: {args.sequential_runs}); "
          f"median of {args.repeat}\n")  # fmt: skip
    print("| configuration | workers | steps/s | p50 step ms | p99 step ms |")
    print("|---|---:|---:|---:|---:|")
    for label, workers in table.rows:
        s = table.median(label, workers)
        shown = (str(workers), f"{s.steps_per_s:.0f}") if workers else ("-", "-")
        print(f"| {label} | {shown[0]} | {shown[1]} | {s.p50_ms:.2f} | {s.p99_ms:.2f} |")
    print()
    print_logging(args, table)
    print_ratios(args, table, celery)
    print()
    print_start_to_result(args, table, celery)
    print()
    print_repeats(args, table, celery)


def print_logging(args: argparse.Namespace, table: Table) -> None:
    """``--log-info``: steps/s without and with INFO logs (medians, and per repeat)."""
    if not args.log_info:
        return
    print("| workers | steps/s | steps/s, INFO logs | change (medians) | per repeat |")
    print("|---:|---:|---:|---:|---|")
    for workers in args.workers:
        plain, logged = table.rows[(FLOWCRAFT, workers)], table.rows[(FLOWCRAFT + LOGGED, workers)]
        a, b = median_sample(plain).steps_per_s, median_sample(logged).steps_per_s
        each = ", ".join(
            f"{(y.steps_per_s / x.steps_per_s - 1) * 100:+.1f} %"
            for x, y in zip(plain, logged, strict=True)
        )
        print(f"| {workers} | {a:.0f} | {b:.0f} | {(b / a - 1) * 100:+.1f} % | {each} |")
    print()


def print_start_to_result(args: argparse.Namespace, table: Table, celery: str) -> None:
    """One run in flight: start call -> result, split into its steps and the tail after them.

    Targets (issue 21): the tail (last node's end -> result in the client's hands) <= 2 ms, and
    flowcraft's start -> result <= 1/3 of Celery's chord.
    """
    if args.sequential_runs <= 0:
        return
    print("| one run in flight, p50 | start -> result ms | start -> last node end ms "
          "| last node end -> result ms |")  # fmt: skip
    print("|---|---:|---:|---:|")
    labels = [FLOWCRAFT + ONE] + ([] if args.no_celery else [celery + ONE])
    for label in labels:
        s = table.median(label, 1)
        print(f"| {label} | {s.run_ms:.2f} | {s.steps_ms:.2f} | {s.tail_ms:.2f} |")
    fc = table.median(FLOWCRAFT + ONE, 1)
    assert fc.run_ms is not None
    assert fc.tail_ms is not None
    print()
    print(f"tail (target <= 2 ms): {fc.tail_ms:.2f} ms "
          f"({'met' if fc.tail_ms <= 2.0 else 'NOT met'})")  # fmt: skip
    if not args.no_celery:
        other = table.median(celery + ONE, 1).run_ms
        assert other is not None
        print(f"start -> result / Celery's (target <= 0.33x): "
              f"{verdict(fc.run_ms / other, 1 / 3, above=False)}")  # fmt: skip


def print_ratios(args: argparse.Namespace, table: Table, celery: str) -> None:
    """flowcraft/Celery throughput and flowcraft p50 / bare p50, with the issue's targets.

    The throughput target applies to the runs started at once; the step latency target to one
    run in flight (with every run started at once, a step waits behind the backlog: those
    ratios are shown, marked as backlog-bound).
    """
    bare = table.median(BARE, 0).p50_ms
    print("| workers | flowcraft / Celery steps/s (target >= 1.5x) "
          "| flowcraft p50 step / bare round trip p50 (target <= 3x) |")  # fmt: skip
    print("|---|---:|---:|")
    rows = [(str(w), FLOWCRAFT, celery, w, False) for w in args.workers]
    if args.sequential_runs > 0:
        rows.insert(0, ("1, one run in flight", FLOWCRAFT + ONE, celery + ONE, 1, True))
    for shown, fc_label, celery_label, workers, alone in rows:
        fc = table.median(fc_label, workers)
        speedup = None if args.no_celery else (
            fc.steps_per_s / table.median(celery_label, workers).steps_per_s
        )  # fmt: skip
        throughput = (
            "-" if speedup is None
            else f"{speedup:.2f}x (no target)" if alone
            else verdict(speedup, 1.5, above=True)
        )  # fmt: skip
        ratio = fc.p50_ms / bare
        latency = verdict(ratio, 3.0, above=False) if alone else f"{ratio:.2f}x (backlog-bound)"
        print(f"| {shown} | {throughput} | {latency} |")


def print_repeats(args: argparse.Namespace, table: Table, celery: str) -> None:
    """The ratios within each repeat (figures of the same minute: this machine drifts)."""
    heads = ["repeat", "bare round trip p50 ms"]
    if args.sequential_runs > 0:
        heads.append("1 run in flight p50 ms (/ bare)")
    if not args.no_celery:
        heads.extend(f"{w} workers / Celery" for w in args.workers)
    print("| " + " | ".join(heads) + " |")
    print("|" + "---:|" * len(heads))
    for i in range(args.repeat):
        bare = table.rows[(BARE, 0)][i].p50_ms
        cells = [str(i + 1), f"{bare:.2f}"]
        if args.sequential_runs > 0:
            step = table.rows[(FLOWCRAFT + ONE, 1)][i].p50_ms
            cells.append(f"{step:.2f} ({step / bare:.1f}x)")
        if not args.no_celery:
            for w in args.workers:
                fc, other = table.rows[(FLOWCRAFT, w)][i], table.rows[(celery, w)][i]
                cells.append(f"{fc.steps_per_s / other.steps_per_s:.2f}x")
        print("| " + " | ".join(cells) + " |")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_common_arguments(parser, runs=500, round_trips=500, sequential_runs=50)
    parser.add_argument(
        "--log-info", action="store_true", help="also measure workers at --log-level INFO"
    )
    parser.add_argument("--amqp-url", default="amqp://flowcraft:flowcraft@127.0.0.1:15673/%2F")
    parser.add_argument(
        "--postgres-dsn", default="postgresql://flowcraft:flowcraft@127.0.0.1:15432/flowcraft"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:16379/0")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    services = Services(amqp_url=args.amqp_url, postgres_dsn=args.postgres_dsn,
                        redis_url=args.redis_url)  # fmt: skip
    celery = f"Celery {celery_version()} chord ({args.celery_mode})"
    print_report(args, measure(args, services, celery), celery)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
