"""Runs created already started (``ports.RunStarter``, capability ``started_runs``).

``create_started_run`` writes a run together with its first decision (state version 2, its
records, context and outbox) in one atomic step, and ``Client.start`` takes that one step
instead of ``create_run`` and a save. It is idempotent: the same run id (or idempotency key)
again writes nothing and returns the existing run, so a start retried after a lost answer
makes one run, whose messages the retry sends. A backend without the capability runs these as
strict xfails: its store must not look like a starter.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace

from flowcraft.core import Client, RunStatus
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.ports import Message, RunRecord, RunStarter, RunStore
from flowcraft.core.testing import nodes
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.suite._dsl import bp, e, n

#: Capabilities every test of this module needs (see ``test_ports_coordination``).
FLOWCRAFT_REQUIRES = ("started_runs",)

_CHAIN = bp("started", [n("A", "const", value=1), n("B", "echo")], [e("A", "B")])
_RECORDS = {'["n","","A"]': {"status": "running", "attempt": 1}, '["i"]': {"x": 1}}
_OUTBOX = (Message(id="m1", body=b"one"), Message(id="m2", body=b"\x00two"))


def _record(run_id: str, **fields: object) -> RunRecord:
    base = RunRecord(run_id=run_id, blueprint_id="bp", blueprint_version="1", blueprint_digest="d")
    return replace(base, **fields)  # type: ignore[arg-type]


def _starter(store: RunStore) -> RunStarter:
    assert isinstance(store, RunStarter), "the backend declares started_runs"
    return store


async def _start(
    store: RunStore, record: RunRecord, outbox: Sequence[Message] = _OUTBOX
) -> tuple[RunRecord, bool]:
    return await _starter(store).create_started_run(
        record,
        header={"v": 2},
        records=_RECORDS,
        context={"k": "v"},
        outbox=outbox,
        status="running",
    )


async def test_a_run_is_created_started_at_version_two(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        record, new = await _start(store, _record("r1", input={"x": 1}))
        assert new
        assert (record.run_id, record.status, record.input) == ("r1", "running", {"x": 1})
        got = await store.get_run("r1")
        assert got is not None
        assert got.status == "running"
        state = await store.load_state("r1")
        assert state is not None
        assert (state.version, state.header, state.context) == (2, {"v": 2}, {"k": "v"})
        assert state.records == _RECORDS
        assert state.outbox == _OUTBOX
        # every record is version 2's: nothing since 2, everything since 1
        since_two = await store.load_state("r1", since=2)
        assert since_two is not None
        assert since_two.records == {}
        since_one = await store.load_state("r1", since=1)
        assert since_one is not None
        assert since_one.records == _RECORDS


async def test_a_started_run_goes_on_like_any_other(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await _start(store, _record("r1"))
        assert not await store.save_state(
            "r1", expected_version=1, header={}, records={}, context_writes={}, outbox=(),
            status="running",
        )  # fmt: skip
        assert await store.save_state(
            "r1", expected_version=2, header={"v": 3}, records={}, context_writes={"j": 2},
            outbox=(), status="completed", output="done", sent=("m1",),
        )  # fmt: skip
        state = await store.load_state("r1")
        assert state is not None
        assert (state.version, state.context) == (3, {"k": "v", "j": 2})
        assert [m.id for m in state.outbox] == ["m2"]
        record = await store.get_run("r1")
        assert record is not None
        assert (record.status, record.output) == ("completed", "done")


async def test_the_same_run_id_again_writes_nothing(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await _start(store, _record("r1"))
        other = (Message(id="m3", body=b"three"),)
        again, new = await _start(store, _record("r1", input="other"), outbox=other)
        assert not new
        assert (again.run_id, again.status, again.input) == ("r1", "running", None)
        state = await store.load_state("r1")
        assert state is not None
        assert (state.version, state.outbox) == (2, _OUTBOX)  # not started twice
        # a run created the two-step way is found too, and left at its version
        await store.create_run(_record("r2"), {"v": 1})
        found, new = await _start(store, _record("r2"))
        assert (found.run_id, found.status, new) == ("r2", "pending", False)
        kept = await store.load_state("r2")
        assert kept is not None
        assert (kept.version, kept.outbox) == (1, ())


async def test_an_idempotency_key_names_the_existing_run(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        _first, new = await _start(store, _record("r1", idempotency_key="k1"))
        assert new
        found, new = await _start(store, _record("r2", idempotency_key="k1"))
        assert (found.run_id, new) == ("r1", False)
        assert await store.get_run("r2") is None
        assert await store.load_state("r2") is None


class _LostAnswers:
    """The backend's store, whose first start stands but answers with an error.

    That is the lost-answer path; it also counts the two-step calls the client makes.
    """

    def __init__(self, inner: RunStore) -> None:
        self._inner = inner
        self.lost = 0
        self.creates = 0
        self.saves = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def create_started_run(self, record: RunRecord, **fields: object) -> object:
        answer = await _starter(self._inner).create_started_run(record, **fields)  # type: ignore[arg-type]
        if self.lost < 1:
            self.lost += 1
            raise TransientBackendError("create_started_run: connection lost")
        return answer

    async def create_run(self, *args: object, **kwargs: object) -> object:
        self.creates += 1
        return await self._inner.create_run(*args, **kwargs)  # type: ignore[arg-type]

    async def save_state(self, *args: object, **kwargs: object) -> object:
        self.saves += 1
        return await self._inner.save_state(*args, **kwargs)  # type: ignore[arg-type]


async def test_the_client_starts_a_run_in_one_step(harness: Harness) -> None:
    async with harness.session(_CHAIN) as s:
        store = _LostAnswers(s.backend.store)
        store.lost = 1  # no lost answer here
        async with Client(queue=s.queue, store=store, blueprints=s.blueprints) as client:  # type: ignore[arg-type]
            handle = await client.start("started", run_id="one-step")
            assert (store.creates, store.saves) == (0, 0), "the start took the two-step path"
            result = await handle.result(timeout=20)
        assert (result.status, result.output) == (RunStatus.COMPLETED, 1)


async def test_a_start_whose_answer_was_lost_makes_one_run_sent_once(harness: Harness) -> None:
    async with harness.session(_CHAIN) as s:
        store = _LostAnswers(s.backend.store)
        async with Client(queue=s.queue, store=store, blueprints=s.blueprints) as client:  # type: ignore[arg-type]
            run_id = f"lost-{uuid.uuid4().hex[:8]}"
            handle = await client.start("started", run_id=run_id)
            assert handle.run_id == run_id
            assert store.lost == 1
            # nothing was sent by the start whose answer was lost: the retry sent its outbox
            result = await handle.result(timeout=20)
            again = await client.start("started", run_id=run_id)  # a second start
            assert again.run_id == run_id
        assert (result.status, result.output) == (RunStatus.COMPLETED, 1)
        assert sorted(nodes.LOG[run_id]) == ["A", "B"]  # each node ran once
        page = await s.client.list_runs()
        assert [r.run_id for r in page.runs] == [run_id]
        stored = await s.backend.store.load_state(run_id)
        assert stored is not None
        assert stored.header["status"] == "completed"
