"""``flowcraft.core.aio.TurnBatch``: one event-loop turn handled together, each caller alone."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
from flowcraft.core.aio import TurnBatch


class _Handler:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def handle(self, entries: list[int]) -> list[int | BaseException]:
        self.calls.append(entries)
        await asyncio.sleep(0)
        return [ValueError(f"no {e}") if e < 0 else e * 10 for e in entries]

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def test_one_turn_is_one_call_and_each_caller_gets_its_own_answer() -> None:
    handler = _Handler()
    batch: TurnBatch[int, int] = TurnBatch(handler.handle, limit=3, spawn=handler.spawn)
    answers = await asyncio.gather(*(batch.submit(e) for e in (1, 2, -3, 4)),
                                   return_exceptions=True)  # fmt: skip
    assert handler.calls == [[1, 2, -3], [4]]
    assert [answers[0], answers[1], answers[3]] == [10, 20, 40]
    assert isinstance(answers[2], ValueError)
    assert str(answers[2]) == "no -3"
    assert await batch.submit(5) == 50
    assert handler.calls[-1] == [5]


async def test_a_failed_call_fails_every_caller() -> None:
    async def broken(entries: list[int]) -> list[int | BaseException]:
        raise RuntimeError("down")

    handler = _Handler()
    batch: TurnBatch[int, int] = TurnBatch(broken, limit=10, spawn=handler.spawn)
    answers = await asyncio.gather(batch.submit(1), batch.submit(2), return_exceptions=True)
    assert [str(a) for a in answers] == ["down", "down"]
    with pytest.raises(RuntimeError, match="down"):
        await batch.submit(3)


async def test_split_cuts_a_turn_into_calls_and_each_caller_still_gets_its_own_answer() -> None:
    def by_sum(entries: list[int]) -> list[list[int]]:  # a call's entries total at most 5
        calls: list[list[int]] = [[]]
        for entry in entries:
            if calls[-1] and sum(calls[-1]) + entry > 5:
                calls.append([])
            calls[-1].append(entry)
        return calls

    handler = _Handler()
    batch: TurnBatch[int, int] = TurnBatch(handler.handle, split=by_sum, spawn=handler.spawn)
    answers = await asyncio.gather(*(batch.submit(e) for e in (1, 4, 2, 2, 3)))
    assert handler.calls == [[1, 4], [2, 2], [3]]
    assert answers == [10, 40, 20, 20, 30]


def test_a_turn_batch_takes_a_limit_or_a_split() -> None:
    handler = _Handler()
    with pytest.raises(TypeError, match="limit or split"):
        TurnBatch(handler.handle, spawn=handler.spawn)
    with pytest.raises(TypeError, match="not both"):
        TurnBatch(handler.handle, limit=2, split=lambda e: [e], spawn=handler.spawn)
