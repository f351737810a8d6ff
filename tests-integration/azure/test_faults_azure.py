"""Faults specific to Azure Queue Storage + Cosmos DB, end to end with worker processes.

Workers run as ``flowcraft worker --backend azure`` processes (``python -m flowcraft.core``) on
a 2 s visibility timeout; the test process is the client. A worker SIGKILLed mid-node, and
every connection to Azurite and to the Cosmos server cut for 3 s mid-run (TCP proxies the
test starts in front of them: both keep their state in memory, so neither is restarted).
Each test checks that every run completes, that nothing is committed twice (each node's
committed output, its context write and what the next node received carry the ticket of one
and the same execution) and that nothing is left in the jobs queue.

The worker processes, journal, ``fault.step`` node and TCP proxy are core's
(``flowcraft.core.testing.faults``): the workers load ``--registry
flowcraft.core.testing.faults:REGISTRY``; every execution of ``fault.step`` leaves a line in the
journal, which is how the test counts executions across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from flowcraft.core import Blueprint, DistributedRunHandle, RunResult
from flowcraft.core._distributed.sender import COPY_AFTER
from flowcraft.core.testing.faults import (
    TcpProxy,
    WorkerProcesses,
    chain,
    check_run,
    process_session,
    until,
)
from flowcraft.core.testing.faults import results as final_results
from flowcraft.core.testing.harness import Session

#: Cuts the connections of shared servers: runs alone, after the parallel part.
pytestmark = pytest.mark.exclusive

VISIBILITY = 2


# ------------------------------------------------------------------ endpoints and workers


@dataclass(frozen=True)
class Endpoints:
    """Where the services are (directly, or through the proxies)."""

    queue_connection_string: str
    cosmos_url: str
    cosmos_key: str
    cosmos_ca_file: str
    redis_url: str

    def options(self) -> dict[str, str]:
        return {"queue_connection_string": self.queue_connection_string,
                "cosmos_url": self.cosmos_url, "cosmos_key": self.cosmos_key,
                "cosmos_ca_file": self.cosmos_ca_file, "redis_url": self.redis_url}  # fmt: skip


@pytest.fixture
def endpoints(
    azure_queue_connection_string: str, cosmos_endpoint: dict[str, str], redis_url: str
) -> Endpoints:
    return Endpoints(azure_queue_connection_string, cosmos_endpoint["url"],
                     cosmos_endpoint["key"], cosmos_endpoint["ca_file"], redis_url)  # fmt: skip


@contextlib.asynccontextmanager
async def _session(
    endpoints: Endpoints, blueprint: Blueprint, tmp: Path, *, lease: float
) -> AsyncIterator[tuple[Session, WorkerProcesses]]:
    """A fresh namespace (destroyed afterwards), no worker yet."""
    options = {**endpoints.options(), "visibility_timeout": VISIBILITY, "max_poll_interval": 0.25}
    async with process_session("azure", options, blueprint, tmp, lease=lease) as (s, workers):
        yield s, workers


async def _results(
    session: Session, handles: Sequence[DistributedRunHandle], seconds: float
) -> list[RunResult]:
    """Every run's final result within ``seconds``; else fail, saying where the rest stand."""

    async def queue() -> list[str]:
        return [f"jobs queue: {await _queued(session)} messages"]

    return await final_results(handles, seconds, store=session.backend.store, describe=queue)


async def _queued(session: Session) -> int:
    jobs = session.backend.extra["clients"][0]
    properties = await jobs.get_queue_properties()
    return int(properties.approximate_message_count or 0)


async def _nothing_left(session: Session, seconds: float = 10) -> None:
    """Eventually no message in the jobs queue (each acked) and no dead letter."""
    deadline = time.monotonic() + seconds
    while (left := await _queued(session)) or await session.backend.dead_letters():
        assert time.monotonic() < deadline, f"left in the jobs queue: {left}"
        await asyncio.sleep(0.2)


# ------------------------------------------------------------------ a worker SIGKILLed


async def test_a_worker_process_killed_mid_node(endpoints: Endpoints, tmp_path: Path) -> None:
    """SIGKILLed while three runs sleep in s1 (3 s): the messages come back after the visibility
    timeout, the leases run out, another worker process runs s1 again and finishes.
    (Killed once s1's message is out: s1 runs ahead in the victim, which holds that message
    back ``COPY_AFTER`` seconds; killed before, the run would wait for the reconciler.)"""
    blueprint = chain("sigkill", 0.1, 3.0, 0.1)
    async with _session(endpoints, blueprint, tmp_path, lease=2.0) as (s, workers):
        victim = workers.start()
        handles = [await s.start("sigkill", "in") for _ in range(3)]
        runs = [h.run_id for h in handles]
        journal = workers.journal
        await until("s1 runs in the victim for every run", 60,
                    lambda: all(journal.steps(r, "s1") for r in runs))  # fmt: skip
        await asyncio.sleep(COPY_AFTER + 0.3)  # mid-node, s1's message sent (see the docstring)
        await workers.kill(victim)
        assert not any(journal.steps(r, "s1", "finished") for r in runs)
        rescuer = workers.start()
        results = await _results(s, handles, 60)
        await _nothing_left(s)
    for result in results:
        check_run(result, blueprint, journal, "in")
        s1 = journal.steps(result.run_id, "s1")
        assert [e["pid"] for e in s1] == [victim.pid, rescuer.pid]  # ran again, elsewhere
        assert result.outputs["s1"]["ticket"].split("/")[1] == str(rescuer.pid)
        for node in ("s0", "s2"):  # finished work is never run again
            assert len(journal.steps(result.run_id, node)) == 1


