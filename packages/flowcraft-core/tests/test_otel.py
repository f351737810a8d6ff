"""OpenTelemetry instrumentation (``flowcraft.core.otel``) with the SDK's in-memory exporters."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable
from typing import cast

import pytest
from flowcraft.core import (
    Client,
    FlowRuntime,
    MemoryJobQueue,
    MemoryRunStore,
    Worker,
    parse_blueprint,
)
from flowcraft.core._runtime.context import NodeContext
from flowcraft.core._runtime.nodes import NodeFn
from flowcraft.core._runtime.tracing import JobTrace, current_job
from flowcraft.core.otel import Instrumentation
from flowcraft.core.testing import nodes
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NoOpTracerProvider, SpanContext, SpanKind, StatusCode

FLAKY = parse_blueprint(
    {
        "id": "flaky",
        "version": "2",
        "nodes": [
            {"id": "S", "uses": "suite.const", "params": {"value": 1}},
            {
                "id": "F",
                "uses": "suite.fail",
                "params": {"times": 1},
                "config": {"retry": {"max_attempts": 2}},
            },
        ],
        "edges": [{"source": "S", "target": "F"}],
    },
    registry=nodes.registry(),
)
BROKEN = parse_blueprint(
    {
        "id": "broken",
        "version": "1",
        "nodes": [{"id": "X", "uses": "suite.fail", "params": {"times": 5}}],
    },
    registry=nodes.registry(),
)


#: A traceparent as a job carries it (sampled).
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PROBED = parse_blueprint(
    {"id": "probed", "version": "1", "nodes": [{"id": "P", "uses": "probe"}]},
    registry={"probe": object()},
)


class Telemetry:
    """An SDK tracer and meter provider with in-memory exporters, and the instrumentation."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[self.metrics])
        self.inst = Instrumentation(
            tracer_provider=self.tracer_provider, meter_provider=meter_provider
        )

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[tuple[dict[str, object], float]]:
        """(attributes, value) of the metric ``name`` (sums: value; histograms: count)."""
        data = self.metrics.get_metrics_data()
        found: list[tuple[dict[str, object], float]] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        value = point.value if isinstance(point, NumberDataPoint) else point.count
                        found.append((dict(point.attributes or {}), value))
        return found


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


