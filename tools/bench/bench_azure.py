"""flowcraft-azure against Celery 5 on Azure Storage Queues, and bare Azurite / Cosmos round trips.

The workload, the table shape and the procedure are ``bench_rabbitmq.py``'s (read its
docstring): ``--runs`` runs of the 10-node fan-out/fan-in (``start`` -> 8 parallel nodes ->
``join``) of async no-op nodes started at once, results awaited in start order; steps/s = runs
x 10 / wall time; step latency = successor start - predecessor end (9 samples per run); every
configuration once per repeat, interleaved; figures are medians over ``--repeat`` repeats.
Servers: Azurite (queues), the local Cosmos DB server (``@vercel/cosmosdb-server`` over TLS)
and Redis, as ``tools/services`` starts them.

* **flowcraft-azure**, 1, 2 and 4 worker processes (``_bench_azure_worker``: ``flowcraft worker
  --backend azure --concurrency C`` as ``python -m flowcraft.core`` runs it, plus request
  counting), a fresh namespace (queues and containers, created by ``AzureBackend.create`` and
  deleted after) per configuration.
* **Service calls per step**: every worker process counts the HTTP requests of azure-core's
  aiohttp transport (both SDKs send through it; each retry is a request), per service and
  operation; on SIGUSR1 it writes its counts, which the bench takes right before starting the
  clock and right after the last result, so a figure is exactly the measured window's requests
  over its steps (idle polls included). The client's requests are counted the same way in this
  process and shown apart. A second table gives them per operation (``cosmos.patch``,
  ``queue.receive``, ...), and the answers of 400 or more among them (refused conditions,
  conflicts, throttling) per status.
* **Celery**: ``_bench_celery``'s chord over kombu's Azure Storage Queues transport on the same
  Azurite (``_bench_celery_azure``), results in Redis, a fresh queue and key prefix per
  configuration; ``--celery-mode prefork`` (default) or ``solo`` as in ``bench_rabbitmq``;
  ``--celery-polling-interval`` (default 0.01 s; empty: kombu's 1 s).
* **Bare queue round trip**: send one small message -> receive it -> delete it, sequentially,
  ``--round-trips`` times (20 warm-up trips not counted), with the adapter's async client.
* **Bare Cosmos conditional write**: one ``patch_item`` of one item with a filter predicate on
  its version (what every save is), ``--round-trips`` times.
* **1 run in flight** (both systems, one worker): ``--sequential-runs`` runs one after another.

Targets (issue 17): flowcraft / Celery steps/s >= 1.5x (runs started at once); p50 step with one
run in flight <= 3 x (bare queue round trip p50 + bare conditional write p50); calls per step
<= 5.

    python tools/bench/bench_azure.py                      # markdown tables on stdout
    python tools/bench/bench_azure.py --runs 10 --repeat 1 --workers 1,2 --sequential-runs 5
    python tools/bench/bench_azure.py --no-celery ...     # flowcraft-azure and bare trips only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _bench_celery
import _bench_celery_azure
import redis
from _bench_azure_worker import Requests
from _bench_nodes import FLOW
from _bench_sqs_worker import Snapshot, difference
from bench_rabbitmq import (
    STEPS,
    Sample,
    celery_gaps,
    child_env,
    flowcraft_runs,
    logs_say,
    median_sample,
    percentile,
    processes,
    summarize,
    wait_until,
)
from bench_sqs import worker_counts
from flowcraft.azure import AzureBackend
from flowcraft.azure._clients import cosmos_client, queue_client
from flowcraft.core import Client, dump_blueprint

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """Where Azurite, the Cosmos server and Redis listen."""

    queue_connection_string: str
    cosmos_url: str
    cosmos_key: str
    cosmos_ca_file: str
    redis_url: str
    visibility_timeout: int = 30

    def options(self) -> dict[str, str]:
        return {"queue_connection_string": self.queue_connection_string,
                "cosmos_url": self.cosmos_url, "cosmos_key": self.cosmos_key,
                "cosmos_ca_file": self.cosmos_ca_file, "redis_url": self.redis_url,
                "visibility_timeout": str(self.visibility_timeout),
                "max_poll_interval": "0.25"}  # fmt: skip

    def factory(self) -> AzureBackend:
        return AzureBackend(**self.options())

    @staticmethod
    def local() -> Services:
        """The servers ``tools/services`` starts (its catalog's ports and development keys)."""
        catalog = tomllib.loads((ROOT / "tools" / "services" / "services.toml").read_text())
        azurite, cosmos, redis_ = catalog["azurite"], catalog["cosmos"], catalog["redis"]
        return Services(
            queue_connection_string=(
                f"DefaultEndpointsProtocol=http;AccountName={azurite['account']};"
                f"AccountKey={azurite['account_key']};QueueEndpoint={azurite['queue_url']};"
            ),
            cosmos_url=cosmos["url"], cosmos_key=cosmos["key"],
            cosmos_ca_file=str(ROOT / ".services" / "cosmos" / "tls" / "ca.pem"),
            redis_url=f"redis://127.0.0.1:{redis_['port']}/0",
        )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """One measurement: the sample, and the requests of the workers and of the client."""

    sample: Sample
    steps: int
    workers: Snapshot | None = None
    client: Snapshot | None = None


def per_step(snapshot: Snapshot, steps: int, kind: str = "requests") -> dict[str, float]:
    """Requests (or errors) per step, per service."""
    by_service: dict[str, float] = {}
    for key, count in snapshot.get(kind, {}).items():
        service = key.split(".", 1)[0]
        by_service[service] = by_service.get(service, 0.0) + count / steps
    return {k: round(v, 3) for k, v in sorted(by_service.items())}


# -- flowcraft-azure ---------------------------------------------------------------------------


def flowcraft_commands(
    services: Services, namespace: str, blueprint: Path, files: Sequence[Path], concurrency: int
) -> list[list[str]]:
    """One counting ``flowcraft worker --backend azure`` command line per counts file."""
    options = [a for k, v in services.options().items() for a in ("--option", f"{k}={v}")]
    return [
        [sys.executable, "-m", "_bench_azure_worker", "--counts", str(path),
         "worker", "--backend", "azure", *options, "--namespace", namespace,
         "--registry", "_bench_nodes:FLOW", "--blueprint", str(blueprint),
         "--concurrency", str(concurrency)]
        for path in files
    ]  # fmt: skip


async def flowcraft_once(
    services: Services,
    runs: int,
    workers: int,
    concurrency: int,
    requests: Requests,
    *,
    at_once: bool = True,
) -> Measured:
    """One configuration: fresh namespace, ``workers`` counting worker processes, ``runs`` runs."""
    factory = services.factory()
    backend = await factory.create(f"bench-{uuid.uuid4().hex[:10]}")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-azure-") as tmp:
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
                    before = await worker_counts(started, files, 1)
                    client_before = requests.snapshot()
                    sample = await flowcraft_runs(client, runs, at_once=at_once)
                    after = await worker_counts(started, files, 2)
                    client_after = requests.snapshot()
    finally:
        await factory.destroy(backend)
    return Measured(sample=sample, steps=runs * STEPS, workers=difference(after, before),
                    client=difference(client_after, client_before))  # fmt: skip


# -- Celery on Azure Storage Queues ------------------------------------------------------------


def celery_commands(mode: str, workers: int, tag: str) -> list[list[str]]:
    """``prefork``: one worker with ``workers`` pool processes; ``solo``: ``workers`` workers."""
    base = [
        sys.executable, "-m", "celery", "-A", "_bench_celery_azure", "worker",
        "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    if mode == "prefork":
        return [[*base, "--pool=prefork", f"--concurrency={workers}", f"-n={tag}-0@%h"]]
    return [[*base, "--pool=solo", f"-n={tag}-{i}@%h"] for i in range(workers)]


@contextlib.contextmanager
def celery_session(
    services: Services, workers: int, mode: str, polling_interval: str
) -> Iterator[Any]:
    """An app on a fresh queue and result prefix, with its workers ready."""
    tag = f"bench-celery-{uuid.uuid4().hex[:10]}"
    settings = {
        "broker": _bench_celery_azure.broker_url(services.queue_connection_string),
        "backend": services.redis_url,
        "queue": tag,
        "prefix": f"{tag}:",
        "polling_interval": polling_interval,
    }
    app = _bench_celery_azure.make_app(**settings)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp:
            ready = Path(tmp) / "ready"
            ready.mkdir()
            env = child_env({f"BENCH_CELERY_{k.upper()}": v for k, v in settings.items()})
            env["BENCH_CELERY_READY"] = str(ready)
            commands = celery_commands(mode, workers, tag)
            with processes(commands, env, Path(tmp)):
                deadline = time.monotonic() + 60
                while len(list(ready.iterdir())) < len(commands):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"Celery workers not ready; logs in {tmp}")
                    time.sleep(0.05)
                yield app
    finally:
        app.close()
        purge_celery(services, tag)


def celery_runs(app: Any, runs: int, *, at_once: bool) -> Sample:  # noqa: ANN401
    """``bench_rabbitmq.celery_runs``, polling results every 20 ms."""
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


def purge_celery(services: Services, tag: str) -> None:
    """Delete the configuration's queues and its keys in Redis."""
    from azure.storage.queue import QueueServiceClient

    service = QueueServiceClient.from_connection_string(services.queue_connection_string)
    try:
        for queue in service.list_queues(name_starts_with=tag):
            service.delete_queue(queue.name)
    finally:
        service.close()
    client = redis.Redis.from_url(services.redis_url)
    try:
        keys = list(client.scan_iter(match=f"{tag}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# -- bare round trips --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bare:
    """p50 / p99 (ms) of the bare round trips."""

    queue: tuple[float, float]
    write: tuple[float, float]


async def bare_round_trips(services: Services, count: int, warmup: int = 20) -> Bare:
    """The queue's send -> receive -> delete, and one conditional patch, ``count`` times each."""
    name = f"bench-bare-{uuid.uuid4().hex[:10]}"
    queue = queue_client(name, connection_string=services.queue_connection_string)
    cosmos = cosmos_client(url=services.cosmos_url, key=services.cosmos_key,
                           ca_file=services.cosmos_ca_file)  # fmt: skip
    trips: list[float] = []
    writes: list[float] = []
    try:
        await queue.create_queue()
        database = await cosmos.create_database_if_not_exists(f"{name}-db")
        from azure.cosmos import PartitionKey

        container = await database.create_container_if_not_exists(
            id="bare", partition_key=PartitionKey(path="/runId")
        )
        await container.create_item({"id": "r", "runId": "r", "ver": 0})
        for index in range(warmup + count):
            began = time.perf_counter()
            await queue.send_message("x")
            got: list[Any] = []
            while not got:
                got = [m async for m in queue.receive_messages(max_messages=1)]
            await queue.delete_message(got[0])
            trip = time.perf_counter() - began
            began = time.perf_counter()
            await container.patch_item(
                "r", partition_key="r", filter_predicate=f"FROM c WHERE c.ver = {index}",
                patch_operations=[{"op": "set", "path": "/ver", "value": index + 1},
                                  {"op": "set", "path": "/h", "value": "x" * 200}],
            )  # fmt: skip
            write = time.perf_counter() - began
            if index >= warmup:
                trips.append(trip)
                writes.append(write)
    finally:
        with contextlib.suppress(Exception):
            await queue.delete_queue()
        with contextlib.suppress(Exception):
            await cosmos.delete_database(f"{name}-db")
        await queue.close()
        await cosmos.close()

    def p(values: Sequence[float]) -> tuple[float, float]:
        return percentile(values, 0.5) * 1e3, percentile(values, 0.99) * 1e3

    return Bare(queue=p(trips), write=p(writes))


# -- the measurement ---------------------------------------------------------------------------


@dataclass(slots=True)
class Table:
    """Every configuration's measurements over the repeats."""

    rows: dict[str, list[Measured]] = field(default_factory=dict)
    bare: list[Bare] = field(default_factory=list)

    def add(self, name: str, measured: Measured) -> None:
        self.rows.setdefault(name, []).append(measured)

    def sample(self, name: str) -> Sample:
        return median_sample([m.sample for m in self.rows[name]])


async def measure(args: argparse.Namespace, services: Services) -> Table:
    """Every configuration once per repeat, interleaved."""
    table = Table()
    requests = Requests()
    requests.install()
    for _ in range(args.repeat):
        for workers in args.workers:
            ours = await flowcraft_once(services, args.runs, workers, args.concurrency, requests)
            table.add(f"flowcraft-azure, {workers} worker(s)", ours)
            if args.celery:
                with celery_session(services, workers, args.celery_mode,
                                    args.celery_polling_interval) as app:  # fmt: skip
                    sample = celery_runs(app, args.runs, at_once=True)
                theirs = Measured(sample=sample, steps=args.runs * STEPS)
                table.add(f"Celery, {workers} worker(s)", theirs)
        one = await flowcraft_once(
            services, args.sequential_runs, 1, args.concurrency, requests, at_once=False
        )
        table.add("flowcraft-azure, 1 run in flight", one)
        if args.celery:
            with celery_session(services, 1, args.celery_mode,
                                args.celery_polling_interval) as app:  # fmt: skip
                sample = celery_runs(app, args.sequential_runs, at_once=False)
            table.add("Celery, 1 run in flight",
                      Measured(sample=sample, steps=args.sequential_runs * STEPS))  # fmt: skip
        table.bare.append(await bare_round_trips(services, args.round_trips))
    return table


def _median_requests(measured: Sequence[Measured], who: str) -> dict[str, float]:
    """Per service, the median over the repeats of requests per step."""
    per: list[dict[str, float]] = []
    for m in measured:
        snapshot = m.workers if who == "workers" else m.client
        if snapshot is not None:
            per.append(per_step(snapshot, m.steps))
    keys = sorted({k for p in per for k in p})
    return {k: round(statistics.median(p.get(k, 0.0) for p in per), 2) for k in keys}


def by_operation(snapshot: Snapshot, steps: int, kind: str = "requests") -> dict[str, float]:
    """Requests (or answers >= 400) per step, per ``service.operation`` (``.status``)."""
    return {k: v / steps for k, v in sorted(snapshot.get(kind, {}).items())}


def _median_operations(
    measured: Sequence[Measured], who: str, kind: str = "requests"
) -> dict[str, float]:
    """Per ``service.operation``, the median over the repeats of requests per step."""
    per = [by_operation(s, m.steps, kind) for m in measured
           for s in [m.workers if who == "workers" else m.client] if s is not None]  # fmt: skip
    keys = sorted({k for p in per for k in p})
    return {k: round(statistics.median(p.get(k, 0.0) for p in per), 2) for k in keys}


def print_operations(table: Table) -> None:
    """Requests per step of each flowcraft-azure configuration, per operation."""
    names = [n for n in table.rows if n.startswith("flowcraft-azure")]
    per = {n: (_median_operations(table.rows[n], "workers"),
               _median_operations(table.rows[n], "client")) for n in names}  # fmt: skip
    keys = sorted({k for w, c in per.values() for k in (*w, *c)})
    print(
        "\n| requests per step, workers (+ client) | "
        + " | ".join(n.removeprefix("flowcraft-azure, ") for n in names)
        + " |"
    )
    print("|---|" + "---:|" * len(names))
    for key in keys:
        cells = []
        for name in names:
            w, c = per[name]
            cell = f"{w.get(key, 0.0):.2f}"
            if c.get(key):
                cell += f" (+{c[key]:.2f})"
            cells.append(cell)
        print(f"| {key} | " + " | ".join(cells) + " |")
    totals = [f"{sum(per[n][0].values()):.2f} (+{sum(per[n][1].values()):.2f})" for n in names]
    print("| **total** | " + " | ".join(totals) + " |")
    errors = {
        n: tuple(_median_operations(table.rows[n], who, "errors") for who in ("workers", "client"))
        for n in names
    }
    for key in sorted({k for w, c in errors.values() for k in (*w, *c)}):
        cells = [f"{errors[n][0].get(key, 0.0):.2f} (+{errors[n][1].get(key, 0.0):.2f})"
                 for n in names]  # fmt: skip
        print(
            f"| of which answered {key.rsplit('.', 1)[1]}: {key.rsplit('.', 1)[0]} | "
            + " | ".join(cells)
            + " |"
        )


def print_report(args: argparse.Namespace, table: Table) -> None:
    print(f"## flowcraft-azure vs Celery on Azure Storage Queues ({args.runs} runs at once, "
          f"{args.sequential_runs} one after another; medians of {args.repeat} repeat(s))",
          end="\n\n")  # fmt: skip
    print("| configuration | steps/s | p50 step (ms) | p99 step (ms) | requests/step (workers) "
          "| requests/step (client) |")  # fmt: skip
    print("|---|---:|---:|---:|---|---|")
    for name, measured in table.rows.items():
        s = table.sample(name)
        workers = _median_requests(measured, "workers")
        client = _median_requests(measured, "client")
        w = ", ".join(f"{k} {v}" for k, v in workers.items()) or "-"
        c = ", ".join(f"{k} {v}" for k, v in client.items()) or "-"
        print(f"| {name} | {s.steps_per_s:.1f} | {s.p50_ms:.1f} | {s.p99_ms:.1f} | {w} | {c} |")
    queue50 = statistics.median(b.queue[0] for b in table.bare)
    queue99 = statistics.median(b.queue[1] for b in table.bare)
    write50 = statistics.median(b.write[0] for b in table.bare)
    write99 = statistics.median(b.write[1] for b in table.bare)
    print(f"\nBare queue round trip (send -> receive -> delete): p50 {queue50:.1f} ms, p99 "
          f"{queue99:.1f} ms; bare Cosmos conditional patch: p50 {write50:.1f} ms, p99 "
          f"{write99:.1f} ms ({args.round_trips} each).\n")  # fmt: skip
    print("| target | measured | verdict |")
    print("|---|---:|---|")
    for workers in args.workers if args.celery else ():
        ours = table.sample(f"flowcraft-azure, {workers} worker(s)").steps_per_s
        theirs = table.sample(f"Celery, {workers} worker(s)").steps_per_s
        ratio = ours / theirs
        print(f"| steps/s vs Celery, {workers} worker(s) >= 1.5x | {ratio:.2f}x | "
              f"{'met' if ratio >= 1.5 else 'not met'} |")  # fmt: skip
    p50 = table.sample("flowcraft-azure, 1 run in flight").p50_ms
    bound = 3 * (queue50 + write50)
    print(f"| p50 step, 1 run in flight <= 3 x (queue trip + write) = {bound:.1f} ms | "
          f"{p50:.1f} ms | {'met' if p50 <= bound else 'not met'} |")  # fmt: skip
    for name, measured in table.rows.items():
        if name.startswith("flowcraft-azure"):
            total = sum(_median_requests(measured, "workers").values())
            total += sum(_median_requests(measured, "client").values())
            print(f"| service calls per step <= 5 ({name}) | {total:.2f} | "
                  f"{'met' if total <= 5 else 'not met'} |")  # fmt: skip
    print_operations(table)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=100, help="runs started at once")
    parser.add_argument("--sequential-runs", type=int, default=20, help="runs one at a time")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--concurrency", type=int, default=16, help="per flowcraft worker")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--celery-mode", choices=("prefork", "solo"), default="prefork")
    parser.add_argument("--celery-polling-interval", default="0.01")
    parser.add_argument(
        "--no-celery",
        dest="celery",
        action="store_false",
        help="flowcraft-azure and the bare round trips only (e.g. to count requests)",
    )
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in str(args.workers).split(",")]
    return args


def main() -> int:
    args = parse_args()
    table = asyncio.run(measure(args, Services.local()))
    print_report(args, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
