"""Lifecycle events of the distributed runtime: who emits them, when, and at what cost."""

from __future__ import annotations

import asyncio
import time
from typing import NoReturn

import pytest
from flowcraft.core import (
    BlueprintSet,
    Client,
    EventBus,
    MemoryJobQueue,
    MemoryRunStore,
    Worker,
    parse_blueprint,
)
from flowcraft.core import events as fe
from flowcraft.core._distributed import coordinator as coordinator_module
from flowcraft.core._distributed.coordinator import Coordinator
from flowcraft.core._engine import events as ev
from flowcraft.core.testing import nodes

CHAIN = parse_blueprint(
    {
        "id": "chain",
        "version": "1",
        "nodes": [
            {"id": "S", "uses": "suite.const", "params": {"value": 1}},
            {"id": "T", "uses": "suite.echo"},
        ],
        "edges": [{"source": "S", "target": "T"}],
    },
    registry=nodes.registry(),
)


def _names(events: list[fe.FlowEvent]) -> list[str]:
    return [type(event).__name__ for event in events]


def test_worker_and_client_take_a_bus_or_make_their_own() -> None:
    queue, store, bus = MemoryJobQueue(), MemoryRunStore(), EventBus()
    shared = Worker(queue=queue, store=store, registry={}, blueprints=[CHAIN], events=bus)
    client = Client(queue=queue, store=store, blueprints=[CHAIN], events=bus)
    assert shared.events is bus
    assert client.events is bus
    assert shared.coordinator.events is bus
    assert client.coordinator.events is bus
    own = Worker(queue=queue, store=store, registry={}, blueprints=[CHAIN])
    assert own.events is not bus
    assert not own.events.has_listeners


async def test_a_lost_compare_and_set_emits_nothing() -> None:
    """Two processes decide one event (a duplicate delivery): only the save that won emits."""
    queue, store = MemoryJobQueue(), MemoryRunStore()
    async with Client(queue=queue, store=store, blueprints=[CHAIN]) as client:
        first: list[fe.FlowEvent] = []
        client.events.subscribe(first.append)
        handle = await client.start("chain")
        other = Coordinator(store=store, queue=queue, blueprints=BlueprintSet([CHAIN]))
        late: list[fe.FlowEvent] = []
        other.events.subscribe(late.append)
        await other.load_run(handle.run_id)  # it holds the state before the event
        done = ev.NodeSucceeded(at=time.time(), node_id="S", attempt=1, output=1)
        won = await client.coordinator.apply(handle.run_id, done)
        lost = await other.apply(handle.run_id, done)  # held state: the save loses, decided again
        await other.close()
    assert (won.saved, lost.saved) == (True, False)
    assert _names(first) == ["RunStarted", "NodeSucceeded"]  # T's start is its worker's
    assert late == []


async def test_nothing_is_built_without_listeners(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("an event was built with nobody listening")

    monkeypatch.setattr(coordinator_module, "event_of", forbidden)
    monkeypatch.setattr(Worker, "_started", forbidden)
    queue, store = MemoryJobQueue(), MemoryRunStore()
    worker = Worker(
        queue=queue, store=store, registry=nodes.registry(), blueprints=[CHAIN], poll=0.02
    )
    task = asyncio.ensure_future(worker.run())
    try:
        async with Client(queue=queue, store=store, blueprints=[CHAIN]) as client:
            result = await (await client.start("chain")).result(timeout=10)
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 10)
    assert result.output == 1


async def test_each_process_emits_what_it_decided_and_the_worker_the_starts() -> None:
    queue, store = MemoryJobQueue(), MemoryRunStore()
    worker = Worker(
        queue=queue, store=store, registry=nodes.registry(), blueprints=[CHAIN], poll=0.02
    )
    on_worker: list[fe.FlowEvent] = []
    worker.events.subscribe(on_worker.append)
    task = asyncio.ensure_future(worker.run())
    try:
        async with Client(queue=queue, store=store, blueprints=[CHAIN]) as client:
            on_client: list[fe.FlowEvent] = []
            client.events.subscribe(on_client.append)
            result = await (await client.start("chain")).result(timeout=10)
    finally:
        worker.stopping.set()
        await asyncio.wait_for(task, 10)
    assert result.output == 1
    assert _names(on_client) == ["RunStarted"]
    assert _names(on_worker) == [
        "NodeStarted",
        "NodeSucceeded",
        "NodeStarted",
        "NodeSucceeded",
        "RunCompleted",
    ]
    assert [getattr(event, "node_id", None) for event in on_worker] == ["S", "S", "T", "T", None]