def _by_name(spans: list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


async def test_in_memory_a_run_span_parents_one_span_per_attempt(telemetry: Telemetry) -> None:
    runtime = FlowRuntime(registry=nodes.registry(), middleware=[telemetry.inst])
    telemetry.inst.observe(runtime.events, run_spans=True)
    result = await runtime.run(FLAKY)
    assert result.output == "ok"
    named = _by_name(telemetry.finished())
    (run,) = named["flowcraft.run flaky"]
    assert run.parent is None
    assert run.attributes == {
        "flowcraft.run.id": result.run_id,
        "flowcraft.blueprint.id": "flaky",
        "flowcraft.blueprint.version": "2",
        "flowcraft.run.status": "completed",
    }
    attempts = named["flowcraft.node S"] + named["flowcraft.node F"]
    assert [(s.attributes or {})["flowcraft.node.attempt"] for s in attempts] == [1, 1, 2]
    for span in attempts:
        assert span.parent is not None
        assert span.parent.span_id == run.context.span_id
        assert span.context.trace_id == run.context.trace_id
        assert span.kind is SpanKind.INTERNAL
    failed = named["flowcraft.node F"][0]
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "RuntimeError"
    assert [event.name for event in failed.events] == ["exception"]
    assert named["flowcraft.node F"][1].status.status_code is StatusCode.UNSET
    assert telemetry.points("flowcraft.node.retries") == [
        ({"flowcraft.blueprint.id": "flaky", "flowcraft.node.id": "F"}, 1)
    ]
    outcomes = {(a["flowcraft.node.id"], a["outcome"]): n for a, n in telemetry.points(
        "flowcraft.node.attempts")}  # fmt: skip
    assert outcomes == {("S", "ok"): 1, ("F", "error"): 1, ("F", "ok"): 1}
    assert sum(n for _, n in telemetry.points("flowcraft.node.duration")) == 3


async def test_a_failed_run_ends_its_span_in_error(telemetry: Telemetry) -> None:
    runtime = FlowRuntime(registry=nodes.registry(), middleware=[telemetry.inst])
    telemetry.inst.observe(runtime.events, run_spans=True)
    result = await runtime.run(BROKEN)
    assert result.status.value == "failed"
    (run,) = _by_name(telemetry.finished())["flowcraft.run broken"]
    assert run.status.status_code is StatusCode.ERROR
    assert run.status.description == "RuntimeError: boom"
    assert [event.name for event in run.events] == ["flowcraft.node.error"]
    assert telemetry.points("flowcraft.node.failures") == [
        ({"flowcraft.blueprint.id": "broken", "flowcraft.node.id": "X"}, 1)
    ]
    assert telemetry.points("flowcraft.runs.finished") == [
        ({"flowcraft.blueprint.id": "broken", "status": "failed"}, 1)
    ]


async def test_a_distributed_run_is_one_trace_from_its_client(telemetry: Telemetry) -> None:
    """Client roots the trace; the run keeps it; each job carries it to the worker's spans."""
    queue, store = MemoryJobQueue(), MemoryRunStore()
    worker = Worker(
        queue=queue,
        store=store,
        registry=nodes.registry(),
        blueprints=[FLAKY],
        poll=0.02,
        middleware=[telemetry.inst],
    )
    telemetry.inst.observe(worker.events)
    task = asyncio.ensure_future(worker.run())
    try:
        async with Client(
            queue=queue, store=store, blueprints=[FLAKY], tracer=telemetry.inst
        ) as client:
            handle = await client.start("flaky")
            result = await handle.result(timeout=10)
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 10)
    assert result.output == "ok"
    spans = telemetry.finished()
    assert len({s.context.trace_id for s in spans}) == 1
    named = _by_name(spans)
    (root,) = named["flowcraft.run flaky"]
    assert root.parent is None
    assert (root.attributes or {})["flowcraft.run.id"] == handle.run_id
    attempts = named["flowcraft.node S"] + named["flowcraft.node F"]
    assert len(attempts) == 3
    for span in [*attempts, *named["flowcraft.run.end flaky"]]:
        assert span.parent is not None
        assert span.parent.span_id == root.context.span_id
    for span in attempts:
        assert span.kind is SpanKind.CONSUMER
        assert (span.attributes or {})["flowcraft.blueprint.version"] == "2"
    lags = telemetry.points("flowcraft.job.queue_lag")
    assert sum(n for _, n in lags) == 3
    stored = await store.load_state(handle.run_id)
    assert stored is not None
    ids = f"00-{root.context.trace_id:032x}-{root.context.span_id:016x}-"
    assert str(stored.header["trace"]).startswith(ids)  # the run keeps its root span


async def test_without_a_tracer_a_distributed_run_still_gets_node_spans(
    telemetry: Telemetry,
) -> None:
    queue, store = MemoryJobQueue(), MemoryRunStore()
    worker = Worker(
        queue=queue,
        store=store,
        registry=nodes.registry(),
        blueprints=[FLAKY],
        poll=0.02,
        middleware=[telemetry.inst],
    )
    task = asyncio.ensure_future(worker.run())
    try:
        async with Client(queue=queue, store=store, blueprints=[FLAKY]) as client:
            result = await (await client.start("flaky")).result(timeout=10)
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 10)
    assert result.output == "ok"
    spans = telemetry.finished()
    assert sorted(s.name for s in spans) == [
        "flowcraft.node F",
        "flowcraft.node F",
        "flowcraft.node S",
    ]
    assert all(s.parent is None for s in spans)


class _Probe:
    """A node that notes the span context current while it runs (and opens a child span)."""

    def __init__(self, tracer: trace.Tracer | None = None) -> None:
        self.seen: list[SpanContext] = []
        self._tracer = tracer

    async def node(self, ctx: NodeContext) -> str:
        self.seen.append(trace.get_current_span().get_span_context())
        if self._tracer is not None:
            self._tracer.start_span("child").end()
        return "done"


