"""flowcraft-rabbitmq: Flowcraft on RabbitMQ (jobs), PostgreSQL (state), Redis (coordination).

Components (names follow the original TypeScript adapter):

* ``RabbitMqAdapter``: the job queue (``flowcraft.core.ports.JobQueue``) on RabbitMQ: durable
  queues, persistent messages, publisher confirms, manual acks, prefetch, delays through a
  ladder of TTL queues, a dead-letter queue, reconnection after broker restarts.
* ``PostgresContext``: the run store (``flowcraft.core.ports.RunStore``) on PostgreSQL: the
  original ``flowcraft_contexts``/``flowcraft_statuses`` tables plus runs, state documents,
  outbox and attempts; every operation one atomic statement; ``ensure_schema()``.
* ``create_rabbitmq_reconciler(adapter=, pg=, blueprints=, stalled_threshold_seconds=)``: the
  reconciler; ``run()`` -> ``{stalled_runs, reconciled_runs, failed_runs}``.
* ``RabbitMqBackend``: the three ports per namespace (``flowcraft worker --backend rabbitmq``).
* ``RedisCoordinationStore``: the coordination store (``flowcraft.core.ports.CoordinationStore``)
  on Redis, shared from ``flowcraft.core.redis``.

Each module's docstring is its spec sheet (guarantees, limits, schema); the package README
collects them. Driver errors surface as ``flowcraft.core.errors.TransientBackendError`` or
``PermanentBackendError``.
"""

from flowcraft.core.redis import RedisCoordinationStore
from flowcraft.rabbitmq.__about__ import __version__
from flowcraft.rabbitmq._backend import RabbitMqBackend, create_rabbitmq_reconciler
from flowcraft.rabbitmq._delivery import RabbitMqDelivery
from flowcraft.rabbitmq._queue import RabbitMqAdapter
from flowcraft.rabbitmq._store import PostgresContext

__all__ = [
    "PostgresContext",
    "RabbitMqAdapter",
    "RabbitMqBackend",
    "RabbitMqDelivery",
    "RedisCoordinationStore",
    "__version__",
    "create_rabbitmq_reconciler",
]
