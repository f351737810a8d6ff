"""flowcraft-azure: Flowcraft on Azure Queue Storage (jobs), Cosmos DB (state) and Redis.

Components (names follow the original TypeScript adapter):

* ``AzureQueueAdapter``: the job queue (``flowcraft.core.ports.JobQueue``) on Azure Queue
  Storage with the async azure-storage-queue client: visibility timeouts, ``update_message``
  for ``extend`` and ``nack(delay)``, delays up to 7 days, a poison queue with the reason,
  bodies above 64 KiB offloaded to Cosmos DB.
* ``AzureDelivery``: one delivery, settled once.
* ``CosmosDbContext``: the run store (``flowcraft.core.ports.RunStore``) on Cosmos DB with the
  async azure-cosmos client, one logical partition per run: every save one conditional patch
  of the run item (a journal of parts for large saves), a snapshot folded in the background.
* ``RedisCoordinationStore``: the coordination store, ``flowcraft.core.redis``'s.
* ``create_azure_reconciler(adapter=, context=, blueprints=, stalled_threshold_seconds=)``.
* ``AzureBackend``: the three ports per namespace (``flowcraft worker --backend azure``).

Each module's docstring is its spec sheet; the package README collects them. Driver errors
surface as ``flowcraft.core.errors.TransientBackendError`` or ``PermanentBackendError``.
"""

from flowcraft.azure.__about__ import __version__
from flowcraft.azure._backend import AzureBackend, create_azure_reconciler
from flowcraft.azure._delivery import AzureDelivery
from flowcraft.azure._queue import AzureQueueAdapter
from flowcraft.azure._store import CosmosDbContext
from flowcraft.core.redis import RedisCoordinationStore

__all__ = [
    "AzureBackend",
    "AzureDelivery",
    "AzureQueueAdapter",
    "CosmosDbContext",
    "RedisCoordinationStore",
    "__version__",
    "create_azure_reconciler",
]