async def test_a_node_runs_in_its_span_and_its_own_spans_are_its_children(
    telemetry: Telemetry,
) -> None:
    probe = _Probe(telemetry.tracer_provider.get_tracer("test"))
    runtime = FlowRuntime(registry={"probe": probe.node}, middleware=[telemetry.inst])
    outer = telemetry.tracer_provider.get_tracer("test").start_span("caller")
    with trace.use_span(outer, end_on_exit=True):
        assert (await runtime.run(PROBED)).output == "done"
    named = _by_name(telemetry.finished())
    (node,) = named["flowcraft.node P"]
    (child,) = named["child"]
    assert probe.seen == [node.context]
    assert child.parent is not None
    assert child.parent.span_id == node.context.span_id
    assert node.parent is not None  # without run spans, the caller's span is the parent
    assert node.parent.span_id == outer.get_span_context().span_id
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing leaks into the caller


async def test_a_sampled_out_attempt_still_carries_its_trace_context() -> None:
    """A non-recording span with a valid context is made current: the node's calls go on."""
    inst = Instrumentation(
        tracer_provider=TracerProvider(sampler=ALWAYS_OFF), meter_provider=NoOpMeterProvider()
    )
    probe = _Probe()
    runtime = FlowRuntime(registry={"probe": probe.node}, middleware=[inst])
    assert (await runtime.run(PROBED)).output == "done"
    (seen,) = probe.seen
    assert seen.is_valid
    assert not seen.trace_flags.sampled


async def test_on_no_op_providers_a_job_s_trace_context_still_reaches_the_node() -> None:
    inst = Instrumentation(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
    probe = _Probe()
    runtime = FlowRuntime(registry={"probe": probe.node}, middleware=[inst])
    token = current_job.set(JobTrace(trace=TRACEPARENT, sent_at=None, blueprint="probed"))
    try:
        assert (await runtime.run(PROBED)).output == "done"
    finally:
        current_job.reset(token)
    (seen,) = probe.seen
    assert f"{seen.trace_id:032x}" == TRACEPARENT.split("-")[1]
    assert f"{seen.span_id:016x}" == TRACEPARENT.split("-")[2]


class _Same:
    """Middleware around the instrumentation: did it hand back the inner awaitable itself?"""

    def __init__(self) -> None:
        self.inner: list[object] = []
        self.same: list[bool] = []

    def outer(self) -> object:
        same = self.same

        class Outer:
            def wrap(self, call: NodeFn) -> NodeFn:
                def attempt(ctx: NodeContext) -> Awaitable[object]:
                    awaitable = call(ctx)
                    same.append(bool(inner) and awaitable is inner[-1])
                    return awaitable

                return attempt

        inner = self.inner
        return Outer()

    def innermost(self) -> object:
        inner = self.inner

        class Inner:
            def wrap(self, call: NodeFn) -> NodeFn:
                def attempt(ctx: NodeContext) -> Awaitable[object]:
                    inner.append(call(ctx))
                    return cast(Awaitable[object], inner[-1])

                return attempt

        return Inner()


@pytest.mark.parametrize("observed", [False, True])
async def test_an_unobserved_attempt_runs_unwrapped(observed: bool) -> None:
    """No-op tracer, no trace context, no-op meter: the attempt is the node's own awaitable."""
    meter_provider = MeterProvider() if observed else NoOpMeterProvider()
    inst = Instrumentation(tracer_provider=NoOpTracerProvider(), meter_provider=meter_provider)
    probe, same = _Probe(), _Same()
    runtime = FlowRuntime(
        registry={"probe": probe.node}, middleware=[same.outer(), inst, same.innermost()]
    )
    assert (await runtime.run(PROBED)).output == "done"
    assert same.same == [not observed]
    assert probe.seen == [trace.INVALID_SPAN.get_span_context()]


async def test_on_no_op_providers_a_node_keeps_its_caller_s_span_unwrapped() -> None:
    """No job trace, no run span: a no-op tracer's span would be the caller's current one, so
    the attempt is the node's own awaitable and the node sees the caller's (recording) span."""
    inst = Instrumentation(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
    probe, same = _Probe(), _Same()
    runtime = FlowRuntime(
        registry={"probe": probe.node}, middleware=[same.outer(), inst, same.innermost()]
    )
    caller = TracerProvider().get_tracer("the caller's own tracing")
    with caller.start_as_current_span("caller") as span:
        assert (await runtime.run(PROBED)).output == "done"
    assert span.get_span_context().is_valid
    assert same.same == [True]
    assert probe.seen == [span.get_span_context()]


def test_the_default_import_path_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, flowcraft.core, flowcraft.core.events, flowcraft.core.cli;"
        "from flowcraft.core.cli import _distributed;"
        "sys.exit(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
