"""The World's configuration: names of its tables, queues and bucket, and its settings.

:meth:`AwsWorldConfig.from_env` reads the seed's variables (``WORKFLOW_AWS_*``); a queue
may be given by URL (``https://sqs...``) or by name; :meth:`AwsWorldConfig.for_prefix`
derives every name from one prefix (one World per prefix, e.g. per test).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta

from flowcraft.aws_world._errors import AwsWorldConfigError

#: Environment variables and the fields they set.
ENVIRONMENT = {
    "WORKFLOW_AWS_REGION": "region",
    "WORKFLOW_AWS_ENDPOINT_URL": "endpoint_url",
    "WORKFLOW_AWS_RUNS_TABLE": "runs_table",
    "WORKFLOW_AWS_STEPS_TABLE": "steps_table",
    "WORKFLOW_AWS_EVENTS_TABLE": "events_table",
    "WORKFLOW_AWS_HOOKS_TABLE": "hooks_table",
    "WORKFLOW_AWS_STREAMS_TABLE": "streams_table",
    "WORKFLOW_AWS_DEDUP_TABLE": "dedup_table",
    "WORKFLOW_AWS_STREAM_BUCKET": "stream_bucket",
    "WORKFLOW_AWS_WORKFLOW_QUEUE_URL": "workflow_queue",
    "WORKFLOW_AWS_STEP_QUEUE_URL": "step_queue",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class AwsWorldConfig:
    """Where the World keeps its data and how it behaves.

    Attributes:
        region: AWS region (``WORKFLOW_AWS_REGION``, else ``AWS_REGION``, else us-east-1).
        endpoint_url: One endpoint for DynamoDB, SQS and S3 (a local emulator), or ``None``.
        runs_table / steps_table / events_table / hooks_table / streams_table /
            dedup_table: DynamoDB table names (steps_table also holds waits and the
            resume-id and attribute markers; hooks_table also holds token claims).
        stream_bucket: S3 bucket for stream chunks and large payloads.
        workflow_queue / step_queue: SQS queue URL or name; queues named
            ``__wkf_workflow_...`` go to the first, every other queue name to the second.
        payload_threshold: Payloads longer than this (bytes) go to S3, referenced.
        stream_inline_bytes: Stream batches up to this size stay in DynamoDB.
        visibility_timeout: Seconds a received message stays hidden; extended while its
            handler runs.
        poll_wait_seconds: SQS long-poll wait (1-20).
        max_receive_count: Receives before SQS moves a message to its DLQ.
        dedup_window_seconds: How long an idempotency key suppresses repeats.
        run_retention: How long ended runs accept events (410 after); ``None``: forever.
        stream_poll_max: Longest pause (seconds) of a stream reader's polling backoff.
    """

    region: str = "us-east-1"
    endpoint_url: str | None = None
    runs_table: str = "workflow_runs"
    steps_table: str = "workflow_steps"
    events_table: str = "workflow_events"
    hooks_table: str = "workflow_hooks"
    streams_table: str = "workflow_stream_chunks"
    dedup_table: str = "workflow_queue_dedup"
    stream_bucket: str = "workflow-streams"
    workflow_queue: str = "workflow-flows"
    step_queue: str = "workflow-steps"
    payload_threshold: int = 64 * 1024
    stream_inline_bytes: int = 32 * 1024
    visibility_timeout: int = 30
    poll_wait_seconds: int = 20
    max_receive_count: int = 10
    dedup_window_seconds: float = 3600.0
    run_retention: timedelta | None = None
    stream_poll_max: float = 0.5

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.poll_wait_seconds <= 20:
            problems.append(f"poll_wait_seconds={self.poll_wait_seconds}: must be 1..20")
        if not 1 <= self.visibility_timeout <= 43200:
            problems.append(f"visibility_timeout={self.visibility_timeout}: must be 1..43200")
        if not 1024 <= self.payload_threshold <= 300 * 1024:
            problems.append(f"payload_threshold={self.payload_threshold}: must be 1 KiB..300 KiB")
        if problems:
            raise AwsWorldConfigError("AwsWorldConfig: " + "; ".join(problems))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> AwsWorldConfig:
        """The configuration from ``WORKFLOW_AWS_*`` variables (then ``overrides``)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        region = env.get("WORKFLOW_AWS_REGION") or env.get("AWS_REGION")
        for variable, name in ENVIRONMENT.items():
            if env.get(variable):
                values[name] = env[variable]
        if region:
            values["region"] = region
        return cls(**{**values, **overrides})  # type: ignore[arg-type]

    @classmethod
    def for_prefix(cls, prefix: str, **overrides: object) -> AwsWorldConfig:
        """Every table, queue and the bucket named after ``prefix`` (lowercase, dashes)."""
        base = prefix.lower().replace("_", "-")
        names = {
            "runs_table": f"{base}-runs",
            "steps_table": f"{base}-steps",
            "events_table": f"{base}-events",
            "hooks_table": f"{base}-hooks",
            "streams_table": f"{base}-streams",
            "dedup_table": f"{base}-dedup",
            "stream_bucket": f"{base}-streams",
            "workflow_queue": f"{base}-flows",
            "step_queue": f"{base}-steps",
        }
        return cls(**{**names, **overrides})  # type: ignore[arg-type]

    def with_(self, **changes: object) -> AwsWorldConfig:
        """A copy with ``changes``."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def tables(self) -> tuple[str, ...]:
        """Every table name."""
        return (
            self.runs_table,
            self.steps_table,
            self.events_table,
            self.hooks_table,
            self.streams_table,
            self.dedup_table,
        )


def queue_name_of(queue: str) -> str:
    """The queue name of a URL or name."""
    return queue.rstrip("/").rsplit("/", 1)[-1]
