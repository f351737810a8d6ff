"""Two run stores over one World (as two processes would be) agree through the run's journal.

Each ``WorldRunStore`` caches its own folds; only the World is shared. Compare-and-set
saves, outcomes, claims and idempotency keys must have one winner across them, and each
store must read what the other wrote.
"""

from __future__ import annotations

import asyncio

from flowcraft.core.ports import ClaimStatus, RunRecord
from flowcraft.core.world import InMemoryWorld
from flowcraft.core.world.blueprints import WorldRunStore


def _record(run_id: str, key: str | None = None) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        blueprint_id="bp",
        blueprint_version="1",
        blueprint_digest="d",
        idempotency_key=key,
    )


async def _save(store: WorldRunStore, version: int, tag: str, status: str = "running") -> bool:
    return await store.save_state(
        "r1",
        expected_version=version,
        header={"by": tag},
        records={f"k-{tag}": tag},
        context_writes={"last": tag},
        outbox=(),
        status=status,
    )


async def test_two_stores_over_one_world_have_one_winner_and_read_each_other() -> None:
    world = InMemoryWorld()
    one, two = WorldRunStore(world, "ns"), WorldRunStore(world, "ns")
    await one.create_run(_record("r1"), {"by": "create"})
    assert (await two.get_run("r1")) is not None

    results = await asyncio.gather(*(_save(s, 1, f"{n}") for n, s in enumerate([one, two] * 5)))
    assert results.count(True) == 1
    winner = str(results.index(True))
    for store in (one, two):
        state = await store.load_state("r1")
        assert state is not None
        assert (state.version, state.header, state.context) == (2, {"by": winner}, {"last": winner})

    claims = await asyncio.gather(
        one.claim_attempt("r1", "a", "w1", 30), two.claim_attempt("r1", "a", "w2", 30)
    )
    assert sorted(c.status for c in claims) == [ClaimStatus.BUSY, ClaimStatus.CLAIMED]
    outcomes = await asyncio.gather(
        one.commit_attempt("r1", "a", b"one"), two.commit_attempt("r1", "a", b"two")
    )
    assert outcomes[0] == outcomes[1]

    assert await _save(two, 2, "end", status="completed")
    record = await one.get_run("r1")
    assert record is not None
    assert record.status == "completed"
    assert (await world.runs_get("r1")).status.value == "completed"
    assert await one.stalled_runs(updated_before=1e12) == []


async def test_one_key_creates_one_run_across_stores() -> None:
    world = InMemoryWorld()
    stores = [WorldRunStore(world, "ns") for _ in range(4)]
    created = await asyncio.gather(
        *(s.create_run(_record(f"r{i}", key="k"), {}) for i, s in enumerate(stores))
    )
    assert len({record.run_id for record in created}) == 1
    other = WorldRunStore(world, "other-namespace")
    assert (await other.list_runs()).runs == ()
    assert [r.run_id for r in (await stores[0].list_runs()).runs] == [created[0].run_id]
