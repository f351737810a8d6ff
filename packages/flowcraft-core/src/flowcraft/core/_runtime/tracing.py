"""Trace context without a tracing library: what a traced run carries between processes.

A traced run's root span travels as a W3C ``traceparent`` string: a :class:`RunTracer` makes
it when the run is created (``Client(tracer=...)``), the run keeps it in its stored header
(``RunState.trace``), every job its decisions make carries it, and a worker running a node
attempt of such a job sets :data:`current_job` for the attempt, where an instrumentation
middleware (``flowcraft.core.otel``) reads it to parent the attempt's span. Nothing here
imports a tracing library: the default path stays free of one.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["JobTrace", "RunTracer", "current_job"]


@dataclass(frozen=True, slots=True, kw_only=True)
class JobTrace:
    """What the job of the running node attempt carried beside its work.

    ``trace``: the W3C traceparent of its run's root span (None: the run is not traced).
    ``sent_at``: when the decision that made the job was taken (epoch seconds, None: unknown);
    ``not_before``: when a delayed job was due. The queue lag is the time since the later.
    ``blueprint`` and ``version``: the run's blueprint.
    """

    trace: str | None
    sent_at: float | None
    not_before: float | None = None
    blueprint: str = ""
    version: str = ""

    def lag(self, now: float) -> float | None:
        """Seconds the job waited to be run at ``now`` (None if it does not say when it left)."""
        if self.sent_at is None:
            return None
        due = max(self.sent_at, self.not_before or 0.0)
        return max(0.0, now - due)


#: The job of the node attempt running in this task (None outside a worker's attempt).
current_job: ContextVar[JobTrace | None] = ContextVar("flowcraft_current_job", default=None)


@runtime_checkable
class RunTracer(Protocol):
    """Makes the root span of a run as it is created (``Client(tracer=...)``)."""

    def start_run(self, *, run_id: str, blueprint: str, version: str) -> str | None:
        """Record the run's root span; return its W3C ``traceparent`` (None: not traced).

        Called once per ``Client.start``, before the run is stored (a repeated idempotency key
        keeps the first run's trace). Must not raise: a failure here must not stop a run.
        """
        ...
