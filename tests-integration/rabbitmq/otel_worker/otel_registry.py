"""A worker's ``--registry`` module that also sets up the OpenTelemetry SDK for the process.

Imported by ``flowcraft worker --otel --registry otel_registry:REGISTRY`` (with this folder on
``PYTHONPATH``): spans go, one JSON object per line, to ``spans-<pid>.jsonl`` in the folder
``$FLOWCRAFT_TEST_SPANS`` names, exported as each span ends (no collector, no OTLP).
"""

from __future__ import annotations

import os
from pathlib import Path

from flowcraft.core.testing.nodes import REGISTRY as SUITE
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

_PATH = Path(os.environ["FLOWCRAFT_TEST_SPANS"]) / f"spans-{os.getpid()}.jsonl"
_OUT = _PATH.open("a", buffering=1, encoding="utf-8")  # lives as long as the process


def _line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + "\n"


_provider = TracerProvider(resource=Resource.create({"service.instance.id": str(os.getpid())}))
_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=_OUT, formatter=_line)))
trace.set_tracer_provider(_provider)

REGISTRY = SUITE
