"""Faults specific to Kafka + Cassandra, end to end with worker *processes*.

Workers run as ``flowcraft worker --backend kafka`` processes (``python -m flowcraft.core``); the
test process is the client (it never joins the consumer group). A worker SIGKILLed mid-node,
the consumer group changing mid-run (a worker joins, then one leaves: partitions move between
processes with deliveries in flight), and poison messages. Each test checks that every run
completes, that nothing is committed twice (each node's committed output, its context write
and what the next node received carry the ticket of one and the same execution) and that
nothing is lost (the group's committed offsets reach the end of the jobs topic).

The worker processes import this module for their nodes (``--registry
test_faults_kafka:REGISTRY``); every execution of ``fault.step`` appends a line to a journal
file (``FLOWCRAFT_FAULT_JOURNAL``), which is how the test counts executions across processes.
Restarts of the shared Kafka and Cassandra servers are not here: see the package README.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from flowcraft.core import (
    Blueprint,
    DistributedRunHandle,
    NodeContext,
    RunResult,
    RunStatus,
    dump_blueprint,
    parse_blueprint,
)
from flowcraft.core.ports import Message
from flowcraft.core.testing.harness import Harness, Session
from flowcraft.core.testing.nodes import registry as suite_registry
from flowcraft.kafka import KafkaAdapter, KafkaBackend

#: Worker processes and SIGKILL: runs alone, after the parallel part (see hatch.toml).
pytestmark = pytest.mark.exclusive

HERE = Path(__file__).resolve().parent
JOURNAL_ENV = "FLOWCRAFT_FAULT_JOURNAL"
KEYSPACE = "flowcraft_tests"
PARTITIONS = 4


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
    nodes = [
        {"id": f"s{i}", "uses": "fault.step", "params": {"seconds": s}}
        for i, s in enumerate(seconds)
    ]
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
        return [
            e
            for e in self.entries()
            if e.get("run") == run_id and e.get("node") == node and e.get("phase") == phase
        ]


def _check_run(result: RunResult, blueprint: Blueprint, journal: Journal, first: object) -> None:
    """Completed; every step committed once: one execution's ticket everywhere it shows."""
    assert result.status is RunStatus.COMPLETED, result
    chain = [node.id for node in blueprint.nodes]
    assert set(result.outputs) == set(chain)
    before = first
    for node in chain:
        output = result.outputs[node]
        finished = {e["ticket"] for e in journal.steps(result.run_id, node, "finished")}
        assert output["ticket"] in finished, (node, output, finished)  # a real execution's
        assert output["after"] == before, (node, output, before)  # what the next one saw
        assert result.context[f"t_{node}"] == output["ticket"]  # its context write, the same
        before = output["ticket"]
    assert result.output == result.outputs[chain[-1]]


# ------------------------------------------------------------------ worker processes


