"""The Kafka broker, then Cassandra, restarted mid-run: on *private* servers of the test's own.

The shared servers of ``tools/services`` serve every other test at the same time, so these
tests start a server of their own with the same code (``tools/services``' ``Kafka`` and
``Cassandra`` services, data under ``tmp_path``, free ports), run worker processes against it
(the other servers are the shared ones), and restart it for real mid-run: a controlled
shutdown (SIGTERM), a few seconds down, a start on the same data. Every run completes, each
node is committed once, and the group's committed offsets reach the end of the jobs topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.testing.faults import chain, check_run, until
from flowcraft.core.testing.faults import results as final_results
from flowcraft.core.testing.harness import Session

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))  # the Kafka fault tests' helpers
sys.path.insert(0, str(ROOT / "tools" / "services"))  # the services' own modules

from _base import Paths  # noqa: E402
from _cassandra import Cassandra  # noqa: E402
from _kafka import Kafka  # noqa: E402
from _runner import start, stop  # noqa: E402
from test_faults_kafka import _nothing_left, _session, kafka_options  # noqa: E402

#: Starts JVM servers and worker processes: runs alone, after the parallel part. The services'
#: runner keeps a server's pid, not its Popen object (it stops servers by pid, as we do at the
#: end), so Python's warning about that object being collected while the server runs is moot.
pytestmark = [
    pytest.mark.exclusive,
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in.*Popen.__del__:pytest.PytestUnraisableExceptionWarning"
    ),
]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@contextlib.contextmanager
def _private(service: Any) -> Iterator[Any]:
    start(service)
    try:
        yield service
    finally:
        stop(service)


async def _restart(service: Any, down: float) -> float:
    """Stop (SIGTERM), stay down ``down`` seconds, start on the same data; seconds it took."""
    began = time.monotonic()
    await asyncio.to_thread(stop, service)
    await asyncio.sleep(down)
    await asyncio.to_thread(start, service)
    return time.monotonic() - began


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(state=tmp_path / "services", cache=Paths.default().cache)


@pytest.fixture
async def kafka(paths: Paths, kafka_bootstrap: str) -> AsyncIterator[Kafka]:
    del kafka_bootstrap  # the shared broker answers: the jars and Java are installed
    port, controller = _free_ports(2)
    service = Kafka({"port": port, "controller_port": controller}, paths)
    with _private(service):
        yield service


@pytest.fixture
async def cassandra(paths: Paths, cassandra_contact: tuple[str, int]) -> AsyncIterator[Cassandra]:
    del cassandra_contact  # the shared node answers: the jars and Java are installed
    port, storage, jmx = _free_ports(3)
    service = Cassandra({"port": port, "storage_port": storage, "jmx_port": jmx}, paths)
    await asyncio.to_thread(start, service)
    try:
        yield service
    finally:
        await asyncio.to_thread(stop, service)


async def _reconcile(session: Session) -> None:
    """Reconciler passes every 2 s, going on after a failed one (as ``flowcraft reconcile``)."""
    reconciler = session.reconciler(stalled_after=5.0)
    while True:
        with contextlib.suppress(TransientBackendError):
            await reconciler.run()
        await asyncio.sleep(2.0)


async def test_the_broker_restarted_mid_run(
    kafka: Kafka, cassandra_contact: tuple[str, int], redis_url: str, tmp_path: Path
) -> None:
    host, port = cassandra_contact
    options = kafka_options(f"127.0.0.1:{kafka.port}", f"{host}:{port}", redis_url)
    blueprint = chain("broker", *([0.3] * 6))
    async with _session(options, blueprint, tmp_path, lease=4.0) as (s, workers):
        workers.start()
        workers.start()
        handles = [await s.start("broker", "in") for _ in range(6)]
        journal = workers.journal
        await until("the runs are under way", 60, lambda: journal.finished() >= 8)
        took = await _restart(kafka, down=2.0)
        # No reconciler: the workers alone.
        results = await final_results(handles, 120, store=s.backend.store)
        await _nothing_left(options, s, seconds=30)
    print(f"broker down and back in {took:.1f} s")
    for result in results:
        check_run(result, blueprint, journal, "in")


async def test_cassandra_restarted_mid_run(
    cassandra: Cassandra, kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    options = kafka_options(kafka_bootstrap, f"127.0.0.1:{cassandra.port}", redis_url)
    blueprint = chain("store", *([0.3] * 6))
    async with _session(options, blueprint, tmp_path, lease=4.0) as (s, workers):
        workers.start()
        workers.start()
        handles = [await s.start("store", "in") for _ in range(6)]
        journal = workers.journal
        await until("the runs are under way", 60, lambda: journal.finished() >= 8)
        took = await _restart(cassandra, down=2.0)
        # Jobs that failed on the store all along were retried with backoff, and dead-lettered
        # after max_deliveries if the outage outlasted it: the reconciler (which a deployment
        # runs, ``flowcraft reconcile``) revives those runs from their saved state.
        reconciling = asyncio.create_task(_reconcile(s))
        try:
            results = await final_results(handles, 120, store=s.backend.store)
        finally:
            reconciling.cancel()
        await _nothing_left(options, s, seconds=30)
        dead = await s.backend.dead_letters()
    print(f"Cassandra down and back in {took:.1f} s; dead-lettered meanwhile: {len(dead)}")
    for result in results:
        check_run(result, blueprint, journal, "in")
