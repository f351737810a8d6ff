"""boto3 clients (DynamoDB, SQS, S3) and the bounded executors their blocking calls run in.

boto3 is synchronous, the World is asyncio: every call runs in a thread of a bounded
``ThreadPoolExecutor`` (boto3 clients are thread-safe); SQS long polls run in an executor of
their own so they never starve storage calls. Clients use botocore's ``standard`` retry mode
(backoff with jitter on throttling, 5xx and connection errors). Errors are translated here
(:mod:`flowcraft.aws_world._errors`): nothing from botocore reaches a caller.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.config
import botocore.exceptions
from flowcraft.aws_world._errors import refusal, translate

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
Item = dict[str, Any]


class Aws:
    """The three clients and their executors.

    Args:
        region: The AWS region.
        endpoint_url: One endpoint for all three services (a local emulator), or ``None``.
        max_workers: Threads (and pooled connections) for calls.
        max_attempts: botocore's attempts per call (standard retry mode).
    """

    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str | None = None,
        max_workers: int = 16,
        max_attempts: int = 6,
    ) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        session = boto3.session.Session(region_name=region)
        config = botocore.config.Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            max_pool_connections=max_workers + 8,
            connect_timeout=5,
            read_timeout=40,
            tcp_keepalive=True,
        )
        credentials: dict[str, str] = {}
        if self._local() and session.get_credentials() is None:
            credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        make = functools.partial(
            session.client, endpoint_url=endpoint_url, config=config, **credentials
        )
        self.ddb: Any = make("dynamodb")
        self.sqs_client: Any = make("sqs")
        self.s3_client: Any = make("s3")
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers, thread_name_prefix="flowcraft-aws-world"
        )
        self._pollers = concurrent.futures.ThreadPoolExecutor(
            4, thread_name_prefix="flowcraft-aws-world-poll"
        )
        self.closed = False

    def _local(self) -> bool:
        host = urlsplit(self.endpoint_url).hostname if self.endpoint_url else None
        return (host or "") in _LOOPBACK

    async def dynamodb(self, operation: str, **params: Any) -> Item:  # noqa: ANN401
        """Call DynamoDB ``operation`` (snake_case); a refused condition raises ``Refused``."""
        return await self._run(self._executor, self.ddb, operation, params)

    async def sqs(self, operation: str, **params: Any) -> Item:  # noqa: ANN401
        """Call SQS ``operation``."""
        return await self._run(self._executor, self.sqs_client, operation, params)

    async def s3(self, operation: str, **params: Any) -> Item:  # noqa: ANN401
        """Call S3 ``operation``."""
        return await self._run(self._executor, self.s3_client, operation, params)

    async def s3_read(self, bucket: str, key: str) -> bytes:
        """The bytes of S3 object ``key`` (fetched and read in one thread)."""

        def read() -> bytes:
            result = guarded(self.s3_client, "get_object", {"Bucket": bucket, "Key": key})
            try:
                data: bytes = result["Body"].read()
            except (botocore.exceptions.BotoCoreError, OSError) as exc:
                raise translate(exc, "s3 get_object") from exc
            return data

        return await asyncio.get_running_loop().run_in_executor(self._executor, read)

    def submit_poll(self, call: Callable[[], Item]) -> concurrent.futures.Future[Item]:
        """Run ``call`` (a long poll, translated by :func:`guarded`) in the poll executor."""
        return self._pollers.submit(call)

    async def _run(
        self,
        executor: concurrent.futures.ThreadPoolExecutor,
        client: Any,  # noqa: ANN401 (a boto3 client)
        operation: str,
        params: Item,
    ) -> Item:
        call = functools.partial(guarded, client, operation, params)
        return await asyncio.get_running_loop().run_in_executor(executor, call)

    def close(self) -> None:
        """Stop the executors (calls in flight finish in their threads). Idempotent."""
        if not self.closed:
            self.closed = True
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._pollers.shutdown(wait=False, cancel_futures=True)


def guarded(client: Any, operation: str, params: Item) -> Item:  # noqa: ANN401
    """``client.<operation>(**params)`` with its errors translated (runs in a thread)."""
    try:
        result: Item = getattr(client, operation)(**params)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        refused = refusal(exc)
        if refused is not None:
            raise refused from None
        service = client.meta.service_model.service_name
        raise translate(exc, f"{service} {operation}") from exc
    except (OSError, TimeoutError) as exc:
        raise translate(exc, operation) from exc
    return result
