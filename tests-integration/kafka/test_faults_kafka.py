"""Faults specific to Kafka + Cassandra, end to end with worker *processes*.

Workers run as ``flowcraft worker --backend kafka`` processes (``python -m flowcraft.core``); the
test process is the client (it never joins the consumer group). A worker SIGKILLed mid-node,
the consumer group changing mid-run (a worker joins, then one leaves: partitions move between
processes with deliveries in flight), and poison messages. Each test checks that every run
completes, that nothing is committed twice (each node's committed output, its context write
and what the next node received carry the ticket of one and the same execution) and that
nothing is lost (the group's committed offsets reach the end of the jobs topic).

The worker processes, journal and ``fault.step`` node are core's
(``flowcraft.core.testing.faults``): the workers load ``--registry
flowcraft.core.testing.faults:REGISTRY``; every execution of ``fault.step`` appends a line to the
journal, which is how the test counts executions across processes.
Restarts of the shared Kafka and Cassandra servers are not here: see the package README.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from flowcraft.core import Blueprint
from flowcraft.core._distributed.sender import COPY_AFTER
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.ports import Message
from flowcraft.core.testing.faults import (
    WorkerProcesses,
    chain,
    check_run,
    process_session,
    until,
)
from flowcraft.core.testing.faults import results as final_results
from flowcraft.core.testing.harness import Session
from flowcraft.kafka import KafkaAdapter
from flowcraft.kafka._errors import kafka_errors

#: Worker processes and SIGKILL: runs alone, after the parallel part (see hatch.toml).
pytestmark = pytest.mark.exclusive

KEYSPACE = "flowcraft_tests"
PARTITIONS = 4
#: Options of the ``kafka`` backend, for the client and the ``flowcraft worker`` processes.
Options = Mapping[str, object]


def kafka_options(bootstrap: str, cassandra: str, redis_url: str) -> Options:
    """The backend's options: these servers, the tests' keyspace, :data:`PARTITIONS`."""
    return {"bootstrap_servers": bootstrap, "cassandra_contact_points": cassandra,
            "redis_url": redis_url, "keyspace": KEYSPACE, "partitions": PARTITIONS}  # fmt: skip


@pytest.fixture
def options(kafka_bootstrap: str, cassandra_contact: tuple[str, int], redis_url: str) -> Options:
    host, port = cassandra_contact
    return kafka_options(kafka_bootstrap, f"{host}:{port}", redis_url)


@contextlib.asynccontextmanager
async def _session(
    options: Options, blueprint: Blueprint, tmp: Path, *, lease: float
) -> AsyncIterator[tuple[Session, WorkerProcesses]]:
    """A fresh namespace (destroyed afterwards), no worker yet; this process is the client."""
    async with process_session("kafka", options, blueprint, tmp, lease=lease,
                               grace=30.0) as (s, workers):  # fmt: skip
        yield s, workers


def _lag(options: Options, queue: KafkaAdapter) -> int | None:
    """Messages of the jobs topic past the workers' group's committed offsets; ``None`` when
    the group's coordinator cannot tell yet (an error the adapter counts as transient: after a
    broker restart the coordinator answers NOT_COORDINATOR or LOAD_IN_PROGRESS a while)."""
    reader = Consumer({"bootstrap.servers": str(options["bootstrap_servers"]),
                       "group.id": queue.group_id})  # fmt: skip
    try:
        parts = [TopicPartition(queue.names.jobs, p) for p in range(PARTITIONS)]
        try:
            with kafka_errors("committed"):
                answer = reader.committed(parts, timeout=10)
        except TransientBackendError:
            return None
        committed = {tp.partition: tp.offset for tp in answer}
        lag = 0
        for tp in parts:
            low, high = reader.get_watermark_offsets(tp, timeout=10)
            done = committed[tp.partition] if committed[tp.partition] >= 0 else low
            lag += high - done
        return lag
    finally:
        reader.close()


async def _nothing_left(options: Options, session: Session, seconds: float = 15) -> None:
    """Eventually every message of the jobs topic is settled and committed."""
    queue = session.backend.queue
    assert isinstance(queue, KafkaAdapter)
    deadline = time.monotonic() + seconds
    while (lag := await asyncio.to_thread(_lag, options, queue)) != 0:
        assert time.monotonic() < deadline, (
            "the group's coordinator never answered" if lag is None
            else f"{lag} messages never committed by the group")  # fmt: skip
        await asyncio.sleep(0.2)


# ------------------------------------------------------------------ tests


async def test_a_worker_process_killed_mid_node(options: Options, tmp_path: Path) -> None:
    """SIGKILLed while three runs sleep in s1 (3 s): the group drops the member after its
    session timeout, another process gets its partitions, the leases have run out, s1 runs
    again there and the runs finish.
    (Killed once s1's message is out: s1 runs ahead in the victim, which holds that message
    back ``COPY_AFTER`` seconds; killed before, the run would wait for the reconciler.)"""
    blueprint = chain("sigkill", 0.1, 3.0, 0.1)
    async with _session(options, blueprint, tmp_path, lease=2.0) as (s, workers):
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
        results = await final_results(handles, 60, store=s.backend.store)
        await _nothing_left(options, s)
    for result in results:
        check_run(result, blueprint, journal, "in")
        s1 = journal.steps(result.run_id, "s1")
        assert [e["pid"] for e in s1] == [victim.pid, rescuer.pid]  # ran again, elsewhere
        for node in ("s0", "s2"):  # finished work is never run again
            assert len(journal.steps(result.run_id, node)) == 1


async def test_the_group_changes_mid_run(options: Options, tmp_path: Path) -> None:
    """Two workers; a third joins while nodes run, then one of the first leaves (SIGTERM):
    partitions move with deliveries in flight, and every run still completes, once."""
    blueprint = chain("regroup", 0.5, 0.5, 0.5, 0.5)
    async with _session(options, blueprint, tmp_path, lease=3.0) as (s, workers):
        first, _second = workers.start(), workers.start()
        handles = [await s.start("regroup", i) for i in range(8)]
        journal = workers.journal
        await until("the runs are under way", 60,
                    lambda: any(journal.steps(h.run_id, "s1") for h in handles))  # fmt: skip
        workers.start()  # joins: a rebalance with work in flight
        await asyncio.sleep(1.5)
        await workers.terminate(first)  # leaves: another rebalance
        results = await final_results(handles, 90, store=s.backend.store)
        await _nothing_left(options, s)
    for index, result in enumerate(results):
        check_run(result, blueprint, journal, index)


async def test_poison_messages_are_dead_lettered_and_the_worker_goes_on(
    options: Options, tmp_path: Path
) -> None:
    """Undecodable bodies go to the dead-letter topic with their reason; runs still complete."""
    blueprint = chain("poison", 0.1, 0.1)
    async with _session(options, blueprint, tmp_path, lease=3.0) as (s, workers):
        workers.start()
        assert s.backend.inject is not None
        poison = [Message(id=f"poison-{i}", body=b"\xff not a job") for i in range(2)]
        for message in poison:
            await s.backend.inject(message)
        handles = [await s.start("poison", "in") for _ in range(2)]
        results = await final_results(handles, 60, store=s.backend.store)
        deadline = time.monotonic() + 30
        while len(dead := await s.backend.dead_letters()) < len(poison):
            assert time.monotonic() < deadline, f"dead-lettered so far: {dead}"
            await asyncio.sleep(0.2)
        await _nothing_left(options, s)
    assert sorted(message_id for message_id, _ in dead) == ["poison-0", "poison-1"]
    assert all(reason for _, reason in dead)
    for result in results:
        check_run(result, blueprint, workers.journal, "in")
