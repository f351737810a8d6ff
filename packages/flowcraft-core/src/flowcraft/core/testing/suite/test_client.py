"""The client's view of runs: status, and listing them (status filter, newest first, pages)."""

from __future__ import annotations

import pytest
from flowcraft.core._engine.state import RunStatus
from flowcraft.core.errors import RunNotFoundError
from flowcraft.core.testing.harness import Harness, Session
from flowcraft.core.testing.suite._dsl import bp, e, n
from flowcraft.core.testing.suite.test_wait_resume import _until

_DONE = bp("done", [n("A", "const", value=1), n("B", "inc")], [e("A", "B")])
_WAITS = bp("waits", [n("A", "const", value=1), n("W", "flowcraft.wait")], [e("A", "W")])
_FAILS = bp("failing", [n("F", "fail", times=9)])


async def _runs(s: Session, kinds: str) -> list[tuple[str, RunStatus]]:
    """Start one run per letter (d: completes, w: awaits, f: fails, c: cancelled), in order.

    Each has settled in its status before the next starts, so creation order is run order.
    """
    blueprints = {"d": "done", "w": "waits", "f": "failing", "c": "waits"}
    statuses = {
        "d": RunStatus.COMPLETED,
        "w": RunStatus.AWAITING,
        "f": RunStatus.FAILED,
        "c": RunStatus.CANCELLED,
    }
    started = []
    for kind in kinds:
        handle = await s.start(blueprints[kind])
        if kind == "c":
            await _until(s, handle.run_id, RunStatus.AWAITING)
            await handle.cancel()
        await _until(s, handle.run_id, statuses[kind])
        started.append((handle.run_id, statuses[kind]))
    return started


async def test_status_through_the_client(harness: Harness) -> None:
    async with harness.session(_DONE, _WAITS, _FAILS) as s:
        runs = await _runs(s, "dwfc")
        for run_id, status in runs:
            assert await s.client.status(run_id) is status
            assert await s.client.handle(run_id).status() is status
        waiting = runs[1][0]
        await s.client.resume(waiting, "W", output="w")
        await _until(s, waiting, RunStatus.COMPLETED)
        assert (await s.client.result(waiting, timeout=20)).output == "w"
        with pytest.raises(RunNotFoundError):
            await s.client.status("no-such-run")
        with pytest.raises(RunNotFoundError):
            await s.client.handle("no-such-run").status()


async def test_list_runs_newest_first_and_by_status(harness: Harness) -> None:
    async with harness.session(_DONE, _WAITS, _FAILS) as s:
        runs = await _runs(s, "dwdfcwd")
        newest_first = [run_id for run_id, _ in reversed(runs)]
        page = await s.client.list_runs()
        assert [r.run_id for r in page.runs] == newest_first
        assert page.cursor is None
        by_id = dict(runs)
        assert all(r.status == by_id[r.run_id].value for r in page.runs)
        assert {r.blueprint_id for r in page.runs} == {"done", "waits", "failing"}
        for status in RunStatus:
            wanted = [run_id for run_id in newest_first if by_id[run_id] is status]
            listed = await s.client.list_runs(status=status)
            assert [r.run_id for r in listed.runs] == wanted, status
            by_name = await s.client.list_runs(status=status.value)
            assert [r.run_id for r in by_name.runs] == wanted, status


async def test_list_runs_pages_with_a_cursor(harness: Harness) -> None:
    async with harness.session(_DONE, _WAITS, _FAILS) as s:
        runs = await _runs(s, "dddwdfd")
        newest_first = [run_id for run_id, _ in reversed(runs)]
        assert await _all_pages(s, limit=2) == newest_first
        assert await _all_pages(s, limit=3) == newest_first
        assert await _all_pages(s, limit=len(runs)) == newest_first
        completed = [run_id for run_id, status in reversed(runs) if status is RunStatus.COMPLETED]
        assert await _all_pages(s, limit=2, status=RunStatus.COMPLETED) == completed
        assert await _all_pages(s, limit=1, status=RunStatus.FAILED) == [runs[5][0]]


async def _all_pages(s: Session, *, limit: int, status: RunStatus | None = None) -> list[str]:
    """Every run id, page after page; each page but the last is full and has a cursor."""
    ids: list[str] = []
    cursor = None
    for _ in range(100):
        page = await s.client.list_runs(status=status, limit=limit, cursor=cursor)
        assert len(page.runs) <= limit
        ids.extend(r.run_id for r in page.runs)
        if page.cursor is None:
            return ids
        assert len(page.runs) == limit
        cursor = page.cursor
    raise AssertionError("list_runs never returned a last page")