# ------------------------------------------------------------------ connections cut


@pytest.fixture
async def proxied(
    endpoints: Endpoints,
) -> AsyncIterator[tuple[Endpoints, TcpProxy, TcpProxy, ThrottlingProxy]]:
    """The endpoints with Azurite and the Cosmos server behind proxies of their own.

    Cosmos DB: TCP proxy -> an HTTPS relay (never throttling) -> the server. The relay lists the
    TCP proxy as the account's endpoint: the SDK sends its requests to the endpoints the
    account lists (endpoint discovery), and without it they would go around the proxy.
    """
    queue_port = int(endpoints.queue_connection_string.split("QueueEndpoint=http://127.0.0.1:")[1]
                     .split("/")[0])  # fmt: skip
    relay = ThrottlingProxy(endpoints.cosmos_url, tls_dir=Path(endpoints.cosmos_ca_file).parent,
                            share=0.0, paths="/docs", cosmos=True)  # fmt: skip
    await relay.start()
    queue, cosmos = TcpProxy("127.0.0.1", queue_port), TcpProxy("127.0.0.1", relay.port)
    await queue.start()
    await cosmos.start()
    relay.advertised = cosmos.port
    through = Endpoints(
        endpoints.queue_connection_string.replace(f"127.0.0.1:{queue_port}/",
                                                  f"127.0.0.1:{queue.port}/"),
        f"https://127.0.0.1:{cosmos.port}", endpoints.cosmos_key, endpoints.cosmos_ca_file,
        endpoints.redis_url,
    )  # fmt: skip
    yield through, queue, cosmos, relay
    await queue.close()
    await cosmos.close()
    await relay.close()


async def test_every_connection_cut_for_three_seconds_mid_run(
    proxied: tuple[Endpoints, TcpProxy, TcpProxy, ThrottlingProxy], tmp_path: Path
) -> None:
    """Workers and client talk to Azurite and the Cosmos server through the proxies; mid-run
    both cut every connection and refuse new ones for 3 s, then let them through again."""
    endpoints, queue, cosmos, relay = proxied
    blueprint = chain("cut", *([0.3] * 6))
    async with _session(endpoints, blueprint, tmp_path, lease=4.0) as (s, workers):
        workers.start()
        workers.start()
        handles = [await s.start("cut", "in") for _ in range(6)]
        journal = workers.journal
        await until("the runs are under way", 60, lambda: journal.finished() >= 8)
        aborted = await queue.cut() + await cosmos.cut()
        await asyncio.sleep(3.0)
        await queue.resume()
        await cosmos.resume()
        results = await _results(s, handles, 60)  # no reconciler: the workers alone
        await _nothing_left(s)
    print(f"aborted {aborted} connections; {queue.accepted} queue and {cosmos.accepted} "
          f"Cosmos connections in all, {relay.passed} Cosmos requests")  # fmt: skip
    # The Cosmos traffic went through the proxy, not around it (endpoint discovery): at least
    # two requests a step (36 steps; ~5 a step in all with run-ahead, queue included).
    assert relay.passed >= 2 * 36
    for result in results:
        check_run(result, blueprint, journal, "in")
    assert workers.log_lines("PermanentBackendError") == 0  # a cut is never permanent


# ------------------------------------------------------------------ throttling


