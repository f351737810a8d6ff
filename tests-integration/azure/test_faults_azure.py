"""Faults specific to Azure Queue Storage + Cosmos DB, end to end with worker processes.

Workers run as ``flowcraft worker --backend azure`` processes (``python -m flowcraft.core``) on
a 2 s visibility timeout; the test process is the client. A worker SIGKILLed mid-node, and
every connection to Azurite and to the Cosmos server cut for 3 s mid-run (TCP proxies the
test starts in front of them: both keep their state in memory, so neither is restarted).
Each test checks that every run completes, that nothing is committed twice (each node's
committed output, its context write and what the next node received carry the ticket of one
and the same execution) and that nothing is left in the jobs queue.

The worker processes import this module for their nodes (``--registry
test_faults_azure:REGISTRY``); every execution of ``fault.step`` leaves a line in a journal
file (``FLOWCRAFT_FAULT_JOURNAL``), which is how the test counts executions across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from flowcraft.azure import AzureBackend
from flowcraft.core import (
    Blueprint,
    DistributedRunHandle,
    NodeContext,
    RunResult,
    RunStatus,
    dump_blueprint,
    parse_blueprint,
)
from flowcraft.core.testing.harness import Harness, Session
from flowcraft.core.testing.nodes import registry as suite_registry

#: Cuts the connections of shared servers: runs alone, after the parallel part.
pytestmark = pytest.mark.exclusive

HERE = Path(__file__).resolve().parent
VISIBILITY = 2
JOURNAL_ENV = "FLOWCRAFT_FAULT_JOURNAL"


# ------------------------------------------------------------------ nodes (worker processes)


def _note(entry: Mapping[str, object]) -> None:
    """Append one line to the journal (one ``write`` with O_APPEND: whole lines, any process)."""
    line = (json.dumps({**entry, "pid": os.getpid(), "at": time.time()}) + "\n").encode()
    fd = os.open(os.environ[JOURNAL_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


async def step(ctx: NodeContext) -> dict[str, object]:
    """A non-idempotent step: a fresh ticket per execution, in its output and the context."""
    ticket = f"{ctx.node_id}/{os.getpid()}/{ctx.attempt}/{uuid.uuid4().hex[:8]}"
    where = {"run": ctx.run_id, "node": ctx.node_id, "ticket": ticket}
    _note({**where, "phase": "started"})
    await asyncio.sleep(float(ctx.params.get("seconds", 0)))
    ctx.context.set(f"t_{ctx.node_id}", ticket)
    _note({**where, "phase": "finished"})
    after = ctx.input.get("ticket") if isinstance(ctx.input, dict) else ctx.input
    return {"ticket": ticket, "after": after}


#: The worker processes' registry: the suite's nodes and ``fault.step``.
REGISTRY: dict[str, object] = {**suite_registry(), "fault.step": step}


def _chain(blueprint_id: str, *seconds: float) -> Blueprint:
    """``s0 -> s1 -> ...``, step ``i`` sleeping ``seconds[i]``."""
    nodes = [{"id": f"s{i}", "uses": "fault.step", "params": {"seconds": s}}
             for i, s in enumerate(seconds)]  # fmt: skip
    edges = [{"source": f"s{i}", "target": f"s{i + 1}"} for i in range(len(seconds) - 1)]
    data = {"id": blueprint_id, "version": "1", "nodes": nodes, "edges": edges}
    return parse_blueprint(data, registry=REGISTRY)


@dataclass
class Journal:
    """The executions of ``fault.step`` every process noted."""

    path: Path

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def steps(self, run_id: str, node: str, phase: str = "started") -> list[dict[str, Any]]:
        wanted = {"run": run_id, "node": node, "phase": phase}
        return [e for e in self.entries() if all(e.get(k) == v for k, v in wanted.items())]

    def finished(self) -> int:
        return sum(e.get("phase") == "finished" for e in self.entries())


def _check_run(result: RunResult, blueprint: Blueprint, journal: Journal, first: object) -> None:
    """Completed; every step committed once: one execution's ticket everywhere it shows."""
    assert result.status is RunStatus.COMPLETED, result
    before = first
    for node in [n.id for n in blueprint.nodes]:
        output = result.outputs[node]
        finished = {e["ticket"] for e in journal.steps(result.run_id, node, "finished")}
        assert output["ticket"] in finished, (node, output, finished)
        assert output["after"] == before, (node, output, before)
        assert result.context[f"t_{node}"] == output["ticket"]
        before = output["ticket"]


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

    def factory(self) -> AzureBackend:
        return AzureBackend(**self.options(), visibility_timeout=VISIBILITY,
                            max_poll_interval=0.25)  # fmt: skip