@dataclass
class Workers:
    """``flowcraft worker --backend kafka`` processes on one namespace (logs in ``tmp``)."""

    tmp: Path
    journal: Journal
    factory: KafkaBackend
    namespace: str
    blueprint: Path
    lease: float
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, "PYTHONPATH": path, JOURNAL_ENV: str(self.journal.path)}

    def start(self) -> subprocess.Popen[bytes]:
        """One more worker process."""
        f = self.factory
        command = [
            sys.executable, "-m", "flowcraft.core", "worker", "--backend", "kafka",
            "--option", f"bootstrap_servers={f.bootstrap_servers}",
            "--option", f"cassandra_contact_points={f.contact_points}",
            "--option", f"redis_url={f.redis_url}", "--option", f"keyspace={KEYSPACE}",
            "--option", f"partitions={PARTITIONS}",
            "--namespace", self.namespace, "--registry", "test_faults_kafka:REGISTRY",
            "--blueprint", str(self.blueprint), "--lease", str(self.lease),
        ]  # fmt: skip
        log = self.tmp / f"worker{len(self.logs)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env())
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    async def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL: no ack, no commit, no lease renewal, no goodbye to the group."""
        os.kill(proc.pid, signal.SIGKILL)
        assert await _exited(proc, 10) == -signal.SIGKILL

    async def terminate(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM: the worker drains, commits and leaves the group."""
        proc.send_signal(signal.SIGTERM)
        assert await _exited(proc, 30) == 0

    async def stop(self) -> None:
        """SIGTERM every live worker, SIGKILL what lingers; print the logs."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            if await _exited(proc, 30) is None:
                proc.kill()
                await _exited(proc, 10)
        for log in self.logs:  # shown by pytest when the test fails
            print(f"---- {log.name}\n{log.read_text(errors='replace')[-6000:]}")


async def _exited(proc: subprocess.Popen[bytes], seconds: float) -> int | None:
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return proc.poll()


@pytest.fixture
def factory(
    kafka_bootstrap: str, cassandra_contact: tuple[str, int], redis_url: str
) -> KafkaBackend:
    host, port = cassandra_contact
    return KafkaBackend(bootstrap_servers=kafka_bootstrap,
                        cassandra_contact_points=f"{host}:{port}", redis_url=redis_url,
                        partitions=PARTITIONS, keyspace=KEYSPACE)  # fmt: skip


@contextlib.asynccontextmanager
async def _session(
    factory: KafkaBackend, blueprint: Blueprint, tmp: Path, *, lease: float
) -> AsyncIterator[tuple[Session, Workers]]:
    """A fresh namespace (destroyed afterwards), no worker yet; this process is the client."""
    path = tmp / f"{blueprint.id}.yaml"
    path.write_text(dump_blueprint(blueprint, format="yaml"))
    async with Harness(factory).session(blueprint, workers=0, registry=REGISTRY) as s:
        namespace = s.backend.extra["namespace"]
        workers = Workers(tmp, Journal(tmp / "journal.jsonl"), factory, namespace, path, lease)
        try:
            yield s, workers
        finally:
            await workers.stop()


async def _until(what: str, seconds: float, predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.05)


async def _results(handles: Sequence[DistributedRunHandle], seconds: float) -> list[RunResult]:
    return list(await asyncio.gather(*(h.result(timeout=seconds) for h in handles)))


def _lag(factory: KafkaBackend, queue: KafkaAdapter) -> int:
    """Messages of the jobs topic past the workers' group's committed offsets."""
    reader = Consumer({"bootstrap.servers": factory.bootstrap_servers,
                       "group.id": queue.group_id})  # fmt: skip
    try:
        parts = [TopicPartition(queue.names.jobs, p) for p in range(PARTITIONS)]
        committed = {tp.partition: tp.offset for tp in reader.committed(parts, timeout=10)}
        lag = 0
        for tp in parts:
            low, high = reader.get_watermark_offsets(tp, timeout=10)
            done = committed[tp.partition] if committed[tp.partition] >= 0 else low
            lag += high - done
        return lag
    finally:
        reader.close()


async def _nothing_left(factory: KafkaBackend, session: Session, seconds: float = 15) -> None:
    """Eventually every message of the jobs topic is settled and committed."""
    queue = session.backend.queue
    assert isinstance(queue, KafkaAdapter)
    deadline = time.monotonic() + seconds
    while (lag := await asyncio.to_thread(_lag, factory, queue)) != 0:
        assert time.monotonic() < deadline, f"{lag} messages never committed by the group"
        await asyncio.sleep(0.2)


# ------------------------------------------------------------------ tests


async def test_a_worker_process_killed_mid_node(factory: KafkaBackend, tmp_path: Path) -> None:
    """SIGKILLed while three runs sleep in s1 (3 s): the group drops the member after its
    session timeout, another process gets its partitions, the leases have run out, s1 runs
    again there and the runs finish."""
    blueprint = _chain("sigkill", 0.1, 3.0, 0.1)
    async with _session(factory, blueprint, tmp_path, lease=2.0) as (s, workers):
        victim = workers.start()
        handles = [await s.start("sigkill", "in") for _ in range(3)]
        runs = [h.run_id for h in handles]
        journal = workers.journal
        await _until("s1 runs in the victim for every run", 60,
                     lambda: all(journal.steps(r, "s1") for r in runs))  # fmt: skip
        await asyncio.sleep(0.3)  # mid-node
        await workers.kill(victim)
        assert not any(journal.steps(r, "s1", "finished") for r in runs)
        rescuer = workers.start()
        results = await _results(handles, 60)
        await _nothing_left(factory, s)
    for result in results:
        _check_run(result, blueprint, journal, "in")
        s1 = journal.steps(result.run_id, "s1")
        assert [e["pid"] for e in s1] == [victim.pid, rescuer.pid]  # ran again, elsewhere
        for node in ("s0", "s2"):  # finished work is never run again
            assert len(journal.steps(result.run_id, node)) == 1


async def test_the_group_changes_mid_run(factory: KafkaBackend, tmp_path: Path) -> None:
    """Two workers; a third joins while nodes run, then one of the first leaves (SIGTERM):
    partitions move with deliveries in flight, and every run still completes, once."""
    blueprint = _chain("regroup", 0.5, 0.5, 0.5, 0.5)
    async with _session(factory, blueprint, tmp_path, lease=3.0) as (s, workers):
        first, _second = workers.start(), workers.start()
        handles = [await s.start("regroup", i) for i in range(8)]
        journal = workers.journal
        await _until("the runs are under way", 60,
                     lambda: any(journal.steps(h.run_id, "s1") for h in handles))  # fmt: skip
        workers.start()  # joins: a rebalance with work in flight
        await asyncio.sleep(1.5)
        await workers.terminate(first)  # leaves: another rebalance
        results = await _results(handles, 90)
        await _nothing_left(factory, s)
    for index, result in enumerate(results):
        _check_run(result, blueprint, journal, index)


async def test_poison_messages_are_dead_lettered_and_the_worker_goes_on(
    factory: KafkaBackend, tmp_path: Path
) -> None:
    """Undecodable bodies go to the dead-letter topic with their reason; runs still complete."""
    blueprint = _chain("poison", 0.1, 0.1)
    async with _session(factory, blueprint, tmp_path, lease=3.0) as (s, workers):
        workers.start()
        assert s.backend.inject is not None
        poison = [Message(id=f"poison-{i}", body=b"\xff not a job") for i in range(2)]
        for message in poison:
            await s.backend.inject(message)
        handles = [await s.start("poison", "in") for _ in range(2)]
        results = await _results(handles, 60)
        deadline = time.monotonic() + 30
        while len(dead := await s.backend.dead_letters()) < len(poison):
            assert time.monotonic() < deadline, f"dead-lettered so far: {dead}"
            await asyncio.sleep(0.2)
        await _nothing_left(factory, s)
    assert sorted(message_id for message_id, _ in dead) == ["poison-0", "poison-1"]
    assert all(reason for _, reason in dead)
    for result in results:
        _check_run(result, blueprint, workers.journal, "in")
