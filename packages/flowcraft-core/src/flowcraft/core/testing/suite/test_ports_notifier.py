"""Runs' ends without polling (``ports.RunNotifier``, capability ``run_notifications``).

A watch of a run wakes when a save with a terminal status commits (every such save, every
watch of the run), and ``Client.result`` waits for that instead of polling the record. A
backend without the capability runs these as strict xfails: its store must not look like a
notifier that never notifies.
"""

from __future__ import annotations

import asyncio

import pytest
from flowcraft.core import Client
from flowcraft.core.ports import RunNotifier, RunRecord, RunStore
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.suite._dsl import bp, n

#: Capabilities every test of this module needs (see ``test_ports_coordination``).
FLOWCRAFT_REQUIRES = ("run_notifications",)

_SLOW = bp("slow", [n("S", "sleep", seconds=2.5)])
_WAKE = 5.0  # generous: a notification normally comes within milliseconds


def _record(run_id: str) -> RunRecord:
    return RunRecord(run_id=run_id, blueprint_id="bp", blueprint_version="1", blueprint_digest="d")


async def _save(store: RunStore, run_id: str, version: int, status: str) -> bool:
    return await store.save_state(
        run_id,
        expected_version=version,
        header={"v": version + 1},
        records={},
        context_writes={},
        outbox=(),
        status=status,
    )


def _notifier(store: RunStore) -> RunNotifier:
    assert isinstance(store, RunNotifier), "the backend declares run_notifications"
    return store


async def test_a_terminal_save_wakes_the_watch_of_its_run(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {"v": 1})
        async with _notifier(store).watch("r1") as watch:
            assert await _save(store, "r1", 1, "running")
            await watch.wait(0.3)  # a spurious wake is allowed: drain it
            assert await _save(store, "r1", 2, "completed")
            assert await watch.wait(_WAKE), "no notification after the run completed"


@pytest.mark.parametrize("status", ["failed", "cancelled"])
async def test_every_terminal_save_wakes_every_watch(harness: Harness, status: str) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {"v": 1})
        notifier = _notifier(store)
        async with notifier.watch("r1") as first, notifier.watch("r1") as second:
            assert await _save(store, "r1", 1, status)
            assert await first.wait(_WAKE)
            assert await second.wait(_WAKE)
            # the last attempts of an ended run finish with later saves: they notify too
            await asyncio.sleep(0.2)
            await first.wait(0.01)
            assert await _save(store, "r1", 2, status)
            assert await first.wait(_WAKE), "a second terminal save notified nobody"


async def test_a_notification_before_wait_is_not_lost(harness: Harness) -> None:
    async with harness.backend() as backend:
        store = backend.store
        await store.create_run(_record("r1"), {"v": 1})
        async with _notifier(store).watch("r1") as watch:
            assert await _save(store, "r1", 1, "completed")
            await asyncio.sleep(0.5)  # the notification arrives while nobody waits
            assert await watch.wait(_WAKE)


class _CountingStore:
    """The backend's store, counting the record reads ``Client.result`` makes."""

    def __init__(self, inner: RunStore) -> None:
        self._inner = inner
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def get_run(self, run_id: str) -> RunRecord | None:
        self.reads += 1
        return await self._inner.get_run(run_id)


async def test_result_waits_for_the_notification_instead_of_polling(harness: Harness) -> None:
    async with harness.session(_SLOW) as s:
        counting = _CountingStore(s.backend.store)
        client = Client(queue=s.queue, store=counting, blueprints=s.blueprints)  # type: ignore[arg-type]
        async with client:
            handle = await s.start("slow")
            result = await client.result(handle.run_id, timeout=30)
        assert result.status.value == "completed"
        # Polling reads the record every 20-500 ms: a dozen reads in 2.5 s. Woken by the
        # notification, the client reads it at the start, at the 1 s fallback and when woken.
        assert counting.reads <= 4, f"{counting.reads} record reads: the client polled"
