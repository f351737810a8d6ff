"""The store on a session the user built: named rows and LWT results whichever mode it is in.

The store's statements ask cassandra-driver for plain-tuple rows through a clone of the
session's default execution profile (``flowcraft.kafka._cql``); a session in the driver's
legacy configuration mode refuses profiles, and keeps its own (named-tuple) row factory.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy
from cassandra.query import named_tuple_factory
from flowcraft.core.ports import ClaimStatus, RunRecord
from flowcraft.kafka import CassandraContext


@pytest.fixture(params=["profiles", "legacy"])
async def session(
    request: pytest.FixtureRequest, cassandra_contact: tuple[str, int]
) -> AsyncIterator[tuple[str, Any]]:
    host, port = cassandra_contact
    if request.param == "profiles":
        profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy())
        cluster = Cluster([host], port=port, protocol_version=5,
                          execution_profiles={EXEC_PROFILE_DEFAULT: profile})  # fmt: skip
    else:
        cluster = Cluster([host], port=port, protocol_version=5)
    connected = await asyncio.to_thread(cluster.connect)
    if request.param == "legacy":
        connected.row_factory = named_tuple_factory  # a legacy setting: no profiles from here
    yield request.param, connected
    await asyncio.to_thread(cluster.shutdown)


async def test_create_load_claim_and_commit_on_a_users_session(
    session: tuple[str, Any],
) -> None:
    mode, connected = session
    store = CassandraContext(session=connected, keyspace="flowcraft_tests",
                             namespace=f"q{uuid.uuid4().hex[:10]}")  # fmt: skip
    await store.ensure_schema()
    try:
        record = RunRecord(run_id="r1", blueprint_id="bp", blueprint_version="1",
                           blueprint_digest="d", status="running")  # fmt: skip
        await store.create_run(record, {"h": 1}, {"a": [1, 2]})
        state = await store.load_state("r1")
        assert state is not None
        assert (state.version, state.header, state.records) == (1, {"h": 1}, {"a": [1, 2]})
        first = await store.claim_attempt("r1", "n:1", "w1", 30.0)
        assert first.status is ClaimStatus.CLAIMED
        assert (await store.claim_attempt("r1", "n:1", "w2", 30.0)).status is ClaimStatus.BUSY
        assert await store.commit_attempt("r1", "n:1", b"one") == b"one"
        assert await store.commit_attempt("r1", "n:1", b"two") == b"one"  # the first one stays
        done = await store.claim_attempt("r1", "n:1", "w2", 30.0)
        assert (done.status, done.outcome) == (ClaimStatus.DONE, b"one")
        assert (store.cql._profile is None) == (mode == "legacy")  # tuple rows where it can
    finally:
        await store.drop_namespace()
