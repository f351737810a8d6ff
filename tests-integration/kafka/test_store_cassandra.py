"""CassandraContext beyond the port contract: a large save's journal when its writer dies;
attempt leases in partitions of their own.

A writer that committed a journal (the version and the pointer) but died before applying it
leaves the run readable (readers overlay the journal) and writable (the next writer rolls it
forward before its own compare-and-set); late appliers never write over a newer version.
A fan-out's claims are lightweight transactions on one partition per attempt (never the run's),
each lease row with a TTL; a save's leases are written only when it applies.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from flowcraft.core.ports import ClaimStatus, RunRecord
from flowcraft.core.redis import NotifyingRunStore
from flowcraft.kafka import CassandraContext, KafkaBackend
from flowcraft.kafka._codec import dumps
from flowcraft.kafka._store import LEASE_KEPT
from flowcraft.kafka._writes import ops_of


@pytest.fixture
async def store(
    kafka_bootstrap: str, cassandra_contact: tuple[str, int], redis_url: str
) -> AsyncIterator[CassandraContext]:
    host, port = cassandra_contact
    factory = KafkaBackend(bootstrap_servers=kafka_bootstrap, redis_url=redis_url,
                           cassandra_contact_points=f"{host}:{port}", partitions=1,
                           keyspace="flowcraft_tests")  # fmt: skip
    backend = await factory.create(f"s{uuid.uuid4().hex[:10]}")
    assert isinstance(backend.store, NotifyingRunStore)
    assert isinstance(backend.store.inner, CassandraContext)
    yield backend.store.inner
    await factory.destroy(backend)


def _record(run_id: str) -> RunRecord:
    return RunRecord(run_id=run_id, blueprint_id="bp", blueprint_version="1",
                     blueprint_digest="d", status="running")  # fmt: skip


async def _commit_without_applying(
    store: CassandraContext, run_id: str, big: dict[str, object]
) -> str:
    """What a writer of version 2 leaves when it dies right after its conditional batch."""
    ops = ops_of(version=2, records=big, context_writes={"c": 2}, outbox=(), sent=())
    journal = await store._journal(run_id, 2, ops)
    assert journal is not None
    cas = await store.cql.bound(store._q.cas, [
        2, dumps({"v": 2}), journal, "running", dumps(None), dumps([]), 1.0,
        store.namespace, run_id, 1,
    ])  # fmt: skip
    assert (await store.cql.batch([cas], conditional=True)).was_applied
    return journal


async def test_a_dead_writers_journal_is_read_and_rolled_forward(store: CassandraContext) -> None:
    await store.create_run(_record("r1"), {"v": 1}, {"k0": "old", "kept": 1})
    big: dict[str, object] = {f"k{i}": f"value {i} " + "x" * 40 for i in range(2_000)}
    await _commit_without_applying(store, "r1", big)
    state = await store.load_state("r1")  # the journal overlaid
    assert state is not None
    assert (state.version, state.header, state.context) == (2, {"v": 2}, {"c": 2})
    assert state.records == {**big, "kept": 1}
    since = await store.load_state("r1", since=1, keys=["kept"])
    assert since is not None
    assert since.records == {**big, "kept": 1}
    slow = (await store.cql.run(store._q.journal_head, store.namespace, "r1")).one()
    assert slow.journal is not None  # an applier that read the pointer, then stalled
    assert await store.save_state(  # rolls the journal forward first, then saves version 3
        "r1", expected_version=2, header={"v": 3}, records={"k0": "new"}, context_writes={},
        outbox=(), status="running",
    )  # fmt: skip
    head = (await store.cql.run(store._q.head, store.namespace, "r1")).one()
    assert head.journal is None
    after = await store.load_state("r1")
    assert after is not None
    assert after.version == 3
    assert after.records == {**big, "k0": "new", "kept": 1}
    await store._roll_forward("r1", "000000000002:late")
    late = await store.load_state("r1")
    assert late is not None
    assert late.records["k0"] == "new"  # its older timestamp lost to version 3


async def _lease(store: CassandraContext, run_id: str, attempt: str) -> tuple[str, float, int]:
    """The attempt's lease row: owner, expiry and the TTL left (in the attempts table)."""
    query = (
        f"SELECT owner, lease_until, TTL(owner) AS ttl FROM {store.tables.attempts} "
        "WHERE namespace = ? AND run_id = ? AND attempt = ?"
    )
    row = (await store.cql.run(query, store.namespace, run_id, attempt)).one()
    assert row is not None, f"no lease row for {attempt}"
    return row.owner, row.lease_until, row.ttl


async def test_a_fan_outs_claims_each_take_their_own_partition(store: CassandraContext) -> None:
    await store.create_run(_record("r1"), {"v": 1})
    attempts = [f"n{i}#1" for i in range(8)]
    claims = await asyncio.gather(*(store.claim_attempt("r1", a, f"w{a}", 30) for a in attempts))
    assert {c.status for c in claims} == {ClaimStatus.CLAIMED}
    for attempt in attempts:
        owner, _, ttl = await _lease(store, "r1", attempt)
        assert owner == f"w{attempt}"
        assert 30 + LEASE_KEPT - 60 < ttl <= 31 + LEASE_KEPT
    rows = await store.cql.rows(
        f"SELECT kind FROM {store.tables.runs} WHERE namespace = ? AND run_id = ?",
        store.namespace, "r1",
    )  # fmt: skip
    assert "a" not in {row.kind for row in rows}  # nothing of the leases in the run's partition
    busy = await store.claim_attempt("r1", "n0#1", "other", 30)
    assert busy.status is ClaimStatus.BUSY
    assert await store.extend_attempt("r1", "n0#1", "wn0#1", 60)
    assert not await store.extend_attempt("r1", "n0#1", "other", 60)
    _, _, ttl = await _lease(store, "r1", "n0#1")
    assert ttl > 60 + LEASE_KEPT - 60  # an extension renews the TTL with the lease


async def test_a_saves_leases_are_written_only_when_it_applies(store: CassandraContext) -> None:
    await store.create_run(_record("r1"), {"v": 1})
    refused = await store.save_state(
        "r1", expected_version=7, header={"v": 8}, records={}, context_writes={}, outbox=(),
        status="running", claims=(("lost#1", "w1", 30.0),),
    )  # fmt: skip
    assert not refused
    taken = await store.claim_attempt("r1", "lost#1", "w2", 30)
    assert taken.status is ClaimStatus.CLAIMED  # the refused save leased nothing
    assert await store.save_state(
        "r1", expected_version=1, header={"v": 2}, records={}, context_writes={}, outbox=(),
        status="running", claims=(("a#1", "w1", 30.0), ("b#1", "w1", 30.0)),
    )  # fmt: skip
    for attempt in ("a#1", "b#1"):
        assert (await _lease(store, "r1", attempt))[0] == "w1"
        assert (await store.claim_attempt("r1", attempt, "w2", 30)).status is ClaimStatus.BUSY
