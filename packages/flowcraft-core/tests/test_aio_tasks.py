"""``flowcraft.core.aio.BackgroundTasks``: kept until done, failures logged, waited for."""

from __future__ import annotations

import asyncio
import logging

import pytest
from flowcraft.core.aio import BackgroundTasks

_LOG = logging.getLogger("flowcraft.test.aio")


async def test_a_failed_task_is_logged_with_what_it_was(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks(_LOG, "background clean-up")

    async def fail() -> None:
        raise ConnectionResetError("gone")

    tasks.spawn(fail())
    with caplog.at_level(logging.WARNING, logger="flowcraft.test.aio"):
        await tasks.wait(until_empty=True)
        await asyncio.sleep(0)  # the done callback runs after the gather's
    assert [r.getMessage() for r in caplog.records] == ["background clean-up failed: gone"]


async def test_a_cancelled_task_leaves_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks(_LOG, "x")
    tasks.spawn(asyncio.sleep(10))
    await asyncio.sleep(0)
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.cancel()
    with caplog.at_level(logging.WARNING, logger="flowcraft.test.aio"):
        await tasks.wait(until_empty=True)
        await asyncio.sleep(0)
    assert caplog.records == []


@pytest.mark.parametrize(
    ("until_empty", "expected"), [(True, ["first", "second"]), (False, ["first"])]
)
async def test_wait_until_empty_also_waits_for_tasks_spawned_meanwhile(
    until_empty: bool, expected: list[str]
) -> None:
    tasks = BackgroundTasks(_LOG, "x")
    done: list[str] = []
    release = asyncio.Event()

    async def second() -> None:
        await release.wait()
        done.append("second")

    async def first() -> None:
        await asyncio.sleep(0.005)  # spawns once the wait has begun
        tasks.spawn(second())
        done.append("first")

    tasks.spawn(first())
    waiting = asyncio.ensure_future(tasks.wait(until_empty=until_empty))
    await asyncio.sleep(0.05)
    assert done == expected[:1]
    release.set()
    await waiting
    assert done == expected
    await tasks.wait(until_empty=True)
