"""The client's start: one store write where the store is a ``RunStarter``, two otherwise,
and transient failures retried with the same run id (one run, its messages sent)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pytest
from flowcraft.core import Client, Flow, MemoryJobQueue, MemoryRunStore, RunStatus, Worker, node
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.ports import (
    ResultReader,
    RunPage,
    RunRecord,
    RunStarter,
    StoredState,
)


@node("start.step")
async def _step(ctx: Any) -> str:
    return f"ran {ctx.node_id}"


_FLOW = Flow("start", version="1").node("a", _step).node("b", _step).edge("a", "b").build()


class _TwoStep:
    """A run store with none of the optional capabilities (a memory store inside)."""

    def __init__(self, inner: MemoryRunStore) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self.fail_saves = 0  # saves that fail before writing
        self.lose_saves = 0  # saves that stand but answer with an error

    async def create_run(
        self,
        record: RunRecord,
        header: Mapping[str, object],
        records: Any = None,
    ) -> RunRecord:
        self.calls.append("create_run")
        return await self.inner.create_run(record, header, records)

    async def save_state(self, run_id: str, **kwargs: Any) -> bool:
        self.calls.append("save_state")
        if self.fail_saves:
            self.fail_saves -= 1
            raise TransientBackendError("save_state: DeadlockDetected: deadlock detected")
        saved = await self.inner.save_state(run_id, **kwargs)
        if self.lose_saves:
            self.lose_saves -= 1
            raise TransientBackendError("save_state: connection lost")
        return saved

    async def load_state(
        self, run_id: str, *, since: int | None = None, keys: Collection[str] = ()
    ) -> StoredState | None:
        self.calls.append("load_state")
        return await self.inner.load_state(run_id, since=since, keys=keys)

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self.inner.get_run(run_id)

    async def remove_outbox(self, sent: Mapping[str, Sequence[str]]) -> None:
        await self.inner.remove_outbox(sent)

    async def claim_attempt(self, *args: Any) -> Any:
        return await self.inner.claim_attempt(*args)

    async def extend_attempt(self, *args: Any) -> bool:
        return await self.inner.extend_attempt(*args)

    async def commit_attempt(self, *args: Any) -> bytes:
        return await self.inner.commit_attempt(*args)

    async def list_runs(self, **kwargs: Any) -> RunPage:
        return await self.inner.list_runs(**kwargs)

    async def stalled_runs(self, **kwargs: Any) -> Sequence[str]:
        return await self.inner.stalled_runs(**kwargs)


class _FlakyStarter(MemoryRunStore):
    """A starter whose first starts fail: before writing (``fail``) or after (``lose``)."""

    def __init__(self, *, fail: int = 0, lose: int = 0) -> None:
        super().__init__()
        self.fail, self.lose, self.starts = fail, lose, 0

    async def create_started_run(self, record: RunRecord, **kwargs: Any) -> tuple[RunRecord, bool]:
        self.starts += 1
        if self.fail:
            self.fail -= 1
            raise TransientBackendError("create_started_run: DeadlockDetected")
        answer = await super().create_started_run(record, **kwargs)
        if self.lose:
            self.lose -= 1
            raise TransientBackendError("create_started_run: connection lost")
        return answer


class _ClientView:
    """What the client sees of a store: every method, whole-state loads counted."""

    def __init__(self, inner: MemoryRunStore) -> None:
        self.inner = inner
        self.full_loads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def load_state(
        self, run_id: str, *, since: int | None = None, keys: Collection[str] = ()
    ) -> StoredState | None:
        self.full_loads += since is None
        return await self.inner.load_state(run_id, since=since, keys=keys)


async def _run(store: Any, run_id: str = "r1") -> tuple[Any, MemoryJobQueue]:
    queue = MemoryJobQueue(visibility=5)
    inner = store.inner if isinstance(store, (_TwoStep, _ClientView)) else store
    worker = Worker(queue=queue, store=inner, registry={"start.step": _step}, blueprints=[_FLOW],
                    poll=0.02)  # fmt: skip
    task = asyncio.ensure_future(worker.run())
    try:
        async with Client(queue=queue, store=store, blueprints=[_FLOW]) as client:
            handle = await client.start("start", run_id=run_id)
            result = await handle.result(timeout=10)
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 10)
    return result, queue


async def test_a_store_without_the_capabilities_takes_two_steps_and_loads_the_state() -> None:
    store = _TwoStep(MemoryRunStore())
    assert not isinstance(store, RunStarter)
    assert not isinstance(store, ResultReader)
    result, _queue = await _run(store)
    assert (result.status, result.output) == (RunStatus.COMPLETED, "ran b")
    assert store.calls[:2] == ["create_run", "save_state"]
    assert "load_state" in store.calls  # the result came from the whole state


async def test_a_memory_store_starts_in_one_step_and_reads_the_result_narrowly() -> None:
    store = _FlakyStarter()
    view = _ClientView(store)
    assert isinstance(view, RunStarter)
    assert isinstance(view, ResultReader)
    result, _queue = await _run(view)
    assert (result.status, result.output) == (RunStatus.COMPLETED, "ran b")
    assert (store.starts, view.full_loads) == (1, 0)


@pytest.mark.parametrize("how", ["fail_saves", "lose_saves"])
async def test_the_two_step_start_retries_a_transient_first_save(how: str) -> None:
    store = _TwoStep(MemoryRunStore())
    setattr(store, how, 1)
    result, queue = await _run(store)
    assert (result.status, result.output) == (RunStatus.COMPLETED, "ran b")
    page = await store.list_runs()
    assert [r.run_id for r in page.runs] == ["r1"]
    assert queue.dead_letters == []


@pytest.mark.parametrize(("fail", "lose"), [(1, 0), (0, 1), (2, 1)])
async def test_the_one_step_start_retries_and_makes_one_run(fail: int, lose: int) -> None:
    store = _FlakyStarter(fail=fail, lose=lose)
    view = _ClientView(store)
    result, _queue = await _run(view)
    assert (result.status, result.output) == (RunStatus.COMPLETED, "ran b")
    assert store.starts == fail + lose + 1
    assert view.full_loads == (1 if lose else 0)  # a lost answer: loaded whole, outbox sent
    page = await store.list_runs()
    assert [r.run_id for r in page.runs] == ["r1"]


async def test_a_start_gives_up_after_a_few_transient_failures() -> None:
    store = _FlakyStarter(fail=10)
    async with Client(queue=MemoryJobQueue(), store=store, blueprints=[_FLOW]) as client:
        with pytest.raises(TransientBackendError, match="DeadlockDetected"):
            await client.start("start", run_id="r1")
    assert store.starts == 4
    assert await store.get_run("r1") is None