@pytest.fixture
def endpoints(
    azure_queue_connection_string: str, cosmos_endpoint: dict[str, str], redis_url: str
) -> Endpoints:
    return Endpoints(azure_queue_connection_string, cosmos_endpoint["url"],
                     cosmos_endpoint["key"], cosmos_endpoint["ca_file"], redis_url)  # fmt: skip


@dataclass
class Workers:
    """``flowcraft worker --backend azure`` processes on one namespace (logs in ``tmp``)."""

    tmp: Path
    journal: Journal
    endpoints: Endpoints
    namespace: str
    blueprint: Path
    lease: float
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start(self) -> subprocess.Popen[bytes]:
        options = [f"{k}={v}" for k, v in self.endpoints.options().items()]
        options += [f"visibility_timeout={VISIBILITY}", "max_poll_interval=0.25"]
        command = [sys.executable, "-m", "flowcraft.core", "worker", "--backend", "azure",
                   *[a for o in options for a in ("--option", o)],
                   "--namespace", self.namespace, "--registry", "test_faults_azure:REGISTRY",
                   "--blueprint", str(self.blueprint), "--lease", str(self.lease)]  # fmt: skip
        path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONPATH": path, JOURNAL_ENV: str(self.journal.path)}
        log = self.tmp / f"worker{len(self.logs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    async def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL: no ack, no nack, no lease renewal, no goodbye."""
        os.kill(proc.pid, signal.SIGKILL)
        assert await _exited(proc, 10) == -signal.SIGKILL

    async def stop(self) -> None:
        """SIGTERM every live worker, SIGKILL what lingers; print the logs."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            if await _exited(proc, 20) is None:
                proc.kill()
                await _exited(proc, 10)
        for log in self.logs:  # shown by pytest when the test fails
            print(f"---- {log.name}\n{log.read_text(errors='replace')[-6000:]}")

    def log_lines(self, needle: str) -> int:
        return sum(log.read_text(errors="replace").count(needle) for log in self.logs)


async def _exited(proc: subprocess.Popen[bytes], seconds: float) -> int | None:
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # never block the loop: the proxies run in it
    return proc.poll()


@contextlib.asynccontextmanager
async def _session(
    endpoints: Endpoints, blueprint: Blueprint, tmp: Path, *, lease: float
) -> AsyncIterator[tuple[Session, Workers]]:
    """A fresh namespace (destroyed afterwards), no worker yet."""
    path = tmp / f"{blueprint.id}.yaml"
    path.write_text(dump_blueprint(blueprint, format="yaml"))
    async with Harness(endpoints.factory()).session(blueprint, workers=0, registry=REGISTRY) as s:
        namespace = s.backend.extra["namespace"]
        workers = Workers(tmp, Journal(tmp / "journal.jsonl"), endpoints, namespace, path, lease)
        try:
            yield s, workers
        finally:
            await workers.stop()


async def _until(what: str, seconds: float, predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.05)


async def _results(
    session: Session, handles: Sequence[DistributedRunHandle], seconds: float
) -> list[RunResult]:
    """Every run's final result within ``seconds``; else fail, saying where the rest stand."""
    deadline = time.monotonic() + seconds

    async def one(handle: DistributedRunHandle) -> RunResult | None:
        try:
            return await handle.result(timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            return None

    found = await asyncio.gather(*(one(h) for h in handles))
    if all(r is not None for r in found):
        return [r for r in found if r is not None]
    lines = [f"runs unfinished after {seconds} s"]
    for handle, result in zip(handles, found, strict=True):
        if result is None:
            state = await session.backend.store.load_state(handle.run_id)
            assert state is not None
            nodes = {json.loads(k)[-1]: v.get("status") for k, v in sorted(state.records.items())
                     if k.startswith('["n"') and isinstance(v, dict)}  # fmt: skip
            lines.append(f"run {handle.run_id}: v{state.version}, nodes {nodes}, "
                         f"outbox {[m.id for m in state.outbox]}")  # fmt: skip
    lines.append(f"jobs queue: {await _queued(session)} messages")
    pytest.fail("\n".join(lines))


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
    timeout, the leases run out, another worker process runs s1 again and finishes."""
    blueprint = _chain("sigkill", 0.1, 3.0, 0.1)
    async with _session(endpoints, blueprint, tmp_path, lease=2.0) as (s, workers):
        victim = workers.start()
        handles = [await s.start("sigkill", "in") for _ in range(3)]
        runs = [h.run_id for h in handles]
        journal = workers.journal
        await _until("s1 runs in the victim for every run", 60,
                     lambda: all(journal.steps(r, "s1") for r in runs))  # fmt: skip
        await asyncio.sleep(0.3)
        await workers.kill(victim)
        assert not any(journal.steps(r, "s1", "finished") for r in runs)
        rescuer = workers.start()
        results = await _results(s, handles, 60)
        await _nothing_left(s)
    for result in results:
        _check_run(result, blueprint, journal, "in")
        s1 = journal.steps(result.run_id, "s1")
        assert [e["pid"] for e in s1] == [victim.pid, rescuer.pid]  # ran again, elsewhere
        assert result.outputs["s1"]["ticket"].split("/")[1] == str(rescuer.pid)
        for node in ("s0", "s2"):  # finished work is never run again
            assert len(journal.steps(result.run_id, node)) == 1


# ------------------------------------------------------------------ connections cut


class Proxy:
    """A TCP proxy on loopback (asyncio streams, in the test's loop); TLS passes through.

    ``cut()`` aborts every connection (both sides, no goodbye) and stops listening, so new
    connections are refused; ``resume()`` listens on the same port again.
    """

    def __init__(self, port: int) -> None:
        self.target_port = port
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        pair = (writer, up_writer)
        self._open.add(pair)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._open.discard(pair)
            writer.transport.abort()
            up_writer.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    async def cut(self) -> int:
        """Refuse new connections and abort the open ones; how many were aborted."""
        assert self._server is not None
        self._server.close()
        pairs, self._open = list(self._open), set()
        for client_side, server_side in pairs:
            client_side.transport.abort()
            server_side.transport.abort()
        await asyncio.sleep(0)
        return len(pairs)

    async def close(self) -> None:
        if self._server is not None:
            await self.cut()
            await self._server.wait_closed()


@pytest.fixture
async def proxied(
    endpoints: Endpoints,
) -> AsyncIterator[tuple[Endpoints, Proxy, Proxy, ThrottlingProxy]]:
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
    queue, cosmos = Proxy(queue_port), Proxy(relay.port)
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
    proxied: tuple[Endpoints, Proxy, Proxy, ThrottlingProxy], tmp_path: Path
) -> None:
    """Workers and client talk to Azurite and the Cosmos server through the proxies; mid-run
    both cut every connection and refuse new ones for 3 s, then let them through again."""
    endpoints, queue, cosmos, relay = proxied
    blueprint = _chain("cut", *([0.3] * 6))
    async with _session(endpoints, blueprint, tmp_path, lease=4.0) as (s, workers):
        workers.start()
        workers.start()
        handles = [await s.start("cut", "in") for _ in range(6)]
        journal = workers.journal
        await _until("the runs are under way", 60, lambda: journal.finished() >= 8)
        aborted = await queue.cut() + await cosmos.cut()
        await asyncio.sleep(3.0)
        await queue.start()
        await cosmos.start()
        results = await _results(s, handles, 60)  # no reconciler: the workers alone
        await _nothing_left(s)
    print(f"aborted {aborted} connections; {queue.accepted} queue and {cosmos.accepted} "
          f"Cosmos connections in all, {relay.passed} Cosmos requests")  # fmt: skip
    assert relay.passed >= 200  # the Cosmos traffic went through the proxy, not around it
    for result in results:
        _check_run(result, blueprint, journal, "in")
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
        self._random = random.Random(17)  # which requests, not security
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
        if self.paths in request.path and self._random.random() < self.share:
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
    """A quarter of the Cosmos DB item requests answered 429 (retry after 25 ms) and a tenth of
    the queue's message requests 503 ServerBusy, for workers and client alike: the SDKs retry
    them; every run completes with each step committed once, nothing is left queued."""
    queue_port = int(endpoints.queue_connection_string.split("QueueEndpoint=http://127.0.0.1:")[1]
                     .split("/")[0])  # fmt: skip
    cosmos = ThrottlingProxy(endpoints.cosmos_url, tls_dir=Path(endpoints.cosmos_ca_file).parent,
                             share=0.25, paths="/docs", cosmos=True)  # fmt: skip
    queue = ThrottlingProxy(f"http://127.0.0.1:{queue_port}", tls_dir=None, share=0.1,
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
        blueprint = _chain("throttled", *([0.05] * 5))
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
    assert cosmos.throttled >= 50
    assert queue.throttled >= 5
    for result in results:
        _check_run(result, blueprint, journal, "in")
        for node in [n.id for n in blueprint.nodes]:  # a 429 is never a lost answer
            assert len(journal.steps(result.run_id, node)) == 1, node
    assert workers.log_lines("PermanentBackendError") == 0
