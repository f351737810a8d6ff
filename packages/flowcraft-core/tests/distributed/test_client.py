"""The distributed client: waiting for results."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection

import pytest
from flowcraft.core import (
    Client,
    Flow,
    MemoryJobQueue,
    MemoryRunStore,
    NodeContext,
    RunStatus,
    Worker,
    node,
)
from flowcraft.core._distributed import client as client_module
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.ports import RunNotifier, RunRecord, StoredState


class _CountingStore(MemoryRunStore):
    def __init__(self) -> None:
        super().__init__()
        self.loads = 0
        self.records = 0

    async def load_state(
        self, run_id: str, *, since: int | None = None, keys: Collection[str] = ()
    ) -> StoredState | None:
        self.loads += 1
        return await super().load_state(run_id, since=since, keys=keys)

    async def get_run(self, run_id: str) -> RunRecord | None:
        self.records += 1
        return await super().get_run(run_id)


class _Silent:
    """A counting store that cannot notify: no ``watch``."""

    def __init__(self) -> None:
        self.inner = _CountingStore()

    def __getattr__(self, name: str) -> object:
        if name == "watch":
            raise AttributeError(name)
        return getattr(self.inner, name)


class _Deaf(_CountingStore):
    """A notifier whose watches never wake (every notification lost)."""

    @contextlib.asynccontextmanager
    async def watch(self, run_id: str) -> AsyncIterator[_DeafWatch]:
        del run_id
        yield _DeafWatch()


class _DeafWatch:
    notice: str | None = None

    async def wait(self, timeout: float) -> bool:
        await asyncio.sleep(timeout)
        return False


class _Unreachable(_CountingStore):
    """A notifier whose server cannot be reached when a watch begins."""

    @contextlib.asynccontextmanager
    async def watch(self, run_id: str) -> AsyncIterator[_DeafWatch]:
        del run_id
        if self.records >= 0:  # always: the server is down
            raise TransientBackendError("listener down")
        yield _DeafWatch()


async def _follow(store: _CountingStore | _Silent, observe: float) -> tuple[int, int, float]:
    """Start a run whose node waits, observe the client for ``observe`` seconds, release it.

    Returns the record reads made while observing, the loads then, and the seconds from
    the release to the result.
    """
    release = asyncio.Event()

    @node("poll.wait")
    async def wait(ctx: NodeContext) -> str:
        del ctx
        await release.wait()
        return "done"

    flow = Flow("poll", version="1").node("w", wait).build()
    queue = MemoryJobQueue(visibility=5, sticky=True)
    inner = store.inner if isinstance(store, _Silent) else store
    worker = Worker(queue=queue, store=inner, registry={"poll.wait": wait}, blueprints=[flow],
                    poll=0.02)  # fmt: skip
    task = asyncio.ensure_future(worker.run())
    loop = asyncio.get_running_loop()
    try:
        async with Client(queue=queue, store=store, blueprints=[flow]) as client:  # type: ignore[arg-type]
            handle = await client.start("poll")
            waiting = asyncio.ensure_future(handle.result(timeout=10))
            await asyncio.sleep(0.1)
            counts = store.inner if isinstance(store, _Silent) else store
            loads, records = counts.loads, counts.records
            await asyncio.sleep(observe)
            reads, loaded = counts.records - records, counts.loads - loads
            release.set()
            released = loop.time()
            result = await waiting
            took = loop.time() - released
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 10)
    assert (result.status, result.output) == (RunStatus.COMPLETED, "done")
    return reads, loaded, took


async def test_result_polls_the_record_when_the_store_cannot_notify() -> None:
    store = _Silent()
    assert not isinstance(store, RunNotifier)
    reads, loads, _took = await _follow(store, 0.5)
    assert reads >= 3  # it kept polling ...
    assert loads == 0  # ... the record only, not the state


async def test_result_wakes_on_the_notification_without_polling() -> None:
    store = _CountingStore()
    assert isinstance(store, RunNotifier)
    reads, loads, took = await _follow(store, 0.6)
    assert (reads, loads) == (0, 0)  # nothing read while the run went on
    assert took < 0.5  # woken at once, not at the next fallback poll (1 s after the start)


async def test_a_lost_notification_only_delays_the_result() -> None:
    reads, _loads, took = await _follow(_Deaf(), 0.2)
    assert reads == 0
    assert took < 4.0  # the fallback poll found it


async def test_a_notifier_that_cannot_listen_leaves_the_client_polling() -> None:
    reads, _loads, _took = await _follow(_Unreachable(), 0.5)
    assert reads >= 3


# ------------------------------------------------------------------ runs watched from the start


async def _quick_session(
    store: _CountingStore, *, worker: bool = True
) -> tuple[Client, Worker, asyncio.Future[None]]:
    @node("quick.step")
    async def step(ctx: NodeContext) -> str:
        del ctx
        return "done"

    flow = Flow("quick", version="1").node("s", step).build()
    queue = MemoryJobQueue(visibility=5, sticky=True)
    runner = Worker(queue=queue, store=store, registry={"quick.step": step}, blueprints=[flow],
                    poll=0.02)  # fmt: skip
    if worker:
        task: asyncio.Future[None] = asyncio.ensure_future(runner.run())
    else:
        task = asyncio.get_running_loop().create_future()
        task.set_result(None)
    return Client(queue=queue, store=store, blueprints=[flow]), runner, task


async def test_a_run_this_client_started_is_waited_for_without_a_read() -> None:
    """Watched from before the run existed: no record read before the notification, even
    when the run ended long before ``result`` was called (the notification was kept)."""
    store = _CountingStore()
    client, worker, task = await _quick_session(store)
    try:
        handle = await client.start("quick")
        await asyncio.sleep(0.3)  # the run ends meanwhile
        records = store.records
        loop = asyncio.get_running_loop()
        began = loop.time()
        result = await handle.result(timeout=10)
        assert loop.time() - began < 0.5  # the kept notification, not the 1 s fallback read
        assert store.records == records  # built from the notification's notice: nothing read
        assert (result.status, result.output) == (RunStatus.COMPLETED, "done")
        # Another client (or a second wait) knows nothing of the run: it reads first.
        again = await client.result(handle.run_id, timeout=10)
        assert again.output == "done"
        assert store.records > records
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 10)
        await client.close()


async def test_a_start_that_finds_an_existing_run_keeps_no_early_watch() -> None:
    """An idempotency key that names a finished run: its result is read at once, not after
    the fallback poll (its end came before any watch)."""
    store = _CountingStore()
    client, worker, task = await _quick_session(store)
    try:
        first = await (await client.start("quick", idempotency_key="k")).result(timeout=10)
        loop = asyncio.get_running_loop()
        began = loop.time()
        handle = await client.start("quick", idempotency_key="k")
        assert handle.run_id == first.run_id
        assert (await handle.result(timeout=10)).output == "done"
        assert loop.time() - began < 0.5
        assert len(store._watchers) == 0
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 10)
        await client.close()


async def test_early_watches_are_bounded_and_closed_with_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "_EARLY_WATCHES", 2)
    store = _CountingStore()
    client, _worker, _task = await _quick_session(store, worker=False)
    handles = [await client.start("quick") for _ in range(3)]
    assert len(store._watchers) == 2
    with pytest.raises(TimeoutError):  # no worker: the oldest reads, the run is pending
        await handles[0].result(timeout=0.2)
    await client.close()
    assert len(store._watchers) == 0
