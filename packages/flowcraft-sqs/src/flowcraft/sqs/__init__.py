"""flowcraft-sqs: Flowcraft on Amazon SQS (jobs) and DynamoDB (state and coordination).

Components (names follow the original TypeScript adapter):

* ``SqsAdapter``: the job queue (``flowcraft.core.ports.JobQueue``) on an SQS standard queue:
  long polling, batched sends and deletes, ``ChangeMessageVisibility`` for ``extend`` and
  ``nack(delay)``, ``DelaySeconds`` up to 900 s (longer delays are chained by core), a
  dead-letter queue with a redrive policy and explicit dead-lettering with the reason, bodies
  above SQS's size limit offloaded to DynamoDB.
* ``DynamoDbContext``: the run store (``flowcraft.core.ports.RunStore``): every save one
  ``TransactWriteItems`` of what changed (a journal keeps saves beyond DynamoDB's transaction
  limits atomic), large values as content-addressed chunks, GSIs for listing.
* ``DynamoDbCoordinationStore``: the coordination store (``CoordinationStore``) with
  conditional expressions; no Redis needed.
* ``create_sqs_reconciler(adapter=, context=, blueprints=, stalled_threshold_seconds=)``.
* ``SqsBackend``: the three ports per namespace (``flowcraft worker --backend sqs``).

Each module's docstring is its spec sheet; the package README collects them. Driver errors
surface as ``flowcraft.core.errors.TransientBackendError`` or ``PermanentBackendError``.
"""

from flowcraft.sqs.__about__ import __version__
from flowcraft.sqs._backend import SqsBackend, create_sqs_reconciler
from flowcraft.sqs._coordination import DynamoDbCoordinationStore
from flowcraft.sqs._delivery import SqsDelivery
from flowcraft.sqs._queue import SqsAdapter
from flowcraft.sqs._store import DynamoDbContext

__all__ = [
    "DynamoDbContext",
    "DynamoDbCoordinationStore",
    "SqsAdapter",
    "SqsBackend",
    "SqsDelivery",
    "__version__",
    "create_sqs_reconciler",
]
