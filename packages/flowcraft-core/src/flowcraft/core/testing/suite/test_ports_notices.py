"""Results carried by the notification (``ports.ResultNotifier``, capability ``result_notices``).

The save of a run that settles is given a notice (the result as JSON text); the store sends it
with that save's notification, only if the save commits and only within ``notice_limit``, and
``Client.result`` builds the result from it without reading the store. A backend without the
capability runs these as strict xfails: its store must not look like one that carries notices.
"""

from __future__ import annotations

import json

from flowcraft.core import Client, RunStatus
from flowcraft.core.ports import (
    ResultNotifier,
    RunRecord,
    RunStore,
    RunWatch,
    StoredResult,
    StoredState,
)
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.suite._dsl import bp, e, n

#: Capabilities every test of this module needs (see ``test_ports_coordination``).
FLOWCRAFT_REQUIRES = ("result_notices",)

_WAKE = 5.0  # generous: a notification normally comes within milliseconds
_QUIET = 0.5  # how long a notification that must not come is given to come all the same

_WIDE = bp(
    "wide",
    [
        n("S", "sleep", seconds=0.4),
        n("A", "write", writes={"seen": "A", "n": 1}, value="a"),
        n("B", "const", value={"b": [1, 2], "text": "é \u001f 'q' \""}),
        n("C", "echo"),
    ],
    [e("S", "A"), e("A", "B"), e("A", "C")],
)
_FAILS = bp("fails", [n("S", "sleep", seconds=1.0), n("B", "fail", times=9)], [e("S", "B")])


def _notifier(store: RunStore) -> ResultNotifier:
    assert isinstance(store, ResultNotifier), "the backend declares result_notices"
    assert store.notice_limit >= 1000, "a notice limit too small to carry a result"
    return store


def _carried(watch: RunWatch) -> str | None:
    """The watch's notice now (a read of its own: it changes while the test awaits)."""
    return watch.notice


def _record(run_id: str) -> RunRecord:
    return RunRecord(run_id=run_id, blueprint_id="bp", blueprint_version="1", blueprint_digest="d")


async def _save(
    store: ResultNotifier, run_id: str, version: int, status: str, notice: str | None
) -> bool:
    return await store.save_state(
        run_id,
        expected_version=version,
        header={"v": version + 1},
        records={},
        context_writes={},
        outbox=(),
        status=status,
        notice=notice,
    )


def _notice(size: int) -> str:
    """A JSON text of exactly ``size`` bytes with characters a framing could trip on."""
    head = json.dumps({"text": 'é \u001f "q" \\ \n', "pad": ""})
    return head[:-2] + "x" * (size - len(head)) + head[-2:]


async def test_a_terminal_save_carries_its_notice_to_every_watch(harness: Harness) -> None:
    async with harness.backend() as backend:
        await backend.store.create_run(_record("r1"), {"v": 1})
        store = _notifier(backend.store)
        notice = _notice(store.notice_limit)
        async with store.watch("r1") as first, store.watch("r1") as second:
            assert _carried(first) is None
            assert await _save(store, "r1", 1, "completed", notice)
            assert await first.wait(_WAKE), "no notification after the run completed"
            assert await second.wait(_WAKE), "the second watch was not notified"
            assert first.notice == notice, "the notice did not arrive whole"
            assert second.notice == notice


async def test_a_refused_save_carries_nothing(harness: Harness) -> None:
    async with harness.backend() as backend:
        await backend.store.create_run(_record("r1"), {"v": 1})
        store = _notifier(backend.store)
        async with store.watch("r1") as watch:
            assert not await _save(store, "r1", 7, "completed", '{"wrong":1}')
            await watch.wait(_QUIET)  # a spurious wake is allowed, a notice is not
            assert watch.notice is None, "a save that did not commit sent its notice"
            assert await _save(store, "r1", 1, "running", None)
            await watch.wait(_QUIET)
            assert watch.notice is None


async def test_a_notice_over_the_limit_leaves_the_notification_bare(harness: Harness) -> None:
    async with harness.backend() as backend:
        await backend.store.create_run(_record("r1"), {"v": 1})
        await backend.store.create_run(_record("r2"), {"v": 1})
        store = _notifier(backend.store)
        async with store.watch("r1") as big, store.watch("r2") as small:
            assert await _save(store, "r1", 1, "failed", _notice(store.notice_limit + 1))
            assert await big.wait(_WAKE), "a notice too large for the channel lost the wake"
            assert big.notice is None, "a notice over notice_limit was carried"
            assert await _save(store, "r2", 1, "cancelled", None)
            assert await small.wait(_WAKE), "a save without a notice notified nobody"
            assert small.notice is None


class _Counting:
    """The backend's store, counting every read the waiting client makes."""

    def __init__(self, inner: RunStore) -> None:
        self._inner = inner
        self.reads: list[str] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def get_run(self, run_id: str) -> RunRecord | None:
        self.reads.append("get_run")
        return await self._inner.get_run(run_id)

    async def load_state(self, run_id: str, **kwargs: object) -> StoredState | None:
        self.reads.append("load_state")
        return await self._inner.load_state(run_id, **kwargs)  # type: ignore[arg-type]

    async def read_result(self, run_id: str, keys: object) -> StoredResult | None:
        self.reads.append("read_result")
        return await self._inner.read_result(run_id, keys)  # type: ignore[attr-defined, no-any-return]


async def test_the_result_comes_with_the_notification(harness: Harness) -> None:
    async with harness.session(_WIDE, _FAILS) as s:
        _notifier(s.backend.store)
        store = _Counting(s.backend.store)
        async with Client(queue=s.queue, store=store, blueprints=s.blueprints) as client:  # type: ignore[arg-type]
            for blueprint, status in (("wide", RunStatus.COMPLETED), ("fails", RunStatus.FAILED)):
                seen: list[list[str]] = []
                # A look at the record while the run sleeps, then the notice: no state read.
                # A fallback poll (1 s into the wait) that lands between the run's last save
                # and its notification reads the result, rightly: one run may meet that race,
                # three in a row may not.
                for _ in range(3):
                    handle = await s.start(blueprint, {"in": blueprint})
                    store.reads.clear()
                    result = await client.result(handle.run_id, timeout=20)
                    assert result.status is status
                    whole = await s.client.snapshot(handle.run_id)  # from the whole state
                    assert result == whole, f"{blueprint}: the result differs from the state's"
                    seen.append(list(store.reads))
                    if set(store.reads) == {"get_run"}:
                        break
                else:
                    raise AssertionError(f"{blueprint}: every result was read: {seen}")
        wide = await s.client.result((await s.start("wide", "x")).run_id, timeout=20)
        assert wide.output == {"B": {"b": [1, 2], "text": "é \u001f 'q' \""}, "C": "a"}
        assert wide.context == {"seen": "A", "n": 1}