class ThrottlingProxy:
    """An HTTP(S) reverse proxy on loopback that answers some requests itself, as a throttled
    service does, without passing them on (a throttled request is not executed).

    Cosmos DB: 429 with ``x-ms-retry-after-ms`` and substatus 3200 (request rate too large);
    Queue Storage: 503 ``ServerBusy``. TLS ends here with the local Cosmos server's own
    certificate (signed by the CA the clients trust), so the SDKs' retry policies see the
    throttling responses as they would from the service. The Cosmos DB SDK sends its requests
    to the endpoints the database account lists (endpoint discovery), so the proxy lists
    itself there; else all but the first few requests would go around it.
    """

    _HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})

    def __init__(
        self, target: str, *, tls_dir: Path | None, share: float, paths: str, cosmos: bool
    ) -> None:
        self.target = target.rstrip("/")
        self.tls_dir = tls_dir
        self.share = share
        self.paths = paths
        self.cosmos = cosmos
        self.port = 0
        #: The port the account's endpoints are rewritten to (default: this proxy's).
        self.advertised: int | None = None
        self.passed = 0
        self.throttled = 0
        #: Share of the matching requests owed a refusal: every 1/share-th one is refused, so
        #: the count does not depend on the order the workers' requests happen to arrive in.
        self._owed = 0.0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        client_tls: ssl.SSLContext | bool = False
        server_tls: ssl.SSLContext | None = None
        if self.tls_dir is not None:
            client_tls = ssl.create_default_context(cafile=str(self.tls_dir / "ca.pem"))
            server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_tls.load_cert_chain(self.tls_dir / "cert.pem", self.tls_dir / "key.pem")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=client_tls), auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )  # fmt: skip
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_tls)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def _refusal(self) -> web.Response:
        self.throttled += 1
        if self.cosmos:
            body = json.dumps({"code": "429", "message": "Request rate is large (injected)"})
            headers = {"x-ms-retry-after-ms": "25", "x-ms-substatus": "3200",
                       "x-ms-activity-id": str(uuid.uuid4())}  # fmt: skip
            return web.Response(status=429, text=body, content_type="application/json",
                                headers=headers)  # fmt: skip
        body = ('<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
                "<Message>The server is busy (injected).</Message></Error>")  # fmt: skip
        return web.Response(status=503, text=body, content_type="application/xml",
                            headers={"x-ms-error-code": "ServerBusy"})  # fmt: skip

    async def _handle(self, request: web.Request) -> web.Response:
        if self.paths in request.path:
            self._owed += self.share
            if self._owed >= 1.0:
                self._owed -= 1.0
                return self._refusal()
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in self._HOP}
        data = await request.read()
        async with self._session.request(  # headers as sent: Shared Key signs some of them
            request.method, self.target + request.path_qs, headers=headers,
            data=data or None, allow_redirects=False,
            skip_auto_headers=[h for h in ("Content-Type", "User-Agent", "Accept-Encoding")
                               if h not in request.headers],
        ) as upstream:  # fmt: skip
            body = await upstream.read()
            back = [(k, v) for k, v in upstream.headers.items() if k.lower() not in self._HOP]
        if self.cosmos and request.path == "/":  # the account's regional endpoints: this proxy
            body = body.replace(
                self.target.split("//")[1].encode(),
                f"127.0.0.1:{self.advertised or self.port}".encode(),
            )
        self.passed += 1
        response = web.Response(status=upstream.status, body=body)
        for key, value in back:
            response.headers.add(key, value)
        return response

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


async def test_throttled_requests_are_retried_as_the_sdks_advise(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    """A quarter of the Cosmos DB item requests answered 429 (retry after 25 ms) and a fifth of
    the queue's message requests 503 ServerBusy, for workers and client alike: the SDKs retry
    them; every run completes with each step committed once, nothing is left queued. (s1
    outlasts ``COPY_AFTER``: its message, held back by the worker running it ahead, is sent.)"""
    queue_port = int(endpoints.queue_connection_string.split("QueueEndpoint=http://127.0.0.1:")[1]
                     .split("/")[0])  # fmt: skip
    cosmos = ThrottlingProxy(endpoints.cosmos_url, tls_dir=Path(endpoints.cosmos_ca_file).parent,
                             share=0.25, paths="/docs", cosmos=True)  # fmt: skip
    queue = ThrottlingProxy(f"http://127.0.0.1:{queue_port}", tls_dir=None, share=0.2,
                            paths="/messages", cosmos=False)  # fmt: skip
    await cosmos.start()
    await queue.start()
    try:
        through = Endpoints(
            endpoints.queue_connection_string.replace(f"127.0.0.1:{queue_port}/",
                                                      f"127.0.0.1:{queue.port}/"),
            f"https://127.0.0.1:{cosmos.port}", endpoints.cosmos_key, endpoints.cosmos_ca_file,
            endpoints.redis_url,
        )  # fmt: skip
        blueprint = chain("throttled", 0.05, COPY_AFTER + 0.1, 0.05, 0.05, 0.05)
        async with _session(through, blueprint, tmp_path, lease=4.0) as (s, workers):
            workers.start()
            workers.start()
            handles = [await s.start("throttled", "in") for _ in range(6)]
            results = await _results(s, handles, 90)
            await _nothing_left(s, 20)
            journal = workers.journal
    finally:
        await cosmos.close()
        await queue.close()
    print(f"Cosmos: {cosmos.throttled} throttled, {cosmos.passed} passed; queue: "
          f"{queue.throttled} throttled, {queue.passed} passed")  # fmt: skip
    assert cosmos.throttled >= 30  # one in four of >= 120 item requests (30 steps and more)
    assert queue.throttled >= 5  # one in five of >= 30 (6 runs: sends, s1's copies, deletes)
    for result in results:
        check_run(result, blueprint, journal, "in")
        for node in [n.id for n in blueprint.nodes]:  # a 429 is never a lost answer
            assert len(journal.steps(result.run_id, node)) == 1, node
    assert workers.log_lines("PermanentBackendError") == 0
