"""The run store's contract, port by port: what the coordinator and workers rely on."""

from __future__ import annotations

import asyncio

from flowcraft.core.ports import ClaimStatus, Message, RunRecord, RunStore
from flowcraft.core.testing.harness import Harness


def _record(run_id: str) -> RunRecord:
    return RunRecord(run_id=run_id, blueprint_id="bp", blueprint_version="1", blueprint_digest="d")


async def _save(
    store: RunStore,
    run_id: str,
    version: int,
    *,
    outcomes: tuple[tuple[str, bytes], ...] = (),
    outbox: tuple[Message, ...] = (),
    sent: tuple[str, ...] = (),
) -> bool:
    return await store.save_state(
        run_id,
        expected_version=version,
        document={"v": version + 1},
        context_writes={f"k{version}": version},
        outbox=outbox,
        status="running",
        outcomes=outcomes,
        sent=sent,
    )


async def test_save_commits_the_outcomes_it_carries(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {"v": 1})
        assert (await store.claim_attempt("r1", "a#1", "w1", 30)).status is ClaimStatus.CLAIMED
        assert await _save(store, "r1", 1, outcomes=(("a#1", b"ok"), ("b#1", b"fine")))
        state = await store.load_state("r1")
        assert state is not None
        assert (state.version, state.document, state.context) == (2, {"v": 2}, {"k1": 1})
        done = await store.claim_attempt("r1", "a#1", "w2", 30)
        assert (done.status, done.outcome) == (ClaimStatus.DONE, b"ok")
        assert await store.commit_attempt("r1", "b#1", b"late") == b"fine"


async def test_save_is_refused_when_a_carried_outcome_was_committed_before(
    harness: Harness,
) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {"v": 1})
        assert await store.commit_attempt("r1", "a#1", b"first") == b"first"
        outbox = (Message(id="m1", body=b"x"),)
        assert not await _save(store, "r1", 1, outcomes=(("a#1", b"second"),), outbox=outbox)
        state = await store.load_state("r1")
        assert state is not None
        assert (state.version, state.context, state.outbox) == (1, {}, ())
        assert await store.commit_attempt("r1", "a#1", b"third") == b"first"


async def test_outcomes_stand_even_when_the_version_moved_on(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {"v": 1})
        assert await _save(store, "r1", 1)
        assert not await _save(store, "r1", 1, outcomes=(("a#1", b"mine"),))  # stale version
        assert await store.commit_attempt("r1", "a#1", b"other") == b"mine"
        state = await store.load_state("r1")
        assert state is not None
        assert state.version == 2


async def test_one_outcome_wins_among_concurrent_carrying_saves(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {"v": 1})
        saved = await asyncio.gather(
            *(_save(store, "r1", 1, outcomes=(("a#1", f"o{i}".encode()),)) for i in range(8))
        )
        assert saved.count(True) == 1  # the writer of the standing outcome, and only it
        standing = await store.commit_attempt("r1", "a#1", b"late")
        assert standing == f"o{saved.index(True)}".encode()
        state = await store.load_state("r1")
        assert state is not None
        assert state.version == 2


async def test_remove_outbox_takes_many_runs_at_once(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        m1, m2, m3 = (Message(id=f"m{i}", body=bytes([i])) for i in (1, 2, 3))
        for run_id in ("r1", "r2"):
            await store.create_run(_record(run_id), {"v": 1})
            assert await _save(store, run_id, 1, outbox=(m1, m2, m3))
        await store.remove_outbox({"r1": ["m1", "m3", "unknown"], "r2": ["m2"], "nope": ["m1"]})
        await store.remove_outbox({"r1": ["m1"]})
        await store.remove_outbox({})
        first, second = await store.load_state("r1"), await store.load_state("r2")
        assert first is not None
        assert second is not None
        assert first.outbox == (m2,)
        assert second.outbox == (m1, m3)


async def test_a_save_removes_the_sent_messages_it_names(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        m1, m2, m3, m4 = (Message(id=f"m{i}", body=bytes([i])) for i in (1, 2, 3, 4))
        await store.create_run(_record("r1"), {"v": 1})
        assert await _save(store, "r1", 1, outbox=(m1, m2))
        assert await _save(store, "r1", 2, outbox=(m3,))
        assert not await _save(store, "r1", 1, sent=("m3",))  # refused: nothing removed
        assert await _save(store, "r1", 3, outbox=(m4,), sent=("m1", "m2", "unknown"))
        state = await store.load_state("r1")
        assert state is not None
        assert state.outbox == (m3, m4)
