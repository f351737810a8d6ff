"""The run store's contract (``ports.RunStore``): what the coordinator and workers rely on.

Compare-and-set saves (one winner among concurrent savers, a refused save writes nothing),
records written key by key and loaded whole or since a version (with the keys a caller asks
back), a 20,000-record save in one piece, per-key context writes, the outbox, outcomes carried
by a save, leased attempt claims (busy, take-over after expiry, extension, first-writer-wins
commits), idempotent ``create_run``, ``list_runs`` paging and ``stalled_runs``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import replace

import pytest
from flowcraft.core.ports import DELETE, AttemptClaim, ClaimStatus, Message, RunRecord, RunStore
from flowcraft.core.testing.harness import Harness


def _record(run_id: str, **fields: object) -> RunRecord:
    base = RunRecord(run_id=run_id, blueprint_id="bp", blueprint_version="1", blueprint_digest="d")
    return replace(base, **fields)  # type: ignore[arg-type]


async def _save(
    store: RunStore,
    run_id: str,
    version: int,
    *,
    outcomes: tuple[tuple[str, bytes], ...] = (),
    outbox: tuple[Message, ...] = (),
    sent: tuple[str, ...] = (),
    status: str = "running",
) -> bool:
    return await store.save_state(
        run_id,
        expected_version=version,
        header={"v": version + 1},
        records={},
        context_writes={f"k{version}": version},
        outbox=outbox,
        status=status,
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
        assert (state.version, state.header, state.context) == (2, {"v": 2}, {"k1": 1})
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


async def test_create_run_stores_the_record_and_the_initial_state(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        created = await store.create_run(
            _record("r1", input={"x": [1, 2]}, parent=("p", "n", "f", 2), created_at=1e9 + 0.5),
            {"doc": 1},
        )
        assert (created.input, created.parent, created.status) == (
            {"x": [1, 2]},
            ("p", "n", "f", 2),
            "pending",
        )
        assert created.created_at == pytest.approx(1e9 + 0.5)
        assert await store.get_run("r1") == created
        state = await store.load_state("r1")
        assert state is not None
        assert (state.version, state.header, state.context, state.outbox) == (
            1,
            {"doc": 1},
            {},
            (),
        )
        assert await store.get_run("nope") is None
        assert await store.load_state("nope") is None


async def test_create_run_is_idempotent_by_id(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        first = await store.create_run(_record("r1", input=1), {"doc": 1})
        again = await store.create_run(_record("r1", input=2, blueprint_id="other"), {"doc": 2})
        assert again == first
        state = await store.load_state("r1")
        assert state is not None
        assert state.header == {"doc": 1}


async def test_concurrent_starts_with_one_key_create_one_run(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        created = await asyncio.gather(
            *(store.create_run(_record(f"r{i}", idempotency_key="k"), {"i": i}) for i in range(8))
        )
        assert len({r.run_id for r in created}) == 1
        page = await store.list_runs()
        assert [r.run_id for r in page.runs] == [created[0].run_id]
        other = await store.create_run(_record("x", idempotency_key="other-key"), {})
        assert other.run_id == "x"


async def test_a_refused_save_writes_nothing(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {"v": 1}, {"k": 1})
        kept = Message(id="m1", body=b"\x00one")
        assert await store.save_state(
            "r1", expected_version=1, header={"v": 2}, records={"k": 2}, context_writes={"a": 1},
            outbox=(kept,), status="running",
        )  # fmt: skip
        refused = await store.save_state(
            "r1", expected_version=1, header={"v": 99}, records={"k": 99, "new": 1},
            context_writes={"a": 99, "b": 2}, outbox=(Message(id="m2", body=b"two"),),
            status="failed", output="x", claims=(("c#1", "w", 30.0),),
        )  # fmt: skip
        assert refused is False
        state = await store.load_state("r1")
        run = await store.get_run("r1")
        assert state is not None
        assert run is not None
        assert (state.version, state.header, state.records, state.context, state.outbox) == (
            2,
            {"v": 2},
            {"k": 2},
            {"a": 1},
            (kept,),
        )
        assert (run.status, run.output) == ("running", None)
        assert (await store.claim_attempt("r1", "c#1", "other", 30)).status is ClaimStatus.CLAIMED
        assert not await store.save_state(
            "missing", expected_version=1, header={}, records={}, context_writes={}, outbox=(),
            status="running",
        )  # fmt: skip


async def test_one_of_many_concurrent_savers_wins(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {"v": 1})

        def save(i: int) -> Awaitable[bool]:
            return store.save_state(
                "r1", expected_version=1, header={"by": i}, records={"k": i, f"own{i}": i},
                context_writes={"by": i}, outbox=(Message(id=f"m{i}", body=b"x"),),
                status="running",
            )  # fmt: skip

        saved = await asyncio.gather(*(save(i) for i in range(8)))
        assert saved.count(True) == 1
        winner = saved.index(True)
        state = await store.load_state("r1")
        assert state is not None
        assert (state.version, state.header, state.records, state.context) == (
            2,
            {"by": winner},
            {"k": winner, f"own{winner}": winner},
            {"by": winner},
        )
        assert [m.id for m in state.outbox] == [f"m{winner}"]


#: Record keys as the core writes them (JSON text of arbitrary node ids and frames).
_KEYS = ('["n","","a"]', '["n","M[0]/L#2","b \\"quoted\\" / ü"]', '["a","",":join",3]')


async def test_records_are_written_key_by_key(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        first, second, third = _KEYS
        await store.create_run(_record("r1"), {"h": 1}, {first: {"status": "running"}})
        assert await store.save_state(
            "r1", expected_version=1, header={"h": 2},
            records={second: [1, "x", None], third: {"deep": {"list": [1, 2]}}},
            context_writes={}, outbox=(), status="running",
        )  # fmt: skip
        assert await store.save_state(
            "r1", expected_version=2, header={"h": 3}, records={second: "replaced"},
            context_writes={}, outbox=(), status="running",
        )  # fmt: skip
        state = await store.load_state("r1")
        assert state is not None
        assert (state.version, state.header, state.since) == (3, {"h": 3}, None)
        assert state.records == {
            first: {"status": "running"},
            second: "replaced",
            third: {"deep": {"list": [1, 2]}},
        }


async def test_a_load_since_a_version_has_what_changed_and_the_keys_asked_for(
    harness: Harness,
) -> None:
    async with harness.backend() as backend:
        store = backend.store
        first, second, third = _KEYS
        await store.create_run(_record("r1"), {"h": 1}, {first: 1})
        for version, records in ((1, {second: 2}), (2, {third: 3}), (3, {second: 22})):
            assert await store.save_state(
                "r1", expected_version=version, header={"h": version + 1}, records=records,
                context_writes={"c": version}, outbox=(Message(id=f"m{version}", body=b"m"),),
                status="running",
            )  # fmt: skip
        whole = await store.load_state("r1")
        assert whole is not None
        assert [m.id for m in whole.outbox] == ["m1", "m2", "m3"]

        async def since(version: int, *keys: str) -> dict[str, object]:
            state = await store.load_state("r1", since=version, keys=keys)
            assert state is not None
            assert (state.version, state.header, state.context) == (4, {"h": 4}, {"c": 3})
            assert state.outbox == ()  # a catch-up leaves the outbox to a full load
            assert state.since == version
            return dict(state.records)

        assert await since(0) == {first: 1, second: 22, third: 3}
        assert await since(1) == {second: 22, third: 3}
        assert await since(2) == {second: 22, third: 3}
        assert await since(3) == {second: 22}
        assert await since(4) == {}
        assert await since(4, first, "never-written") == {first: 1}
        assert await since(3, third) == {second: 22, third: 3}
        assert await store.load_state("nope", since=1) is None


async def test_a_save_of_twenty_thousand_records_is_one_save(harness: Harness) -> None:
    """A 10,000-wide fan-out decided at once writes about this many records in one save."""
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {"h": 1})
        records: dict[str, object] = {
            f'["n","",{i}]': {"status": "running", "attempt": 1, "input": {"i": i}}
            for i in range(20_000)
        }
        big = {"n": 1, "refused": False}
        refused = {"n": 2, "refused": True}
        outcome = await asyncio.gather(
            store.save_state(
                "r1", expected_version=1, header=big, records=records, context_writes={},
                outbox=(), status="running",
            ),
            store.save_state(
                "r1", expected_version=1, header=refused, records={'["n","",1]': "lost"},
                context_writes={}, outbox=(), status="running",
            ),
        )  # fmt: skip
        assert sorted(outcome) == [False, True]
        state = await store.load_state("r1")
        assert state is not None
        assert state.version == 2
        if state.header == big:
            assert state.records == records
        else:
            assert state.records == {'["n","",1]': "lost"}
        delta = await store.load_state("r1", since=2)
        assert delta is not None
        assert delta.records == {}


async def test_a_save_updates_the_record(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        created = await store.create_run(_record("r1"), {})
        before = time.time()
        assert await store.save_state(
            "r1", expected_version=1, header={}, records={}, context_writes={}, outbox=(),
            status="failed", output={"out": [1, 2]}, errors=({"node": "n", "message": "boom"},),
        )  # fmt: skip
        run = await store.get_run("r1")
        assert run is not None
        assert (run.status, run.output, run.errors) == (
            "failed",
            {"out": [1, 2]},
            ({"node": "n", "message": "boom"},),
        )
        assert run.created_at == created.created_at
        assert run.updated_at >= before - 1.0  # stores may keep updated_at to the second
        done = await store.list_runs(status="failed")
        assert [r.run_id for r in done.runs] == ["r1"]


async def test_context_writes_are_per_key_and_delete_removes_one_key(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {})
        writes: dict[str, object] = {"a": 1, "b": {"nested": True}, "c": None}
        assert await store.save_state(
            "r1", expected_version=1, header={}, records={}, context_writes=writes, outbox=(),
            status="running",
        )  # fmt: skip
        assert await store.save_state(
            "r1", expected_version=2, header={}, records={}, context_writes={"a": DELETE, "d": 4},
            outbox=(), status="running",
        )  # fmt: skip
        state = await store.load_state("r1")
        assert state is not None
        assert state.context == {"b": {"nested": True}, "c": None, "d": 4}


async def test_concurrent_chains_on_different_keys_lose_no_update(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {})
        rounds = 10

        async def chain(name: str) -> None:
            for i in range(rounds):
                while True:
                    state = await store.load_state("r1")
                    assert state is not None
                    if await store.save_state(
                        "r1", expected_version=state.version, header={"last": name}, records={},
                        context_writes={f"{name}{i}": i, name: i}, outbox=(), status="running",
                    ):  # fmt: skip
                        break

        await asyncio.gather(chain("a"), chain("b"), chain("c"))
        state = await store.load_state("r1")
        assert state is not None
        assert state.version == 1 + 3 * rounds
        expected = {f"{n}{i}": i for n in "abc" for i in range(rounds)}
        expected.update({n: rounds - 1 for n in "abc"})
        assert state.context == expected


async def test_the_outbox_keeps_each_message_once_in_order(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {})
        m1, m2, m3 = (Message(id=f"m{i}", body=bytes([i, 0, 255])) for i in (1, 2, 3))
        assert await _save(store, "r1", 1, outbox=(m2, m1))
        assert await _save(store, "r1", 2, outbox=(m3, m1))  # m1 again: kept once
        state = await store.load_state("r1")
        assert state is not None
        assert state.outbox == (m2, m1, m3)


async def test_claims_are_claimed_busy_or_done(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {})
        before = time.time()
        claim = await store.claim_attempt("r1", "n#1", "w1", 30)
        assert claim.status is ClaimStatus.CLAIMED
        assert before + 25 < claim.lease_until < before + 35
        busy = await store.claim_attempt("r1", "n#1", "w2", 30)
        assert (busy.status, busy.outcome) == (ClaimStatus.BUSY, None)
        assert busy.lease_until == pytest.approx(claim.lease_until, abs=1.0)
        again = await store.claim_attempt("r1", "n#1", "w1", 60)  # the owner may re-claim
        assert again.status is ClaimStatus.CLAIMED
        assert again.lease_until > claim.lease_until
        assert await store.commit_attempt("r1", "n#1", b"ok") == b"ok"
        done = await store.claim_attempt("r1", "n#1", "w2", 30)
        assert done == AttemptClaim(status=ClaimStatus.DONE, outcome=b"ok")
        other = await store.claim_attempt("r1", "n#2", "w2", 30)
        assert other.status is ClaimStatus.CLAIMED


async def test_an_expired_lease_is_taken_over_and_its_old_owner_loses_it(
    harness: Harness,
) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {})
        assert (await store.claim_attempt("r1", "a", "w1", 0.3)).status is ClaimStatus.CLAIMED
        assert (await store.claim_attempt("r1", "a", "w2", 5)).status is ClaimStatus.BUSY
        await asyncio.sleep(0.4)
        assert (await store.claim_attempt("r1", "a", "w2", 5)).status is ClaimStatus.CLAIMED
        assert await store.extend_attempt("r1", "a", "w1", 5) is False
        assert await store.extend_attempt("r1", "a", "w2", 5) is True
        await store.commit_attempt("r1", "a", b"x")
        assert await store.extend_attempt("r1", "a", "w2", 5) is False


async def test_extend_attempt_keeps_the_lease_past_its_first_expiry(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {})
        claim = await store.claim_attempt("r1", "a", "w1", 0.5)
        assert claim.status is ClaimStatus.CLAIMED
        for _ in range(4):  # 0.8 s in all: past the first lease
            await asyncio.sleep(0.2)
            assert await store.extend_attempt("r1", "a", "w1", 0.5)
        busy = await store.claim_attempt("r1", "a", "w2", 5)
        assert busy.status is ClaimStatus.BUSY
        assert busy.lease_until > claim.lease_until


async def test_commits_are_first_writer_wins(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {})
        await store.claim_attempt("r1", "a", "w1", 5)
        outcomes = await asyncio.gather(
            *(store.commit_attempt("r1", "a", f"o{i}".encode()) for i in range(10))
        )
        assert len(set(outcomes)) == 1
        assert await store.commit_attempt("r1", "a", b"late") == outcomes[0]
        assert await store.commit_attempt("r1", "unclaimed", b"u") == b"u"
        assert await store.commit_attempt("r1", "unclaimed", b"v") == b"u"


async def test_list_runs_pages_newest_first(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        for i in range(7):
            status = "completed" if i % 2 else "running"
            await store.create_run(_record(f"r{i}", status=status, created_at=1000.0 + i), {})
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await store.list_runs(limit=3, cursor=cursor)
            seen.extend(r.run_id for r in page.runs)
            pages += 1
            cursor = page.cursor
            if cursor is None:
                break
            assert pages < 10, "list_runs never ends"
        assert seen == [f"r{i}" for i in reversed(range(7))]
        assert pages == 3
        done = await store.list_runs(status="completed", limit=2)
        assert [r.run_id for r in done.runs] == ["r5", "r3"]
        assert done.cursor is not None
        rest = await store.list_runs(status="completed", limit=2, cursor=done.cursor)
        assert [r.run_id for r in rest.runs] == ["r1"]
        assert rest.cursor is None
        with pytest.raises(ValueError, match="cursor"):
            await store.list_runs(cursor="not-a-cursor")


async def test_list_runs_breaks_created_at_ties_by_id(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        for run_id in ("b", "a", "c"):
            await store.create_run(_record(run_id, created_at=5000.0), {})
        first = await store.list_runs(limit=2)
        assert first.cursor is not None
        second = await store.list_runs(limit=2, cursor=first.cursor)
        assert [r.run_id for r in first.runs + second.runs] == ["c", "b", "a"]


async def test_stalled_runs_are_the_unfinished_ones_not_saved_lately(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        for run_id, status in (("p", "pending"), ("r", "running"), ("w", "awaiting")):
            await store.create_run(_record(run_id, status=status), {})
        await store.create_run(_record("c"), {})
        assert await _save(store, "c", 1, status="completed")
        await asyncio.sleep(0.05)
        cutoff = time.time()
        await asyncio.sleep(0.05)
        await store.create_run(_record("fresh", status="running"), {})
        assert sorted(await store.stalled_runs(updated_before=cutoff)) == ["p", "r", "w"]
        assert len(await store.stalled_runs(updated_before=cutoff, limit=2)) == 2
        assert await store.stalled_runs(updated_before=cutoff - 3600) == []
