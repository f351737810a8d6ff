"""CassandraContext's one-step start and result reads beyond the port contract.

``create_started_run`` is the key's LWT (when there is a key), the listing batch and one
conditional batch in the run's partition; concurrent starts of one run id or one key make one
run; a key left by a start that died before its batch does not block that run id's retry; a
large start goes through the journal. ``read_result`` is two statements sent at once (the
anchor makes both return the run's static columns), and reads a run written before anchors
existed, a pending journal and more keys than one statement takes. The statement counts of
``Client.start`` and ``Client.result`` are measured here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from flowcraft.core import Client, RunStatus
from flowcraft.core.backends import BackendFactory
from flowcraft.core.ports import Message, RunRecord
from flowcraft.core.redis import NotifyingRunStore
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.kafka import CassandraContext, KafkaBackend
from flowcraft.kafka._codec import dumps
from flowcraft.kafka._store import _shard
from flowcraft.kafka._writes import ops_of

_CHAIN = bp("started", [n("A", "const", value=1), n("B", "echo")], [e("A", "B")])
_OUTBOX = (Message(id="m1", body=b"one"), Message(id="m2", body=b"two"))


@pytest.fixture
def flowcraft_backend_factory(
    kafka_bootstrap: str, cassandra_contact: tuple[str, int], redis_url: str
) -> BackendFactory:
    host, port = cassandra_contact
    return KafkaBackend(bootstrap_servers=kafka_bootstrap,
                        cassandra_contact_points=f"{host}:{port}", redis_url=redis_url,
                        partitions=1, keyspace="flowcraft_tests")  # fmt: skip


@pytest.fixture
async def store(flowcraft_backend_factory: KafkaBackend) -> AsyncIterator[CassandraContext]:
    backend = await flowcraft_backend_factory.create(f"s{uuid.uuid4().hex[:10]}")
    assert isinstance(backend.store, NotifyingRunStore)
    assert isinstance(backend.store.inner, CassandraContext)
    yield backend.store.inner
    await flowcraft_backend_factory.destroy(backend)


def _record(run_id: str, **fields: object) -> RunRecord:
    base = RunRecord(run_id=run_id, blueprint_id="bp", blueprint_version="1", blueprint_digest="d")
    return replace(base, **fields)  # type: ignore[arg-type]


async def _start(
    store: CassandraContext, record: RunRecord, *, records: dict[str, object] | None = None,
    outbox: tuple[Message, ...] = _OUTBOX, status: str = "running",
) -> tuple[RunRecord, bool]:  # fmt: skip
    return await store.create_started_run(
        record, header={"v": 2}, records={"a": 1} if records is None else records,
        context={"k": "v"}, outbox=outbox, status=status,
    )  # fmt: skip


def _counts(store: CassandraContext) -> tuple[int, int]:
    return store.cql.statements, store.cql.lwts


async def test_a_start_is_one_listing_batch_and_one_lwt(store: CassandraContext) -> None:
    before = _counts(store)
    _, new = await _start(store, _record("r1"))
    assert new
    statements, lwts = (a - b for a, b in zip(_counts(store), before, strict=True))
    assert (statements, lwts) == (2, 1)  # the listing batch, the conditional batch
    before = _counts(store)
    _, new = await _start(store, _record("r2", idempotency_key="k2"))
    assert new
    assert _counts(store)[0] - before[0] == 3  # and the key's INSERT ... IF NOT EXISTS
    before = _counts(store)
    got = await store.read_result("r1", ["a", "missing"])
    assert _counts(store)[0] - before[0] == 2  # context and records, at once
    assert got is not None
    assert (got.version, got.header, got.records, got.context) == (2, {"v": 2}, {"a": 1},
                                                                   {"k": "v"})  # fmt: skip


async def test_concurrent_starts_of_one_run_make_one(store: CassandraContext) -> None:
    outboxes = [(Message(id=f"m{i}", body=b"x"),) for i in range(8)]
    answers = await asyncio.gather(*(_start(store, _record("r1", input=i), outbox=outboxes[i])
                                     for i in range(8)))  # fmt: skip
    assert sum(new for _, new in answers) == 1
    winner = next(i for i, (_, new) in enumerate(answers) if new)
    assert {record.input for record, _ in answers} == {winner}
    state = await store.load_state("r1")
    assert state is not None
    assert (state.version, state.outbox) == (2, outboxes[winner])


async def test_concurrent_starts_with_one_key_make_one_run(store: CassandraContext) -> None:
    answers = await asyncio.gather(*(_start(store, _record(f"r{i}", idempotency_key="k"))
                                     for i in range(8)))  # fmt: skip
    assert sum(new for _, new in answers) == 1
    assert len({record.run_id for record, _ in answers}) == 1
    winner = answers[0][0].run_id
    for i in range(8):
        assert (await store.get_run(f"r{i}") is None) == (f"r{i}" != winner)


async def test_a_key_left_by_a_start_that_died_does_not_block_its_retry(
    store: CassandraContext,
) -> None:
    """The key was taken, then the starter died before its batch: the same run id goes on."""
    taken = await store.cql.run(store._q.take_key, store.namespace, "k1", "r1")
    assert taken.was_applied
    assert await store.get_run("r1") is None
    record, new = await _start(store, _record("r1", idempotency_key="k1"))
    assert (record.run_id, new) == ("r1", True)
    again, new = await _start(store, _record("r9", idempotency_key="k1"))
    assert (again.run_id, new) == ("r1", False)
    assert await store.get_run("r9") is None
    await store.cql.run(store._q.take_key, store.namespace, "k2", "r2")
    created = await store.create_run(_record("r2", idempotency_key="k2"), {"v": 1})
    assert created.run_id == "r2"  # create_run too
    assert (await store.load_state("r2")) is not None


async def test_a_large_start_goes_through_the_journal(store: CassandraContext) -> None:
    big: dict[str, object] = {f"k{i}": f"value {i} " + "x" * 40 for i in range(2_000)}
    outbox = tuple(Message(id=f"m{i}", body=bytes([i % 256]) * 20) for i in range(300))
    _, new = await _start(store, _record("r1"), records=big, outbox=outbox)
    assert new
    head = (await store.cql.run(store._q.head, store.namespace, "r1")).one()
    assert (head.version, head.journal) == (2, None)  # rolled forward and cleared
    state = await store.load_state("r1")
    assert state is not None
    assert (state.version, state.records, state.context) == (2, big, {"k": "v"})
    assert state.outbox == outbox
    assert (await store.load_state("r1", since=1)).records == big  # type: ignore[union-attr]
    wanted = [f"k{i}" for i in range(0, 2_000, 7)]  # 286 keys: three statements of records
    got = await store.read_result("r1", wanted)
    assert got is not None
    assert got.records == {key: big[key] for key in wanted}


async def test_a_result_is_read_with_a_pending_journal(store: CassandraContext) -> None:
    """A save of version 3 committed its journal and died: the result overlays it."""
    await _start(store, _record("r1"), records={"a": 1, "b": 2})
    big: dict[str, object] = {f"k{i}": f"value {i} " + "x" * 40 for i in range(1_000)}
    ops = ops_of(version=3, records={**big, "a": 10}, context_writes={"c": 3}, outbox=(),
                 sent=())  # fmt: skip
    journal = await store._journal("r1", 3, ops)
    assert journal is not None
    cas = await store.cql.bound(store._q.cas, [
        3, dumps({"v": 3}), journal, "running", dumps(None), dumps([]), 1.0,
        store.namespace, "r1", 2,
    ])  # fmt: skip
    assert (await store.cql.batch([cas], conditional=True)).was_applied
    got = await store.read_result("r1", ["a", "b", "k5"])
    assert got is not None
    assert (got.version, got.header) == (3, {"v": 3})
    assert got.records == {"a": 10, "b": 2, "k5": big["k5"]}
    assert got.context == {"k": "v", "c": 3}


async def test_a_run_without_an_anchor_is_read_after_its_static_row(
    store: CassandraContext,
) -> None:
    """Runs written before the anchor row existed have none."""
    await _start(store, _record("r1"), records={"a": 1, "b": 2})
    await store.cql.run(
        f"DELETE FROM {store.tables.runs} WHERE namespace = ? AND run_id = ? "
        "AND kind = 'h' AND key = ''", store.namespace, "r1",
    )  # fmt: skip
    before = _counts(store)
    got = await store.read_result("r1", ["b"])
    assert got is not None
    assert (got.version, got.header, got.records, got.context) == (2, {"v": 2}, {"b": 2},
                                                                   {"k": "v"})  # fmt: skip
    assert _counts(store)[0] - before[0] == 5  # the two reads, the static row, the two again
    assert await store.read_result("nobody", ["a"]) is None


async def test_a_terminal_start_is_not_listed_as_active(store: CassandraContext) -> None:
    await _start(store, _record("done"), status="completed")
    await _start(store, _record("going"))
    active = {
        row.run_id
        for shard in {_shard("done"), _shard("going")}
        for row in await store.cql.rows(store._q.active, store.namespace, shard)
    }
    assert active == {"going"}
    assert [r.run_id for r in (await store.list_runs()).runs] == ["going", "done"]


async def test_client_start_and_result_statements(harness: Harness) -> None:
    """Client.start: the listing batch and one LWT, then the sent outbox's removal;
    Client.result of a finished run: the record, then the result's two reads at once."""
    async with harness.session(_CHAIN, workers=0) as s:
        assert isinstance(s.backend.store, NotifyingRunStore)
        inner = s.backend.store.inner
        assert isinstance(inner, CassandraContext)
        before = _counts(inner)
        handle = await s.client.start("started")
        await asyncio.sleep(0.5)  # the sent outbox's removal follows the send
        assert tuple(a - b for a, b in zip(_counts(inner), before, strict=True)) == (3, 1)
        await s.start_workers(1)
        result = await handle.result(timeout=20)
        assert (result.status, result.output) == (RunStatus.COMPLETED, 1)
        async with Client(queue=s.queue, store=s.backend.store, blueprints=s.blueprints) as c:
            before = _counts(inner)
            again = await c.result(handle.run_id, timeout=20)
            assert _counts(inner)[0] - before[0] == 3
        assert again == result
