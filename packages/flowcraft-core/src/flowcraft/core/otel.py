"""OpenTelemetry for Flowcraft (the ``flowcraft-core[otel]`` extra): traces and metrics.

Written on the OpenTelemetry **API** only: bring the SDK and an exporter, or the spans and
metrics go to the API's no-op providers. One :class:`Instrumentation` serves three roles:

* **middleware** (``FlowRuntime(middleware=[inst])``, ``Worker(middleware=[inst])``, through
  its ``wrap`` hook): a span
  per node attempt, ``flowcraft.node {node_id}``, with the run, node, frame, attempt and
  blueprint as attributes; an exception is recorded on the span and sets its status to ERROR
  (``error.type`` its class). It also measures the attempt and its job's queue lag.
* **run tracer** (``Client(tracer=inst)``): ``start`` records the run's root span,
  ``flowcraft.run {blueprint}`` (a child of the caller's current span, if any), and the run
  keeps its W3C ``traceparent`` with its stored state; every job of the run carries it, so each
  worker that runs a node continues the same trace: **one trace per run across processes**.
  The root span covers the start; a ``flowcraft.run.end {blueprint}`` span (ERROR when the run
  failed) marks the end, recorded by the process that saved the final decision.
* **event listener** (``inst.observe(bus)``): counts retries, failures and finished runs from
  the lifecycle events and records the run end spans. In one process (``FlowRuntime``),
  ``observe(runtime.events, run_spans=True)`` makes ``flowcraft.run {blueprint}`` span the
  whole run, the node spans its children.

Metrics (meter ``flowcraft.core``): ``flowcraft.node.attempts`` (counter, ``outcome`` ok or
error), ``flowcraft.node.duration`` (histogram, s), ``flowcraft.node.retries`` and
``flowcraft.node.failures`` (counters), ``flowcraft.job.queue_lag`` (histogram, s: from the
decision that made a job to its attempt starting, or from a delayed job's due time),
``flowcraft.runs.finished`` (counter, ``status``). Each has ``flowcraft.blueprint.id`` where
it is known.

Example (a worker process):

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from flowcraft.core.otel import Instrumentation

    trace.set_tracer_provider(TracerProvider(...))       # your SDK and exporter
    inst = Instrumentation()
    worker = Worker(..., middleware=[inst])
    inst.observe(worker.events)

``flowcraft worker --otel`` does the same with the globally configured providers.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

try:
    from opentelemetry import metrics, trace
    from opentelemetry.context import Context, attach, detach
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "flowcraft.core.otel needs the OpenTelemetry API: pip install 'flowcraft-core[otel]'"
    ) from exc

from flowcraft.core.__about__ import __version__
from flowcraft.core._runtime import events as e
from flowcraft.core._runtime.context import NodeContext
from flowcraft.core._runtime.nodes import NodeFn
from flowcraft.core._runtime.tracing import JobTrace, current_job

__all__ = ["Instrumentation"]

_SCOPE = "flowcraft.core"
_PROPAGATOR = TraceContextTextMapPropagator()


class Instrumentation:
    """OpenTelemetry spans and metrics for runs and node attempts (see the module docstring).

    Args:
        tracer_provider: Where spans go (None: the global provider).
        meter_provider: Where metrics go (None: the global provider).
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self._attempts = meter.create_counter(
            "flowcraft.node.attempts", unit="{attempt}", description="Node attempts run"
        )
        self._duration = meter.create_histogram(
            "flowcraft.node.duration", unit="s", description="Duration of node attempts"
        )
        self._retries = meter.create_counter(
            "flowcraft.node.retries", unit="{attempt}", description="Failed attempts retried"
        )
        self._failures = meter.create_counter(
            "flowcraft.node.failures", unit="{node}", description="Nodes failed for good"
        )
        self._lag = meter.create_histogram(
            "flowcraft.job.queue_lag", unit="s", description="Time jobs waited in the queue"
        )
        self._runs = meter.create_counter(
            "flowcraft.runs.finished", unit="{run}", description="Runs that finished"
        )
        self._open: dict[str, Span] = {}  # run spans of observe(run_spans=True)
        #: False for an explicit no-op meter provider: nothing is measured at all.
        self._metered = not isinstance(meter_provider, metrics.NoOpMeterProvider)

    # ------------------------------------------------------------------ RunTracer

    def start_run(self, *, run_id: str, blueprint: str, version: str) -> str | None:
        """Record the run's root span; its W3C traceparent (None if it is not sampled)."""
        span = self._tracer.start_span(
            f"flowcraft.run {blueprint}", attributes=_run_attributes(run_id, blueprint, version)
        )
        span.end()
        return _traceparent(span)

    # ------------------------------------------------------------------ middleware

    def wrap(self, call: NodeFn) -> NodeFn:
        """Middleware: run each attempt of ``call`` in its span; measure it and its queue lag.

        Attributes are built only for a recording span, and a span is made current only if
        its context is valid. An attempt whose span does neither (a no-op tracer's, with no
        trace context to carry) and that nothing measures (an explicit no-op meter provider)
        runs as ``call`` itself: unobserved, an attempt costs one ``start_span``. On the API's
        no-op tracer (an explicit ``NoOpTracerProvider``), unmetered, an attempt with no run
        span to parent and no job trace to carry skips even that: the no-op tracer's span
        would be the context's current one, so there is nothing to start, attach or end.
        The body is inlined on purpose (this runs once per attempt), and a span object once
        seen idle (a no-op tracer hands back the same one) is not asked again: that cannot
        change.
        """
        tracer, metered, opened = self._tracer, self._metered, self._open
        idle: Span | None = None

        def attempt(ctx: NodeContext) -> Awaitable[object]:
            nonlocal idle
            job = current_job.get()
            if job is None:
                run = opened.get(ctx.run_id) if opened else None
                parent = None if run is None else trace.set_span_in_context(run)
                kind = SpanKind.INTERNAL
            else:
                parent = None if job.trace is None else _extract(job.trace)
                kind = SpanKind.CONSUMER
            span = tracer.start_span(f"flowcraft.node {ctx.node_id}", parent, kind)
            if metered or (span is not idle and not _idle(span)):
                return self._attempt(call, ctx, job, (span, parent))
            idle = span
            span.end()
            return call(ctx)

        if metered or not isinstance(tracer, trace.NoOpTracer):
            return attempt

        def unobserved(ctx: NodeContext) -> Awaitable[object]:
            if opened or current_job.get() is not None:
                return attempt(ctx)
            return call(ctx)  # a no-op tracer's span would be the current one: nothing to do

        return unobserved

    async def _attempt(
        self,
        call: NodeFn,
        ctx: NodeContext,
        job: JobTrace | None,
        started: tuple[Span, Context | None],
    ) -> object:
        span, parent = started
        recording = span.is_recording()
        if recording:
            span.set_attributes(_node_attributes(ctx, job))
        if job is not None and self._metered:
            self._record_lag(job)
        token = attach(trace.set_span_in_context(span, parent)) if _valid(span) else None
        began = time.perf_counter()
        try:
            result = await call(ctx)
        except Exception as exc:
            if recording:
                _record_error(span, exc)
            self._measure(ctx, job, began, "error")
            raise
        finally:
            if token is not None:
                detach(token)
            span.end()
        self._measure(ctx, job, began, "ok")
        return result

    def _record_lag(self, job: JobTrace) -> None:
        lag = job.lag(time.time())
        if lag is not None:
            self._lag.record(lag, _blueprint_only(job))

    def _measure(self, ctx: NodeContext, job: JobTrace | None, began: float, outcome: str) -> None:
        if not self._metered:
            return
        labels = {"flowcraft.node.id": ctx.node_id, "outcome": outcome}
        if job is not None and job.blueprint:
            labels["flowcraft.blueprint.id"] = job.blueprint
        self._attempts.add(1, labels)
        self._duration.record(time.perf_counter() - began, labels)

    # ------------------------------------------------------------------ events

    def observe(self, bus: e.EventBus, *, run_spans: bool = False) -> Callable[[], None]:
        """Count retries, failures and finished runs from ``bus``; returns the unsubscribe.

        ``run_spans``: the bus is an in-process runtime's (``FlowRuntime.events``), whose runs
        start and end here: each untraced run gets a ``flowcraft.run`` span from its start to
        its end, the parent of its node spans.
        """
        return bus.subscribe(lambda event: self._on_event(event, run_spans=run_spans))

    def _on_event(self, event: e.FlowEvent, *, run_spans: bool) -> None:
        labels = {"flowcraft.blueprint.id": event.blueprint} if event.blueprint else {}
        if isinstance(event, e.NodeRetrying):
            self._retries.add(1, {**labels, "flowcraft.node.id": event.node_id})
        elif isinstance(event, e.NodeFailed):
            self._failures.add(1, {**labels, "flowcraft.node.id": event.node_id})
        elif isinstance(event, e.RunStarted) and run_spans and event.trace is None:
            self._open_run(event)
        elif isinstance(event, e.RunCompleted | e.RunFailed | e.RunCancelled):
            self._runs.add(1, {**labels, "status": _STATUS[type(event)]})
            self._end_run(event)

    def _open_run(self, event: e.RunStarted) -> None:
        attributes = _run_attributes(event.run_id, event.blueprint, event.version)
        self._open[event.run_id] = self._tracer.start_span(
            f"flowcraft.run {event.blueprint}", attributes=attributes
        )

    def _end_run(self, event: e.RunEvent) -> None:
        span = self._open.pop(event.run_id, None)
        if span is None and event.trace is not None:  # a traced distributed run: mark its end
            parent = _extract(event.trace)
            attributes = _run_attributes(event.run_id, event.blueprint, event.version)
            span = self._tracer.start_span(
                f"flowcraft.run.end {event.blueprint}", parent, attributes=attributes
            )
        if span is None:
            return
        span.set_attribute("flowcraft.run.status", _STATUS[type(event)])
        if isinstance(event, e.RunFailed):
            for error in event.errors:
                span.add_event(
                    "flowcraft.node.error",
                    {"flowcraft.node.id": error.node_id, "error.type": error.type,
                     "error.message": error.message},
                )  # fmt: skip
            first = event.errors[0] if event.errors else None
            reason = f"{first.type}: {first.message}" if first else "run failed"
            span.set_status(Status(StatusCode.ERROR, reason))
        span.end()


