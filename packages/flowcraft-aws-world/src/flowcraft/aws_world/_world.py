"""``AwsWorld``: the World on DynamoDB, SQS and S3, and ``create_world()``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from flowcraft.aws_world._aws import Aws
from flowcraft.aws_world._codec import Payloads
from flowcraft.aws_world._config import AwsWorldConfig
from flowcraft.aws_world._queue import MAX_HOP, SqsQueue
from flowcraft.aws_world._reads import Reads
from flowcraft.aws_world._schema import drop_infrastructure, ensure_infrastructure, queue_url
from flowcraft.aws_world._store import RunItems
from flowcraft.aws_world._streams import S3Streams
from flowcraft.aws_world._tables import s
from flowcraft.core.world import (
    WORKFLOW_QUEUE_PREFIX,
    Event,
    EventResult,
    Hook,
    NewEvent,
    Page,
    Pagination,
    QueueHandler,
    QueueMessage,
    ResolveData,
    RunStatus,
    Step,
    StreamChunksPage,
    StreamInfo,
    Wait,
    WorkflowRun,
    WorldCapabilities,
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AwsWorld:
    """The World on DynamoDB, SQS and S3 (see the package documentation).

    DynamoDB holds runs, steps, events, hooks, waits and the order of stream chunks; SQS the
    workflow and step queues; S3 stream chunks and large payloads.

    Args:
        config: Names and settings (``AwsWorldConfig.from_env()`` by default).
        recovery_queue_prefix: ``start()`` re-enqueues ``{"runId": ...}`` for each run left
            pending or running on ``prefix + workflow_name``.
        clock: The time stamped on events (UTC).
        create_missing: ``start()`` first creates the tables, queues and bucket that are
            missing (``ensure_infrastructure()``).
    """

    def __init__(
        self,
        config: AwsWorldConfig | None = None,
        *,
        recovery_queue_prefix: str = WORKFLOW_QUEUE_PREFIX,
        clock: Callable[[], datetime] = _utc_now,
        create_missing: bool = False,
    ) -> None:
        self._create_missing = create_missing
        self.config = config or AwsWorldConfig.from_env()
        self.capabilities = WorldCapabilities(
            max_delay_seconds=None,
            dedup_window_seconds=self.config.dedup_window_seconds,
            run_expiry=True,
        )
        self.aws = Aws(region=self.config.region, endpoint_url=self.config.endpoint_url)
        payloads = Payloads(self.aws, self.config.stream_bucket, self.config.payload_threshold)
        self._items = RunItems(self.aws, self.config, payloads, clock)
        self._reads = Reads(self.aws, self.config, payloads, self._items)
        self._queue = SqsQueue(self.aws, self.config)
        self._streams = S3Streams(self.aws, self.config)
        self._recovery_prefix = recovery_queue_prefix
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    async def ensure_infrastructure(self) -> None:
        """Create the tables, indexes, bucket, queues and DLQs that are missing (idempotent)."""
        self._queue.use_urls(*await ensure_infrastructure(self.aws, self.config))

    async def drop_infrastructure(self) -> None:
        """Delete every table, queue and the bucket of this World (tests, teardown)."""
        await drop_infrastructure(self.aws, self.config)

    async def _resolve_queues(self) -> None:
        workflow = await queue_url(self.aws, self.config.workflow_queue)
        step = await queue_url(self.aws, self.config.step_queue)
        self._queue.use_urls(workflow, step)

    async def start(self) -> None:
        """Start the queue consumers; re-enqueue runs left pending or running."""
        if self._started:
            return
        self._started = True
        if self._create_missing:
            await self.ensure_infrastructure()
        await self._resolve_queues()
        self._queue.start()
        for status in (RunStatus.PENDING, RunStatus.RUNNING):
            for run in await self._live_runs(status):
                await self.queue(self._recovery_prefix + run.workflow_name, {"runId": run.run_id})

    async def _live_runs(self, status: RunStatus) -> list[WorkflowRun]:
        runs: list[WorkflowRun] = []
        cursor = None
        while True:
            page = await self.runs_list(
                status=status, pagination=Pagination(limit=1000, cursor=cursor), resolve_data="none"
            )
            runs += page.data
            cursor = page.cursor
            if not page.has_more:
                return runs

    async def aclose(self) -> None:
        """Stop the consumers (deliveries in flight become visible again) and the clients."""
        self._started = False
        await self._queue.stop()
        self.aws.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ events and reads

    async def events_create(self, run_id: str | None, event: NewEvent) -> EventResult:
        """Append ``event`` and apply its transition in one ``TransactWriteItems``."""
        return await self._items.events_create(run_id, event)

    async def runs_get(self, run_id: str, *, resolve_data: ResolveData = "all") -> WorkflowRun:
        """The run (404 if none)."""
        return await self._reads.runs_get(run_id, resolve_data)

    async def runs_list(
        self,
        *,
        workflow_name: str | None = None,
        status: RunStatus | None = None,
        pagination: Pagination | None = None,
        resolve_data: ResolveData = "all",
    ) -> Page[WorkflowRun]:
        """Runs in creation order, optionally of one workflow and/or status."""
        return await self._reads.runs_list(workflow_name, status, pagination, resolve_data)

    async def steps_get(
        self, run_id: str, step_id: str, *, resolve_data: ResolveData = "all"
    ) -> Step:
        """The step (404 if none)."""
        return await self._reads.steps_get(run_id, step_id, resolve_data)

    async def steps_list(
        self,
        run_id: str,
        *,
        pagination: Pagination | None = None,
        resolve_data: ResolveData = "all",
    ) -> Page[Step]:
        """The run's steps in creation order."""
        return await self._reads.steps_list(run_id, pagination, resolve_data)

    async def hooks_get(self, run_id: str, hook_id: str) -> Hook:
        """The hook, active or disposed (404 if none)."""
        return await self._reads.hooks_get(run_id, hook_id)

    async def hooks_get_by_token(self, token: str) -> Hook:
        """The active hook holding ``token``."""
        return await self._reads.hooks_get_by_token(token)

    async def hooks_list(self, run_id: str, *, pagination: Pagination | None = None) -> Page[Hook]:
        """The run's hooks in creation order."""
        return await self._reads.hooks_list(run_id, pagination)

    async def waits_get(self, run_id: str, wait_id: str) -> Wait:
        """The wait (404 if none)."""
        return await self._reads.waits_get(run_id, wait_id)

    async def events_list(
        self,
        run_id: str,
        *,
        pagination: Pagination | None = None,
        resolve_data: ResolveData = "all",
    ) -> Page[Event]:
        """The run's events by sequence."""
        return await self._reads.events_list(run_id, pagination, resolve_data)

    # ------------------------------------------------------------------ queue

    async def queue(
        self,
        queue_name: str,
        message: QueueMessage,
        *,
        idempotency_key: str | None = None,
        delay_seconds: float = 0.0,
    ) -> str:
        """Send ``message`` to SQS (dedup by ``idempotency_key`` in DynamoDB)."""
        if self._queue_unresolved():
            await self._resolve_queues()
        return await self._queue.enqueue(
            queue_name, message, key=idempotency_key, delay=delay_seconds
        )

    def _queue_unresolved(self) -> bool:
        return not self._queue.resolved

    async def deliver_record(self, record: Mapping[str, Any]) -> bool:
        """Deliver one SQS record of a Lambda event; whether it is settled (else: retry it)."""
        if self._queue_unresolved():
            await self._resolve_queues()
        received = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
        settled, _ = await self._queue.process(record["body"], received)
        return settled

    def register_handler(self, queue_prefix: str, handler: QueueHandler) -> None:
        """Deliver queues starting with ``queue_prefix`` to ``handler``."""
        self._queue.register(queue_prefix, handler)

    # ------------------------------------------------------------------ streams

    async def streams_write(self, run_id: str, name: str, chunk: bytes) -> None:
        """Append one chunk."""
        await self._streams.write(run_id, name, [chunk])

    async def streams_write_multi(self, run_id: str, name: str, chunks: Sequence[bytes]) -> None:
        """Append chunks atomically (one batch)."""
        if chunks:
            await self._streams.write(run_id, name, chunks)

    async def streams_close(self, run_id: str, name: str) -> None:
        """EOF (idempotent)."""
        await self._streams.close(run_id, name)

    def streams_get(
        self, run_id: str, name: str, start_index: int | None = None
    ) -> AsyncIterator[bytes]:
        """Read live until EOF."""
        return self._streams.read(run_id, name, start_index)

    async def streams_get_chunks(
        self, run_id: str, name: str, *, limit: int = 100, cursor: str | None = None
    ) -> StreamChunksPage:
        """A snapshot page."""
        return await self._streams.page(run_id, name, limit, cursor)

    async def streams_get_info(self, run_id: str, name: str) -> StreamInfo:
        """Tail index and EOF flag."""
        return await self._streams.info(run_id, name)

    async def streams_list(self, run_id: str) -> list[str]:
        """The run's stream names."""
        return await self._streams.names(run_id)


def create_world(
    config: AwsWorldConfig | None = None, *, recovery_queue_prefix: str = WORKFLOW_QUEUE_PREFIX
) -> AwsWorld:
    """A World on DynamoDB, SQS and S3 (``config`` from ``WORKFLOW_AWS_*`` by default).

    Call ``await world.ensure_infrastructure()`` once to create what is missing, then
    ``await world.start()`` (or ``async with world:``) to begin the queue consumers.
    """
    return AwsWorld(config, recovery_queue_prefix=recovery_queue_prefix)


__all__ = ["MAX_HOP", "AwsWorld", "create_world", "s"]
