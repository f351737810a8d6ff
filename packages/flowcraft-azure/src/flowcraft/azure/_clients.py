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

Cosmos DB requests go through an aiohttp session this module makes (azure-core's transport
over it, owned and closed by the client):

* A private CA (``ca_file``, e.g. a local server's) is loaded once into one ``ssl.SSLContext``
  held by the connector. Giving the SDK the CA file as ``connection_verify`` instead makes
  azure-core build a new context for every request, and aiohttp keys its pooled connections
  by context: every request would open a new TLS connection (measured: one handshake per
  request, a third of a worker's CPU).
* Before CPython 3.12.8 (and on 3.13.0), a TLS connection whose peer never answers the
  shutdown (a server that closes after each response does that) keeps its socket until the
  loop ends, which then reports it unclosed (cpython PR 118960): there the connector aborts
  such transports (aiohttp's ``enable_cleanup_closed``, which newer Pythons no longer need).

Proxies: the sessions of both clients read the environment's proxy settings (``HTTPS_PROXY``,
``NO_PROXY``, ...) only when it has some (:func:`_proxies_in_environment`, checked when the
client is made). aiohttp's ``trust_env`` looks the proxy and a ``.netrc`` entry up again for
every request, each in a worker thread (two thread hand-offs per request, measured: a tenth
of a worker's CPU); a ``.netrc`` entry is no use here anyway (aiohttp refuses one beside the
``Authorization`` header every Azure request carries).
"""

from __future__ import annotations

import importlib
import ssl
import sys
import urllib.request
from typing import Any

import aiohttp

from azure.core.pipeline.transport import AioHttpTransport
from azure.cosmos.aio import CosmosClient
from azure.storage.queue.aio import QueueClient

__all__ = ["cosmos_client", "default_credential", "queue_client"]

#: Whether closed TLS transports must be aborted by aiohttp (cpython PR 118960 missing).
_CLEANUP_CLOSED = sys.version_info < (3, 12, 8) or (3, 13, 0) <= sys.version_info < (3, 13, 1)

_QUEUE_RETRY: dict[str, Any] = {"initial_backoff": 1, "increment_base": 2, "retry_total": 3,
                "random_jitter_range": 1}  # fmt: skip


def _proxies_in_environment() -> bool:
    """Whether the environment names an HTTP(S) proxy (the schemes aiohttp's ``trust_env`` uses)."""
    return any(scheme in ("http", "https", "ws", "wss") for scheme in urllib.request.getproxies())


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
    options = _QUEUE_RETRY | {"use_env_settings": _proxies_in_environment()}
    if connection_string:
        return QueueClient.from_connection_string(connection_string, name, **options)
    if not account_url:
        raise ValueError("Queue Storage: give a connection string or an account URL")
    return QueueClient(account_url, name, credential=credential or default_credential(),
                       **options)  # fmt: skip


def cosmos_client(
    *,
    connection_string: str | None = None,
    url: str | None = None,
    key: str | None = None,
    credential: Any = None,  # noqa: ANN401
    ca_file: str | None = None,
    **options: Any,  # noqa: ANN401 (CosmosClient keyword options)
) -> CosmosClient:
    """An async Cosmos DB client (connection string, URL + key, or URL + credential).

    ``ca_file``: verify the server with this CA bundle (one context, pooled connections).
    Call it with an event loop running (the client's connection pool belongs to it).
    Other keyword options go to ``CosmosClient``.
    """
    options |= {"transport": _transport(ca_file)}
    if ca_file:
        options |= {"connection_verify": True}  # the connector's context verifies
    if connection_string:
        return CosmosClient.from_connection_string(connection_string, **options)
    if not url:
        raise ValueError("Cosmos DB: give a connection string or an account URL")
    return CosmosClient(url, credential=key or credential or default_credential(), **options)


def _transport(ca_file: str | None) -> AioHttpTransport:
    """An aiohttp transport for Cosmos DB (see the module: one SSL context, closed TLS cleaned up).

    The session is made as azure-core makes its own (no cookies, no decompression: the SDK
    decodes bodies itself; proxies from the environment only when it names one); the transport
    owns it and closes it with the client.
    """
    context: ssl.SSLContext | bool = True
    if ca_file:
        context = ssl.create_default_context(cafile=ca_file)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context, enable_cleanup_closed=_CLEANUP_CLOSED),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=_proxies_in_environment(),
    )
    return AioHttpTransport(session=session, session_owner=True)
