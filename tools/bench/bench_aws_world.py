"""flowcraft-aws-world on moto: calls per step and per event, steps/s, bare round trips (issue 20).

* **The workload**: ``_bench_vercel_programs.twenty_steps`` (a vercel-workflow program of 20
  steps in a row) run through :class:`~flowcraft.core.world.vercel.VercelBridge` on an
  :class:`~flowcraft.aws_world.AwsWorld`, as ``tests-integration/aws_world/``'s
  ``test_vercel_aws_world.py`` runs it. A **step** is one vercel-workflow step (one ``add``
  call: ``step_created``, ``step_started``, ``step_completed`` and the workflow replay that
  follows it); a run is 20 steps and 63 World events (``run_created``, ``run_started``, 3 per
  step, ``run_completed``), counted from the runs' event logs after the window.
* **Workers**: ``--workers`` (default 1, 2, 4) processes of ``_bench_aws_world_worker``, each
  a World with its queue consumers and vercel-workflow's handler; a fresh prefix (tables, queues,
  bucket created by ``ensure_infrastructure`` and dropped after) per configuration. This process
  starts ``--runs`` runs at once (``vw.start``) and polls each run's status in start order
  (every 20 ms); steps/s = runs x 20 / (first start -> last run completed).
* **Calls**: every worker counts its boto3 calls with botocore's event hooks
  (``_bench_sqs_worker.Calls``: ``before-call`` per API call, ``before-send`` per HTTP attempt,
  ``after-call`` error answers, items per ``TransactWriteItems``); the counts are taken on
  SIGUSR1 right before the first start and right after the last completion, so a figure is the
  measured window's calls (idle long polls included) over its steps or events. This process's
  calls (``vw.start``'s run creation and first message, the status polls) are shown apart.
  Target: one ``TransactWriteItems`` per event write (the workers' and this process's
  transactions over the events of the logs: ``run_created`` is written here).
* **Bare round trips** on a fresh prefix of the same moto, in the same invocation: SQS send ->
  receive (long poll) -> delete on the step queue (``bench_sqs._sqs_trip``); one DynamoDB
  ``PutItem`` of a new item on ``attribute_not_exists`` (the dedup table), and the same put as a
  one-item ``TransactWriteItems``; ``--round-trips`` each after 20 warm-up trips.
* **CPU per step** of moto (its pid from ``tools/services``), the workers and this process.

Figures are medians over ``--repeat`` repeats (configurations interleaved). moto is one
process (one GIL) serving every call: throughput is about 1 / moto's CPU per step.

    python tools/bench/bench_aws_world.py                          # markdown on stdout
    python tools/bench/bench_aws_world.py --runs 20 --workers 1,2 --repeat 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _bench_vercel_programs as programs
from _bench_aws_world_worker import DEPLOYMENT, READY, watch, world_config
from _bench_common import (
    Sample,
    Snapshot,
    child_env,
    cpu_spent,
    difference,
    logs_say,
    median_sample,
    process_cpu,
    processes,
    service_pids,
    summarize,
    wait_until,
    worker_counts,
)
from _bench_sqs_worker import Calls
from bench_sqs import _sqs_trip, per_step
from flowcraft.aws_world import AwsWorld, AwsWorldConfig
from flowcraft.core.world import Pagination
from flowcraft.core.world.vercel import VercelBridge
from vercel import workflow as vw
from vercel.workflow._internal import world as vercel_world

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ENDED = ("completed", "failed", "cancelled")


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """One configuration's window: throughput, counts and CPU."""

    steps_per_s: float
    steps: int
    events: int
    cpu: Mapping[str, float]  # CPU seconds: "moto", "workers", "bench"
    workers: Snapshot
    client: Snapshot


# -- the World, vercel-workflow's program -----------------------------------------------------


async def fresh_world(endpoint_url: str) -> tuple[AwsWorld, AwsWorldConfig]:
    """A World on a fresh prefix (its infrastructure created)."""
    config = world_config(f"bench-aw-{uuid.uuid4().hex[:10]}", endpoint_url)
    world = AwsWorld(config)
    await world.ensure_infrastructure()
    return world, config


async def drop(world: AwsWorld) -> None:
    """Drop ``world``'s infrastructure and close it."""
    try:
        await world.drop_infrastructure()
    finally:
        await world.aclose()


def cpu_now(moto: int, workers: Iterable[int]) -> dict[str, float]:
    """CPU seconds so far of moto (0: unknown), the workers (with children) and this process."""
    found = {"moto": process_cpu(moto)} if moto else {}
    found["workers"] = sum(process_cpu(pid) for pid in workers)
    found["bench"] = time.process_time()
    return found


async def _completed(run: Any, deadline: float) -> None:  # noqa: ANN401 (vercel's Run)
    while (status := await run.status()) not in ENDED:
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run.run_id} still {status} at the deadline")
        await asyncio.sleep(0.02)
    if status != "completed":
        raise RuntimeError(f"run {run.run_id} {status}")


