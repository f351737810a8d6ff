r"""A ``flowcraft worker`` process that counts its Queue Storage and Cosmos DB requests.

    python -m _bench_azure_worker --counts FILE worker --backend azure --option ... \
        # tools/bench on PYTHONPATH; everything after --counts FILE is flowcraft's command line

It runs ``flowcraft.core.cli.main`` unchanged, after wrapping ``send`` of azure-core's aiohttp
transport (the transport of both SDKs: every HTTP request, each retry included, passes
through it) with :class:`Requests`. On SIGUSR1 it writes what it counted so far to ``FILE``
(JSON, replaced atomically, with a ``seq`` that counts the signals) in ``_bench_sqs_worker``'s
format (``{"requests": {"service.operation": n}, "errors": {...}}``), so ``bench_azure.py``
takes the difference over exactly its measured window with ``_bench_sqs_worker``'s helpers.

:class:`Requests` is also what the bench uses for its own client's requests.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Requests", "operation"]

_COSMOS = {"POST": "create", "PATCH": "patch", "PUT": "replace", "DELETE": "delete", "GET": "read"}
_QUEUE = {"POST": "send", "GET": "receive", "DELETE": "delete", "PUT": "update"}


def operation(method: str, url: str, headers: Any) -> str:  # noqa: ANN401 (a headers mapping)
    """``service.operation`` of one request (``cosmos.query``, ``queue.receive``, ...)."""
    path = urlsplit(url).path
    if path == "/" or path.startswith("/dbs"):
        if headers.get("x-ms-documentdb-isquery") or headers.get(
            "x-ms-cosmos-is-query-plan-request"
        ):
            return "cosmos.query"
        if method == "POST" and headers.get("x-ms-documentdb-is-upsert"):
            return "cosmos.upsert"
        return "cosmos." + _COSMOS.get(method, method.lower())
    if path.endswith("/messages") or "/messages/" in path:
        return "queue." + _QUEUE.get(method, method.lower())
    return "queue.other"


class Requests:
    """Counts the HTTP requests azure-core's aiohttp transport sends, per ``service.operation``.

    * ``requests``: once per HTTP attempt (the SDKs' retries are separate requests);
    * ``errors``: answers with a status of 400 or more, per ``service.operation.status``
      (a refused condition, a conflict, throttling).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[str]] = {"requests": Counter(), "errors": Counter()}

    def install(self) -> None:
        """Count every request of every aiohttp transport of this process from now on."""
        from azure.core.pipeline.transport import AioHttpTransport

        original = AioHttpTransport.send
        counts = self

        async def send(self: AioHttpTransport, request: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            name = operation(request.method, request.url, request.headers)
            response = await original(self, request, **kwargs)
            counts.add(name, response.status_code)
            return response

        AioHttpTransport.send = send

    def add(self, name: str, status: int) -> None:
        with self._lock:
            self._counts["requests"][name] += 1
            if status >= 400:
                self._counts["errors"][f"{name}.{status}"] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        """What was counted so far."""
        with self._lock:
            return {kind: dict(counts) for kind, counts in self._counts.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """``--counts FILE`` then flowcraft's own command line."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "--counts":
        print(__doc__, file=sys.stderr)
        return 2
    target, rest = Path(args[1]), args[2:]
    requests = Requests()
    requests.install()
    seq = 0

    def dump(signum: int, frame: FrameType | None) -> None:
        nonlocal seq
        del signum, frame
        seq += 1
        partial = target.with_suffix(".tmp")
        partial.write_text(json.dumps({"seq": seq, "pid": os.getpid(), **requests.snapshot()}))
        os.replace(partial, target)

    signal.signal(signal.SIGUSR1, dump)
    from flowcraft.core.cli import main as flowcraft

    return flowcraft(rest)


if __name__ == "__main__":
    raise SystemExit(main())
