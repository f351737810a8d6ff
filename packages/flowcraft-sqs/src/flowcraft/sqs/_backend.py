"""The SQS + DynamoDB backend as one object: ports per namespace, a reconciler.

``SqsBackend`` is what ``flowcraft worker --backend sqs``, ``flowcraft reconcile`` and
``flowcraft conformance --backend sqs`` use (entry point ``flowcraft.backends``). Options (all
strings on the command line): ``endpoint_url`` (an emulator; default
``FLOWCRAFT_AWS_ENDPOINT_URL``, else AWS itself), ``region`` (default ``FLOWCRAFT_AWS_REGION``,
``AWS_REGION``, ``AWS_DEFAULT_REGION``, else us-east-1), ``visibility_timeout`` (seconds, 30),
``max_receive_count`` (the redrive policy's, 50) and ``sticky_delay`` (seconds 1..50, or
``none``: how long the durable copy of a sticky message waits in the jobs queue, see
``_queue``; default the visibility timeout, at most 30: a crashed worker's attempts run ahead
come back no later than a crashed consumer's plain message). Credentials come from boto3's
chain.

``create(namespace)`` creates, unless they exist, the tables ``<ns>-contexts``,
``<ns>-statuses`` and ``<ns>-coordination`` and the queues ``<ns>-jobs`` and ``<ns>-dead``
(``flowcraft`` gives the original adapter's names), and opens the three ports on them;
``destroy`` (tests) deletes them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import ClassVar

from flowcraft.core import BlueprintSet, Reconciler
from flowcraft.core.backends import Backend
from flowcraft.core.errors import BackendError
from flowcraft.core.sticky import sticky_delay_option
from flowcraft.sqs._aws import Aws
from flowcraft.sqs._coordination import DynamoDbCoordinationStore
from flowcraft.sqs._queue import SqsAdapter
from flowcraft.sqs._schema import Names, drop_queues, drop_tables, ensure_queues, ensure_tables
from flowcraft.sqs._store import DynamoDbContext

__all__ = ["SqsBackend", "create_sqs_reconciler"]

ENDPOINT_ENV = "FLOWCRAFT_AWS_ENDPOINT_URL"
STICKY_ENV = "FLOWCRAFT_SQS_STICKY_DELAY"


class SqsBackend:
    """Opens the adapter's three ports for a namespace (see the module docstring)."""

    capabilities = frozenset(
        {"coordination", "dead_letter", "delayed_delivery", "result_reads", "started_runs"}
    )
    #: The variables options default from: set, they beat a CLI config file's value.
    option_environment: ClassVar[Mapping[str, str]] = {
        "endpoint_url": ENDPOINT_ENV,
        "region": "FLOWCRAFT_AWS_REGION",
        "sticky_delay": STICKY_ENV,
    }

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        visibility_timeout: int | str = 30,
        max_receive_count: int | str = 50,
        sticky_delay: float | str | None = "default",
    ) -> None:
        self.endpoint_url = endpoint_url or os.environ.get(ENDPOINT_ENV) or None
        self.region = region
        self.visibility_timeout = _positive("visibility_timeout", visibility_timeout, 43_200)
        self.max_receive_count = _positive("max_receive_count", max_receive_count, 1_000)
        if sticky_delay == "default":
            sticky_delay = os.environ.get(STICKY_ENV) or "default"
        self.sticky_delay = sticky_delay_option(
            sticky_delay, visibility_timeout=self.visibility_timeout
        )

    def _aws(self) -> Aws:
        return Aws(endpoint_url=self.endpoint_url, region=self.region)

    async def create(self, namespace: str) -> Backend:
        """The ports of ``namespace`` (tables and queues created if missing)."""
        aws = self._aws()
        names = Names.of(namespace)
        try:
            await ensure_tables(aws, names)
            jobs_url, dead_url = await ensure_queues(
                aws, names, visibility_timeout=self.visibility_timeout,
                max_receive_count=self.max_receive_count,
            )  # fmt: skip
        except BackendError as exc:  # name the endpoint (never the credentials)
            aws.close()
            where = self.endpoint_url or f"AWS {aws.region}"
            raise type(exc)(f"SQS/DynamoDB at {where} ({ENDPOINT_ENV}): {exc}") from exc
        queue = SqsAdapter(
            queue_url=jobs_url, dead_letter_queue_url=dead_url, offload_table_name=names.contexts,
            aws=aws, visibility_timeout=self.visibility_timeout,
            sticky_delay=self.sticky_delay,  # (sticks only once it receives: a CLI worker's)
        )  # fmt: skip
        store = DynamoDbContext(
            context_table_name=names.contexts, status_table_name=names.statuses, aws=aws
        )
        coordination = DynamoDbCoordinationStore(table_name=names.coordination, aws=aws)

        async def worker_queue() -> SqsAdapter:
            """A consumer of its own (its own stop and close), on the shared clients."""
            return SqsAdapter(
                queue_url=jobs_url, dead_letter_queue_url=dead_url,
                offload_table_name=names.contexts, aws=aws,
                visibility_timeout=self.visibility_timeout, sticky_delay=self.sticky_delay,
            )  # fmt: skip

        return Backend(queue=queue, store=store, coordination=coordination,
                       dead_letters=queue.dead_letters, inject=queue.enqueue,
                       worker_queue=worker_queue,
                       visibility_timeout=float(self.visibility_timeout),
                       extra={"namespace": namespace, "aws": aws, "names": names,
                              "queues": (jobs_url, dead_url)})  # fmt: skip

    async def close(self, backend: Backend) -> None:
        """Close the ports (unsettled deliveries become visible); nothing is deleted."""
        await backend.queue.close()
        await backend.store.close()  # type: ignore[attr-defined]
        if backend.coordination is not None:
            await backend.coordination.close()
        aws = backend.extra.get("aws")
        if isinstance(aws, Aws):
            aws.close()

    async def destroy(self, backend: Backend) -> None:
        """Close, then delete the namespace's tables and queues (tests only)."""
        await self.close(backend)
        cleanup = self._aws()
        try:
            await drop_queues(cleanup, backend.extra["queues"])
            await drop_tables(cleanup, backend.extra["names"])
        finally:
            cleanup.close()


def _positive(name: str, value: int | str, most: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"option {name}: {value!r} is not a whole number of seconds") from None
    if not 1 <= number <= most:
        raise ValueError(f"option {name}: {number} is outside 1..{most}")
    return number


def create_sqs_reconciler(
    *,
    adapter: SqsAdapter,
    context: DynamoDbContext,
    blueprints: Sequence[object] | BlueprintSet,
    stalled_threshold_seconds: float = 60.0,
) -> Reconciler:
    """A reconciler over the adapter's queue and DynamoDB store.

    ``run()`` returns ``{stalled_runs, reconciled_runs, failed_runs}`` (``.as_dict()``);
    ``run_forever(interval)`` repeats it. Stalled runs come from the statuses table's
    ``by_activity`` index (unfinished runs not saved for ``stalled_threshold_seconds``).
    """
    bset = blueprints if isinstance(blueprints, BlueprintSet) else BlueprintSet(blueprints)  # type: ignore[arg-type]
    return Reconciler(queue=adapter, store=context, blueprints=bset,
                      stalled_after=stalled_threshold_seconds)  # fmt: skip
