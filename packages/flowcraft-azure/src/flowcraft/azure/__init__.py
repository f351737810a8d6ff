"""flowcraft-azure: Flowcraft on Azure Queue Storage (jobs), Cosmos DB (state) and Redis.

Components (names follow the original TypeScript adapter):

* ``AzureQueueAdapter``: the job queue (``flowcraft.core.ports.JobQueue``) on Azure Queue
  Storage with the async azure-storage-queue client: visibility timeouts, ``update_message``
  for ``extend`` and ``nack(delay)``, delays up to 7 days, a poison queue with the reason,
  bodies above 64 KiB offloaded to Cosmos DB.
* ``AzureDelivery``: one delivery, settled once.

Each module's docstring is its spec sheet; the package README collects them. Driver errors
surface as ``flowcraft.core.errors.TransientBackendError`` or ``PermanentBackendError``.
"""

from flowcraft.azure.__about__ import __version__
from flowcraft.azure._delivery import AzureDelivery
from flowcraft.azure._queue import AzureQueueAdapter

__all__ = ["AzureDelivery", "AzureQueueAdapter", "__version__"]
