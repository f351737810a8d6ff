"""Results read without the whole state (``ports.ResultReader``, capability ``result_reads``).

``read_result`` reads a run's header, context and only the records core names, in one
snapshot; ``Client.result`` builds a settled run's result from them instead of loading and
rebuilding every record, and that result is the one the whole state gives. A backend without
the capability runs these as strict xfails: its store must not look like a reader.
"""

from __future__ import annotations

from dataclasses import replace

from flowcraft.core import Client, RunStatus
from flowcraft.core.ports import ResultReader, RunRecord, RunStore, StoredState
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.suite._dsl import bp, e, n

#: Capabilities every test of this module needs (see ``test_ports_coordination``).
FLOWCRAFT_REQUIRES = ("result_reads",)

_WIDE = bp(
    "wide",
    [
        n("A", "write", writes={"seen": "A", "n": 1}, value="a"),
        n("B", "const", value={"b": [1, 2]}),
        n("C", "echo"),
    ],
    [e("A", "B"), e("A", "C")],
)
_ONE = bp("one", [n("A", "const", value=7), n("B", "echo")], [e("A", "B")])
_FAILS = bp("fails", [n("A", "const", value=1), n("B", "fail", times=9)], [e("A", "B")])


def _reader(store: RunStore) -> ResultReader:
    assert isinstance(store, ResultReader), "the backend declares result_reads"
    return store


def _record(run_id: str) -> RunRecord:
    base = RunRecord(run_id=run_id, blueprint_id="bp", blueprint_version="1", blueprint_digest="d")
    return replace(base)


async def test_read_result_reads_the_named_records_only(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        reader = _reader(store)
        records = {"a": 1, "b": {"x": [1, 2]}, "c": "three"}
        await store.create_run(_record("r1"), {"v": 1}, records)
        assert await store.save_state(
            "r1", expected_version=1, header={"v": 2}, records={"c": "new"},
            context_writes={"k": "v"}, outbox=(), status="completed",
        )  # fmt: skip
        got = await reader.read_result("r1", ["b", "c", "missing"])
        assert got is not None
        assert (got.version, got.header, got.context) == (2, {"v": 2}, {"k": "v"})
        assert got.records == {"b": {"x": [1, 2]}, "c": "new"}
        none = await reader.read_result("r1", [])
        assert none is not None
        assert none.records == {}
        assert await reader.read_result("nobody", ["a"]) is None


class _NoLoads:
    """The backend's store, counting the whole-state loads ``Client.result`` makes."""

    def __init__(self, inner: RunStore) -> None:
        self._inner = inner
        self.loads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def load_state(self, run_id: str, **kwargs: object) -> StoredState | None:
        self.loads += 1
        return await self._inner.load_state(run_id, **kwargs)  # type: ignore[arg-type]


async def test_the_result_is_read_without_the_whole_state(harness: Harness) -> None:
    async with harness.session(_WIDE, _ONE, _FAILS) as s:
        _reader(s.backend.store)
        store = _NoLoads(s.backend.store)
        async with Client(queue=s.queue, store=store, blueprints=s.blueprints) as client:  # type: ignore[arg-type]
            for blueprint, status in (
                ("wide", RunStatus.COMPLETED),
                ("one", RunStatus.COMPLETED),
                ("fails", RunStatus.FAILED),
            ):
                handle = await s.start(blueprint, {"in": blueprint})
                before = store.loads
                result = await client.result(handle.run_id, timeout=20)
                assert store.loads == before, f"{blueprint}: the client loaded the whole state"
                assert result.status is status
                whole = await s.client.snapshot(handle.run_id)  # from the whole state
                assert result == whole, f"{blueprint}: the read result differs from the state's"


async def test_a_read_result_has_outputs_context_and_errors(harness: Harness) -> None:
    async with harness.session(_WIDE, _FAILS) as s:
        _reader(s.backend.store)
        wide = await s.run("wide", "in")
        assert wide.output == {"B": {"b": [1, 2]}, "C": "a"}
        assert wide.outputs == {"A": "a", "B": {"b": [1, 2]}, "C": "a"}
        assert wide.context == {"seen": "A", "n": 1}
        failed = await s.run("fails")
        assert failed.status is RunStatus.FAILED
        assert [(err.node_id, err.message) for err in failed.errors] == [("B", "boom")]
        assert failed.outputs == {"A": 1}