@functools.lru_cache(maxsize=256)
def _extract(traceparent: str) -> Context:
    """The context of a job's traceparent (cached: a worker sees each run's many times).

    Safe to share: a ``Context`` is never changed, only copied with a new value.
    """
    return _PROPAGATOR.extract({"traceparent": traceparent})


def _valid(span: Span) -> bool:
    return span.get_span_context().is_valid


def _idle(span: Span) -> bool:
    """Neither recording nor carrying a valid context: nothing to do with it but end it."""
    return not span.get_span_context().is_valid and not span.is_recording()


def _record_error(span: Span, exc: Exception) -> None:
    kind = type(exc).__qualname__
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{kind}: {exc}"))
    span.set_attribute("error.type", kind)


def _traceparent(span: Span) -> str | None:
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def _run_attributes(run_id: str, blueprint: str, version: str) -> dict[str, Any]:
    return {
        "flowcraft.run.id": run_id,
        "flowcraft.blueprint.id": blueprint,
        "flowcraft.blueprint.version": version,
    }


def _node_attributes(ctx: NodeContext, job: JobTrace | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "flowcraft.run.id": ctx.run_id,
        "flowcraft.node.id": ctx.node_id,
        "flowcraft.node.frame": ctx.frame,
        "flowcraft.node.attempt": ctx.attempt,
        "flowcraft.node.max_attempts": ctx.max_attempts,
    }
    if job is not None and job.blueprint:
        attributes["flowcraft.blueprint.id"] = job.blueprint
        attributes["flowcraft.blueprint.version"] = job.version
    return attributes


def _blueprint_only(job: JobTrace) -> dict[str, Any]:
    return {"flowcraft.blueprint.id": job.blueprint} if job.blueprint else {}


_STATUS: dict[type[e.FlowEvent], str] = {
    e.RunCompleted: "completed",
    e.RunFailed: "failed",
    e.RunCancelled: "cancelled",
}
