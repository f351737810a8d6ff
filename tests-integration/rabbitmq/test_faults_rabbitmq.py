"""Faults specific to RabbitMQ + PostgreSQL: a broker restart, a dropped database connection, and
a worker process killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from flowcraft.core import RunStatus
from flowcraft.core._distributed.sender import COPY_AFTER
from flowcraft.core.ports import AttemptClaim, RunStore
from flowcraft.core.testing.faults import process_session, until
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.nodes import LOG
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.rabbitmq import RabbitMqBackend

#: Restarts or disturbs shared servers (or kills their connections): runs alone, after the
#: parallel part of the integration run (see hatch.toml).
pytestmark = pytest.mark.exclusive

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def backend(rabbitmq_url: str, postgres_url: str, redis_url: str) -> RabbitMqBackend:
    return RabbitMqBackend(amqp_url=rabbitmq_url, postgres_dsn=postgres_url, redis_url=redis_url)


def _chain(blueprint_id: str, seconds: float) -> object:
    nodes = [n(f"s{i}", "sleep", seconds=seconds) for i in range(5)]
    edges = [e(f"s{i}", f"s{i + 1}") for i in range(4)]
    start = n("start", "write", writes={"k": 1}, value=7)
    return bp(blueprint_id, [start, *nodes, n("end", "inc")],
              [e("start", "s0"), *edges, e("s4", "end")])  # fmt: skip


async def test_broker_restart_while_runs_are_in_flight(backend: RabbitMqBackend) -> None:
    async with Harness(backend).session(_chain("restart", 0.3), workers=2) as s:  # type: ignore[arg-type]
        handles = [await s.start("restart", None) for _ in range(6)]
        await asyncio.sleep(0.8)
        restart = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "tools" / "services"), "restart", "--only", "rabbitmq",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert await restart.wait() == 0
        results = [await h.result(timeout=120) for h in handles]
    assert {r.status for r in results} == {RunStatus.COMPLETED}
    assert {r.output for r in results} == {8}
    assert all(r.context == {"k": 1} for r in results)
    assert all(set(r.outputs) == {"start", "s0", "s1", "s2", "s3", "s4", "end"} for r in results)


async def test_postgres_connections_dropped_mid_run(
    backend: RabbitMqBackend, postgres_url: str
) -> None:
    async with Harness(backend).session(_chain("pgdrop", 0.2), workers=2) as s:  # type: ignore[arg-type]
        handles = [await s.start("pgdrop", None) for _ in range(4)]
        await asyncio.sleep(0.5)
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
            cur = await admin.execute(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()) t"
            )
            row = await cur.fetchone()
        assert row is not None
        assert row[0] > 0  # the store's connections really went away
        results = [await h.result(timeout=120) for h in handles]
    assert {r.status for r in results} == {RunStatus.COMPLETED}
    assert {r.output for r in results} == {8}


async def _running(store: RunStore, run_id: str, node_id: str) -> bool:
    stored = await store.load_state(run_id)
    key = json.dumps(["n", "", node_id], separators=(",", ":"))
    record = stored.records.get(key) if stored else None
    return isinstance(record, dict) and record.get("status") == "running"


@pytest.mark.parametrize("copy_after", [None, 0.0])
async def test_worker_process_killed_with_sigkill(
    tmp_path: Path, rabbitmq_url: str, postgres_url: str, redis_url: str, copy_after: float | None
) -> None:
    """Killed in B, which it runs ahead, once B's message is out: held back ``COPY_AFTER``
    seconds by default (killed after that), sent right after the save with ``--copy-after 0``
    (killed 0.1 s in, long before the default would have sent it)."""
    blueprint = bp("sigkill", [n("A", "const", value=1), n("B", "sleep", seconds=2.0),
                               n("C", "inc", inputs="A")], [e("A", "B"), e("B", "C")])  # fmt: skip
    options = {"amqp_url": rabbitmq_url, "postgres_dsn": postgres_url, "redis_url": redis_url}
    async with process_session("rabbitmq", options, blueprint, tmp_path, lease=2) as (s, workers):
        if copy_after is None:
            worker, wait = workers.start(), COPY_AFTER + 0.5
        else:
            worker = workers.start([*workers.command(), "--copy-after", str(copy_after)])
            wait = 0.1
        handle = await s.start("sigkill")
        await until("the worker process runs B", 30,
                    lambda: _running(s.backend.store, handle.run_id, "B"))  # fmt: skip
        await asyncio.sleep(wait)  # B's message is out
        await workers.kill(worker)
        await s.start_workers(1, lease=2.0)
        result = await handle.result(timeout=60)
    assert result.status is RunStatus.COMPLETED
    assert result.output == 2


async def test_a_worker_runs_the_next_steps_ahead_once_each(backend: RabbitMqBackend) -> None:
    """The next attempts of a run go ahead on the worker that decided them (their leases come
    with the save, so they are never claimed separately), each body runs once, and the sticky
    messages sent for them are settled: nothing is left in the queues afterwards."""
    blueprint = bp(
        "ahead",
        [n("A", "const", value=1), n("B", "inc", inputs="A"), n("C", "inc"), n("D", "inc")],
        [e("A", "B"), e("B", "C"), e("A", "D")],
    )
    async with Harness(backend).session(blueprint, workers=1) as s:
        store = s.backend.store
        claimed: list[str] = []
        claim = store.claim_attempt

        async def counting(run_id: str, attempt: str, owner: str, lease: float) -> AttemptClaim:
            claimed.append(attempt)
            return await claim(run_id, attempt, owner, lease)

        store.claim_attempt = counting  # type: ignore[method-assign]
        results = [await (await s.start("ahead")).result(timeout=30) for _ in range(3)]
        await s.stop()  # unsettled deliveries would go back to the sticky queue...
        await asyncio.sleep(2.5)  # ...and past the sticky timeout on to the jobs queue
        queue = await s.backend.worker_queue()  # type: ignore[misc]
        try:
            assert await queue.receive(10, wait=0.5) == []
        finally:
            await queue.close()
    assert [r.outputs for r in results] == [{"A": 1, "B": 2, "C": 3, "D": 2}] * 3
    assert all(sorted(LOG[r.run_id]) == ["A", "B", "C", "D"] for r in results)
    assert len(claimed) == 3  # only each run's first node (the client sent it): B, C, D went ahead
