"""One trace per run across two ``flowcraft worker --otel`` processes on RabbitMQ.

The test's client records the run's root span (SDK, in-memory exporter); two worker processes
set up the SDK in their registry module (``otel_worker/otel_registry.py``) and write their spans
to files. A fan-out of ten slow nodes makes both workers run some: every span of every process
is in the root's trace, each node attempt a child of the root, the run's end marked once.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from flowcraft.core import Client, dump_blueprint
from flowcraft.core.otel import Instrumentation
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.rabbitmq import RabbitMqBackend
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
FLOWCRAFT = str(Path(sys.executable).with_name("flowcraft"))
BRANCHES = [f"A{i}" for i in range(10)]
FAN = bp(
    "fan",
    [
        n("S", "suite.const", value=1),
        *(n(b, "suite.sleep", seconds=0.8) for b in BRANCHES),
        n("J", "suite.echo", inputs={b: b for b in BRANCHES}),
    ],
    [*(e("S", b) for b in BRANCHES), *(e(b, "J") for b in BRANCHES)],
)


def _worker(backend: list[str], path: Path, spans: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE / "otel_worker"),
        "FLOWCRAFT_TEST_SPANS": str(spans),
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [FLOWCRAFT, "worker", *backend, "--registry", "otel_registry:REGISTRY",
             "--blueprint", str(path), "--otel", "--concurrency", "2"],
            stdout=subprocess.DEVNULL, stderr=out, cwd=ROOT, env=env,
        )  # fmt: skip


def _ready(logs: list[Path]) -> None:
    deadline = time.monotonic() + 60
    while not all("flowcraft worker " in p.read_text() for p in logs):
        assert time.monotonic() < deadline, [p.read_text() for p in logs]
        time.sleep(0.1)


async def _run(factory: RabbitMqBackend, namespace: str, exporter: InMemorySpanExporter) -> str:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    backend = await factory.create(namespace)
    try:
        tracer = Instrumentation(tracer_provider=provider)
        async with Client(
            queue=backend.queue, store=backend.store, blueprints=[FAN], tracer=tracer
        ) as client:
            handle = await client.start("fan")
            result = await handle.result(timeout=90)
        assert result.status.value == "completed", result
        return handle.run_id
    finally:
        await factory.close(backend)


async def _drop(factory: RabbitMqBackend, namespace: str) -> None:
    """Delete the namespace's queues, tables and keys (once the workers are gone)."""
    await factory.destroy(await factory.create(namespace))


def _spans(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(folder.glob("spans-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def test_two_workers_continue_the_clients_trace(
    tmp_path: Path, rabbitmq_url: str, postgres_url: str, redis_url: str
) -> None:
    path = tmp_path / "fan.yaml"
    path.write_text(dump_blueprint(FAN, format="yaml"))
    namespace = f"t{uuid.uuid4().hex[:10]}"
    backend = [
        "--backend", "rabbitmq", "--option", f"amqp_url={rabbitmq_url}",
        "--option", f"postgres_dsn={postgres_url}", "--option", f"redis_url={redis_url}",
        "--namespace", namespace,
    ]  # fmt: skip
    spans_dir = tmp_path / "spans"
    spans_dir.mkdir()
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    workers = [_worker(backend, path, spans_dir, log) for log in logs]
    exporter = InMemorySpanExporter()
    factory = RabbitMqBackend(amqp_url=rabbitmq_url, postgres_dsn=postgres_url, redis_url=redis_url)
    try:
        _ready(logs)
        run_id = asyncio.run(_run(factory, namespace, exporter))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(30)
        asyncio.run(_drop(factory, namespace))
    (root,) = exporter.get_finished_spans()
    assert root.name == "flowcraft.run fan"
    assert root.parent is None
    trace_id = f"0x{root.context.trace_id:032x}"
    root_id = f"0x{root.context.span_id:016x}"
    spans = _spans(spans_dir)
    assert {s["context"]["trace_id"] for s in spans} == {trace_id}  # one trace, every process
    nodes = [s for s in spans if s["name"].startswith("flowcraft.node ")]
    assert sorted(s["name"] for s in nodes) == sorted(
        f"flowcraft.node {node}" for node in ["S", *BRANCHES, "J"]
    )
    assert {s["parent_id"] for s in nodes} == {root_id}
    assert {s["attributes"]["flowcraft.run.id"] for s in nodes} == {run_id}
    assert all(s["kind"] == "SpanKind.CONSUMER" for s in nodes)
    processes = {s["resource"]["attributes"]["service.instance.id"] for s in nodes}
    assert len(processes) == 2, [p.read_text() for p in logs]  # both workers touched the run
    ends = [s for s in spans if s["name"] == "flowcraft.run.end fan"]
    assert [(s["parent_id"], s["attributes"]["flowcraft.run.status"]) for s in ends] == [
        (root_id, "completed")
    ]
