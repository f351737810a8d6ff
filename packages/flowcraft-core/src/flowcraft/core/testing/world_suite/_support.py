"""Helpers of the World suite: event builders, deadlines, reading whole logs."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from flowcraft.core.world import (
    Event,
    NewEvent,
    Pagination,
    RunCreatedData,
    WorkflowRun,
    World,
)

T = TypeVar("T")

#: The longest any single wait of the suite may take, seconds.
PATIENCE = 15.0


def ev(kind: str, correlation_id: str | None = None, data: object = None) -> NewEvent:
    """A ``NewEvent`` of ``kind`` (``data`` may be a mapping of the type's data fields)."""
    return NewEvent.model_validate(
        {"event_type": kind, "correlation_id": correlation_id, "data": data}
    )


def created(workflow: str = "suite", payload: bytes = b"\x00input") -> NewEvent:
    """A ``run_created`` event."""
    data = RunCreatedData(workflow_name=workflow, deployment_id="dpl_suite", input=payload)
    return NewEvent(event_type="run_created", data=data)  # type: ignore[arg-type]


async def new_run(world: World, *, started: bool = True, run_id: str | None = None) -> WorkflowRun:
    """A run (running unless ``started=False``)."""
    result = await world.events_create(run_id, created())
    run = result.run
    assert run is not None
    if started:
        run = (await world.events_create(run.run_id, ev("run_started"))).run
        assert run is not None
    return run


async def all_events(world: World, run_id: str, *, limit: int = 1000) -> list[Event]:
    """Every event of the run, ascending, page by page."""
    events: list[Event] = []
    cursor = None
    while True:
        page = await world.events_list(run_id, pagination=Pagination(limit=limit, cursor=cursor))
        events += page.data
        cursor = page.cursor
        if not page.has_more:
            return events


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, *, timeout: float = PATIENCE
) -> None:
    """Return once ``condition()`` holds; ``AssertionError`` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        holds = condition()
        if inspect.isawaitable(holds):
            holds = await holds
        if holds:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout} s: {what}")
        await asyncio.sleep(0.01)


async def within(awaitable: Awaitable[T], what: str, *, timeout: float = PATIENCE) -> T:
    """``await awaitable`` with a deadline naming ``what``."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise AssertionError(f"not done within {timeout} s: {what}") from None
