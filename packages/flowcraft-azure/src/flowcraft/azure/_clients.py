"""Building the async SDK clients from connection strings or ``DefaultAzureCredential``.

* Queue Storage: ``queue_connection_string`` (the storage account's, or Azurite's with an
  explicit ``QueueEndpoint``), or ``queue_account_url``
  (``https://<account>.queue.core.windows.net``) with ``DefaultAzureCredential`` (roles
  *Storage Queue Data Message Processor* and *Storage Queue Data Message Sender*; *Storage
  Queue Data Contributor* for ``ensure_schema``).
* Cosmos DB: ``cosmos_connection_string``, or ``cosmos_url`` with ``cosmos_key``, or
  ``cosmos_url`` alone with ``DefaultAzureCredential`` (data-plane role *Cosmos DB Built-in
  Data Contributor*; creating the database and containers needs a control-plane role, so
  with Entra ID run ``ensure_schema`` once with ``az`` or Bicep instead, see the README).

``DefaultAzureCredential`` comes from ``azure-identity``
(``pip install flowcraft-azure[identity]``).
Retries: Queue Storage requests retry 3 times with exponential backoff from 1 s (the SDK's
default starts at 15 s, too slow for a worker); Cosmos DB requests use the SDK's own policy
(throttled requests, 429, are retried after the ``x-ms-retry-after-ms`` the service gives,
up to 9 times / 30 s), connection errors 3 times.
"""

from __future__ import annotations

import importlib
from typing import Any

from azure.cosmos.aio import CosmosClient
from azure.storage.queue.aio import QueueClient

__all__ = ["cosmos_client", "default_credential", "queue_client"]

_QUEUE_RETRY: dict[str, Any] = {"initial_backoff": 1, "increment_base": 2, "retry_total": 3,
                "random_jitter_range": 1}  # fmt: skip


def default_credential() -> Any:  # noqa: ANN401 (an AsyncTokenCredential)
    """``azure.identity.aio.DefaultAzureCredential`` (``ImportError`` naming the extra)."""
    try:
        identity = importlib.import_module("azure.identity.aio")
    except ImportError as exc:
        raise ImportError(
            "DefaultAzureCredential needs azure-identity: pip install 'flowcraft-azure[identity]'"
        ) from exc
    return identity.DefaultAzureCredential()


def queue_client(
    name: str,
    *,
    connection_string: str | None = None,
    account_url: str | None = None,
    credential: Any = None,  # noqa: ANN401
) -> QueueClient:
    """An async client of queue ``name`` (connection string, or account URL + credential)."""
    if connection_string:
        return QueueClient.from_connection_string(connection_string, name, **_QUEUE_RETRY)
    if not account_url:
        raise ValueError("Queue Storage: give a connection string or an account URL")
    return QueueClient(account_url, name, credential=credential or default_credential(),
                       **_QUEUE_RETRY)  # fmt: skip


def cosmos_client(
    *,
    connection_string: str | None = None,
    url: str | None = None,
    key: str | None = None,
    credential: Any = None,  # noqa: ANN401
    **options: Any,  # noqa: ANN401 (CosmosClient keyword options, e.g. connection_verify)
) -> CosmosClient:
    """An async Cosmos DB client (connection string, URL + key, or URL + credential)."""
    if connection_string:
        return CosmosClient.from_connection_string(connection_string, **options)
    if not url:
        raise ValueError("Cosmos DB: give a connection string or an account URL")
    return CosmosClient(url, credential=key or credential or default_credential(), **options)