async def _event_count(world: AwsWorld, run_id: str) -> int:
    page = await world.events_list(run_id, pagination=Pagination(limit=1000))
    assert not page.has_more
    return len(page.data)


async def world_once(endpoint_url: str, runs: int, workers: int, moto: int) -> Measured:
    """``workers`` worker processes on a fresh prefix; ``runs`` runs started at once."""
    world, config = await fresh_world(endpoint_url)
    try:
        client = Calls()
        watch(client, world)
        vercel_world.set_world(VercelBridge(world, deployment_id=DEPLOYMENT))
        programs.serve()
        with tempfile.TemporaryDirectory(prefix="bench-aws-world-") as tmp:
            logs = Path(tmp)
            files = [logs / f"counts-{i}.json" for i in range(workers)]
            prefix = config.runs_table.removesuffix("-runs")
            commands = [
                [sys.executable, "-m", "_bench_aws_world_worker", "--prefix", prefix,
                 "--endpoint-url", endpoint_url, "--counts", str(path)]
                for path in files
            ]  # fmt: skip
            with processes(commands, child_env(), logs) as started:
                wait_until(logs_say(logs, workers, READY), started)
                pids = [p.pid for p in started]
                before = await worker_counts(started, files, 1)
                client_before, cpu_before = client.snapshot(), cpu_now(moto, pids)
                began = time.perf_counter()
                handles = await asyncio.gather(
                    *(vw.start(programs.twenty_steps, i) for i in range(runs))
                )
                deadline = time.monotonic() + 900
                for handle in handles:
                    await _completed(handle, deadline)
                wall = time.perf_counter() - began
                cpu = cpu_spent(cpu_now(moto, pids), cpu_before)
                after = await worker_counts(started, files, 2)
                client_after = client.snapshot()
        events = sum([await _event_count(world, h.run_id) for h in handles])
    finally:
        await drop(world)
    steps = runs * programs.STEPS
    return Measured(steps_per_s=steps / wall, steps=steps, events=events, cpu=cpu,
                    workers=difference(after, before),
                    client=difference(client_after, client_before))  # fmt: skip


# -- bare round trips -------------------------------------------------------------------------


def _conditional_put(client: Any, table: str, *, transact: bool) -> float:  # noqa: ANN401
    """One new item on ``attribute_not_exists`` (the dedup table's key), seconds."""
    put = {"TableName": table, "Item": {"key": {"S": f"bench-{uuid.uuid4().hex}"}},
           "ConditionExpression": "attribute_not_exists(#k)",
           "ExpressionAttributeNames": {"#k": "key"}}  # fmt: skip
    began = time.perf_counter()
    if transact:
        client.transact_write_items(TransactItems=[{"Put": put}])
    else:
        client.put_item(**put)
    return time.perf_counter() - began


async def bare_round_trips(endpoint_url: str, count: int, warmup: int = 20) -> dict[str, Sample]:
    """SQS send -> receive -> delete, a conditional put, the same as a transaction."""
    world, config = await fresh_world(endpoint_url)
    try:
        aws = world.aws
        url = aws.sqs_client.get_queue_url(QueueName=config.step_queue)["QueueUrl"]
        found: dict[str, list[float]] = {
            BARE_SQS: [_sqs_trip(aws.sqs_client, url) for _ in range(warmup + count)],
            BARE_PUT: [
                _conditional_put(aws.ddb, config.dedup_table, transact=False)
                for _ in range(warmup + count)
            ],
            BARE_TX: [
                _conditional_put(aws.ddb, config.dedup_table, transact=True)
                for _ in range(warmup + count)
            ],
        }
    finally:
        await drop(world)
    return {k: summarize(count, sum(v[warmup:]), v[warmup:]) for k, v in found.items()}


# -- the report -------------------------------------------------------------------------------

BARE_SQS = "bare SQS round trip (send -> receive -> delete)"
BARE_PUT = "bare DynamoDB conditional PutItem"
BARE_TX = "bare DynamoDB TransactWriteItems (1 conditional put)"


def _median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def _per(snapshot: Snapshot, over: int, kind: str = "calls") -> dict[str, float]:
    found = per_step(snapshot, over, kind)
    found["total"] = sum(found.values())
    return found


def _transactions(m: Measured) -> int:
    """``TransactWriteItems`` calls of the workers and of this process (``run_created``)."""
    key = "dynamodb.TransactWriteItems"
    return sum(s.get("calls", {}).get(key, 0) for s in (m.workers, m.client))


