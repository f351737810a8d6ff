"""boto3 clients and the bounded executors their blocking calls run in.

boto3 is synchronous; the ports are asyncio. Every call runs in a thread of a bounded
``ThreadPoolExecutor`` (``max_workers``, default 32, matched by botocore's connection pool),
so no boto3 call ever blocks the event loop. Long polls (``ReceiveMessage`` waiting up to 20 s)
run in an executor of their own, so they never starve store calls. Measured on moto: the hop
into a thread costs ~0.05 ms against 3-11 ms for the call itself (BENCHMARKS.md), and boto3's
clients are thread-safe, which is why this is a thread pool and not a second, async botocore
stack (aiobotocore pins exact botocore versions, a constraint users of boto3 then inherit).

Retries: clients this module creates use botocore's ``standard`` retry mode (exponential
backoff with jitter; throttling, 5xx, connection errors) with ``max_attempts`` 8. Clients the
user passes in keep their own configuration.

Credentials come from boto3's default chain (environment, profile, instance role). For a local
emulator (an ``endpoint_url`` on loopback) with no credentials anywhere, dummy ones are used.
"""

from __future__ import annotations

import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions
from flowcraft.sqs._errors import refusal, translate

__all__ = ["Aws", "region_from_env"]

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def region_from_env(region: str | None) -> str:
    """``region``, else FLOWCRAFT_AWS_REGION, AWS_REGION, AWS_DEFAULT_REGION, us-east-1."""
    for candidate in (
        region,
        os.environ.get("FLOWCRAFT_AWS_REGION"),
        os.environ.get("AWS_REGION"),
        os.environ.get("AWS_DEFAULT_REGION"),
    ):
        if candidate:
            return candidate
    return "us-east-1"


class Aws:
    """SQS and DynamoDB clients plus the executors their calls run in (see the module).

    Pass clients (``sqs_client``, ``dynamodb_client``: boto3 clients you configured) or let it
    create them from ``endpoint_url`` and ``region``. One ``Aws`` may be shared by a queue, a
    run store and a coordination store; whoever created it closes it.
    """

    def __init__(
        self,
        *,
        sqs_client: Any = None,  # noqa: ANN401 (a boto3 client: typed by boto3-stubs only)
        dynamodb_client: Any = None,  # noqa: ANN401
        endpoint_url: str | None = None,
        region: str | None = None,
        max_workers: int = 32,
        max_attempts: int = 8,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region_from_env(region)
        self._max_workers = max_workers
        self._max_attempts = max_attempts
        self._session: boto3.session.Session | None = None
        self.sqs_client = sqs_client if sqs_client is not None else self._client("sqs")
        self.dynamodb_client = (
            dynamodb_client if dynamodb_client is not None else self._client("dynamodb")
        )
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="flowcraft-aws")
        self._pollers = ThreadPoolExecutor(8, thread_name_prefix="flowcraft-sqs-poll")
        self.closed = False

    def _client(self, service: str) -> Any:  # noqa: ANN401
        if self._session is None:
            self._session = boto3.session.Session(region_name=self.region)
        config = botocore.config.Config(
            retries={"mode": "standard", "max_attempts": self._max_attempts},
            max_pool_connections=self._max_workers + 8,
            connect_timeout=5,
            read_timeout=40,  # above the longest long poll (20 s)
            tcp_keepalive=True,
        )
        credentials: dict[str, str] = {}
        if self._local() and self._session.get_credentials() is None:
            credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        return self._session.client(  # type: ignore[call-overload]
            service, endpoint_url=self.endpoint_url, config=config, **credentials
        )

    def _local(self) -> bool:
        if not self.endpoint_url:
            return False
        return (urlsplit(self.endpoint_url).hostname or "") in _LOOPBACK

    async def sqs(self, operation: str, **params: Any) -> dict[str, Any]:  # noqa: ANN401
        """Call SQS ``operation`` (snake_case) with ``params``; errors translated."""
        return await self._run(self._executor, self.sqs_client, operation, params)

    async def dynamodb(self, operation: str, **params: Any) -> dict[str, Any]:  # noqa: ANN401
        """Call DynamoDB ``operation`` (snake_case); a refused condition raises ``Refused``."""
        return await self._run(self._executor, self.dynamodb_client, operation, params)

    async def poll(self, operation: str, **params: Any) -> dict[str, Any]:  # noqa: ANN401
        """Call SQS ``operation`` in the long-poll executor (``receive_message``)."""
        return await self._run(self._pollers, self.sqs_client, operation, params)

    async def _run(
        self,
        executor: ThreadPoolExecutor,
        client: Any,  # noqa: ANN401 (a boto3 client)
        operation: str,
        params: dict[str, Any],
    ) -> dict[str, Any]:
        method = getattr(client, operation)
        loop = asyncio.get_running_loop()
        try:
            result: dict[str, Any] = await loop.run_in_executor(
                executor, functools.partial(method, **params)
            )
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            refused = refusal(exc)
            if refused is not None:
                raise refused from None
            raise translate(exc, f"{client.meta.service_model.service_name} {operation}") from exc
        except (OSError, TimeoutError) as exc:
            raise translate(exc, operation) from exc
        return result

    def close(self) -> None:
        """Stop the executors (calls in flight finish in their threads). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._pollers.shutdown(wait=False, cancel_futures=True)
