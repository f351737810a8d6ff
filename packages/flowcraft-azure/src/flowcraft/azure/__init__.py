"""flowcraft-azure: Flowcraft on Azure Queue Storage, Cosmos DB and Redis.

Status: layout only. The distribution is published so that its dependency set
(azure-storage-queue, azure-cosmos, redis) and its place in the ``flowcraft`` namespace are
fixed; the adapter itself (`AzureQueueAdapter`, `CosmosDbContext`, `RedisCoordinationStore`)
arrives with its own issue. Until then this package exports only its version, on purpose: no
placeholder classes that pretend to work.
"""

from flowcraft.azure.__about__ import __version__

__all__ = ["__version__"]