def print_throughput(rows: Mapping[int, Sequence[Measured]], runs: int) -> None:
    """steps/s and CPU per step per worker count."""
    print(f"| {runs} runs x {programs.STEPS} steps at once | workers | steps/s (indicative) "
          "| moto CPU ms/step | workers CPU ms/step | this process CPU ms/step |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for workers, measured in rows.items():
        cpu = {k: _median(m.cpu.get(k, 0.0) / m.steps * 1e3 for m in measured)
               for k in ("moto", "workers", "bench")}  # fmt: skip
        print(f"| AwsWorld + VercelBridge | {workers} "
              f"| {_median(m.steps_per_s for m in measured):.1f} | {cpu['moto']:.2f} "
              f"| {cpu['workers']:.2f} | {cpu['bench']:.2f} |")  # fmt: skip


def print_calls(rows: Mapping[int, Sequence[Measured]]) -> None:
    """Worker calls per step and per event, by service; the client's apart."""
    print("| workers | events/step | SQS calls/step | DynamoDB calls/step | S3 calls/step "
          "| all calls/step | DynamoDB calls/event "
          "| TransactWriteItems/event, client's too (target 1) "
          "| retried requests/step | error answers/step | client calls/step |")  # fmt: skip
    print("|---:|" + "---:|" * 10)
    for workers, measured in rows.items():
        calls = [_per(m.workers, m.steps) for m in measured]
        events = [_per(m.workers, m.events) for m in measured]
        requests = [_per(m.workers, m.steps, "requests") for m in measured]
        errors = [_per(m.workers, m.steps, "errors") for m in measured]
        client = [_per(m.client, m.steps) for m in measured]
        tx = [_transactions(m) / m.events for m in measured]

        def med(found: Sequence[Mapping[str, float]], key: str) -> float:
            return _median(f.get(key, 0.0) for f in found)

        retried = _median(r["total"] - c["total"] for r, c in zip(requests, calls, strict=True))
        print(f"| {workers} | {_median(m.events / m.steps for m in measured):.2f} "
              f"| {med(calls, 'sqs'):.2f} | {med(calls, 'dynamodb'):.2f} | {med(calls, 's3'):.2f} "
              f"| {med(calls, 'total'):.2f} | {med(events, 'dynamodb'):.3f} "
              f"| {_median(tx):.3f} | {retried:.3f} | {med(errors, 'total'):.3f} "
              f"| {med(client, 'total'):.2f} |")  # fmt: skip


def print_operations(rows: Mapping[int, Sequence[Measured]]) -> None:
    """Worker calls per step by operation (errors and transaction items too)."""
    medians: dict[int, dict[str, float]] = {}
    for workers, measured in rows.items():
        values: dict[str, list[float]] = {}
        for m in measured:
            for kind, prefix in (("calls", ""), ("errors", "error "), ("items", "items of ")):
                for key, count in m.workers.get(kind, {}).items():
                    values.setdefault(prefix + key, []).append(count / m.steps)
        medians[workers] = {
            k: _median(v + [0.0] * (len(measured) - len(v))) for k, v in values.items()
        }
    names = sorted({k for found in medians.values() for k in found})
    print("| worker calls per step | " + " | ".join(f"x{w}" for w in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{medians[w].get(name, 0.0):.3f}" for w in rows) + " |")


def print_bare(bare: Sequence[Mapping[str, Sample]], count: int) -> None:
    """The bare round trips (median over repeats)."""
    print(f"| same moto, {count} sequential calls | p50 ms | p99 ms |\n|---|---:|---:|")
    for label in (BARE_SQS, BARE_PUT, BARE_TX):
        s = median_sample([b[label] for b in bare])
        print(f"| {label} | {s.p50_ms:.2f} | {s.p99_ms:.2f} |")


def progress(label: str, measured: Measured) -> None:
    """One line on stderr per measurement."""
    load = Path("/proc/loadavg").read_text().split()[0]
    calls = per_step(measured.workers, measured.steps)
    print(f"  [{time.strftime('%H:%M:%S')} load {load}] {label}: "
          f"{measured.steps_per_s:.1f} steps/s, {measured.events} events, calls/step {calls}",
          file=sys.stderr, flush=True)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run every configuration ``--repeat`` times (interleaved) and print markdown."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument(
        "--workers", type=lambda s: [int(w) for w in s.split(",")], default=[1, 2, 4]
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument(
        "--endpoint-url",
        default=os.environ.get("FLOWCRAFT_AWS_ENDPOINT_URL", "http://127.0.0.1:15000"),
        help="moto (DynamoDB, SQS, S3)",
    )
    parser.add_argument("--moto-pid", type=int, default=0, help="default: tools/services' file")
    args = parser.parse_args(argv)
    moto = args.moto_pid or service_pids(REPO, ["moto"]).get("moto", 0)
    rows: dict[int, list[Measured]] = {w: [] for w in args.workers}
    bare: list[dict[str, Sample]] = []
    for repeat in range(args.repeat):
        print(f"repeat {repeat + 1}/{args.repeat}", file=sys.stderr, flush=True)
        bare.append(asyncio.run(bare_round_trips(args.endpoint_url, args.round_trips)))
        for workers in args.workers:
            measured = asyncio.run(world_once(args.endpoint_url, args.runs, workers, moto))
            progress(f"x{workers}", measured)
            rows[workers].append(measured)
    print(f"median of {args.repeat} repeat(s); wall-clock figures indicative (shared machine), "
          "call counts exact\n")  # fmt: skip
    print_throughput(rows, args.runs)
    print()
    print_bare(bare, args.round_trips)
    print()
    print_calls(rows)
    print()
    print_operations(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
