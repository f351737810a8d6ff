"""Waiting in a fault test: for a condition, for runs, with a diagnosis when they never end."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Sequence

from flowcraft.core import DistributedRunHandle, RunResult
from flowcraft.core.ports import RunStore, StoredState

#: Lines describing the servers (queue depths, ...) for a failure message; adapter-specific.
Describe = Callable[[], Awaitable[Sequence[str]]]


async def until(what: str, seconds: float, predicate: Callable[[], bool | Awaitable[bool]]) -> None:
    """Return once ``predicate()`` is true (awaited when it returns an awaitable).

    Checks every 50 ms with ``asyncio.sleep`` (the loop keeps running); raises
    ``AssertionError("timed out waiting for: <what>")`` after ``seconds``.
    """
    deadline = time.monotonic() + seconds
    while not await _holds(predicate):
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.05)


async def _holds(predicate: Callable[[], bool | Awaitable[bool]]) -> bool:
    answer = predicate()
    return bool(await answer) if inspect.isawaitable(answer) else bool(answer)


def describe_state(run_id: str, state: StoredState | None) -> str:
    """One line on where a stored run stands: version, each node's (status, attempt), outbox."""
    if state is None:
        return f"run {run_id}: no stored state"
    nodes = {
        json.loads(key)[-1]: (value.get("status"), value.get("attempt"))
        for key, value in sorted(state.records.items())
        if key.startswith('["n"') and isinstance(value, dict)
    }
    outbox = [m.id for m in state.outbox]
    return f"run {run_id}: v{state.version}, nodes {nodes}, outbox {outbox}"


async def results(
    handles: Sequence[DistributedRunHandle],
    seconds: float,
    *,
    store: RunStore | None = None,
    describe: Describe | None = None,
) -> list[RunResult]:
    """Every run's final result, in the order of ``handles``, within ``seconds`` in all.

    Else raises ``AssertionError`` saying how many runs are unfinished and where they stand:
    each one's stored state (:func:`describe_state`, when ``store`` is given) and the lines
    ``describe`` returns (e.g. the adapter's queue depths).
    """
    deadline = time.monotonic() + seconds

    async def one(handle: DistributedRunHandle) -> RunResult | None:
        try:
            return await handle.result(timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            return None

    found = await asyncio.gather(*(one(h) for h in handles))
    done = [r for r in found if r is not None]
    if len(done) == len(handles):
        return done
    lines = [f"{len(handles) - len(done)} of {len(handles)} runs unfinished after {seconds} s"]
    if store is not None:
        for handle, result in zip(handles, found, strict=True):
            if result is None:
                lines.append(describe_state(handle.run_id, await store.load_state(handle.run_id)))
    if describe is not None:
        lines.extend(await describe())
    raise AssertionError("\n".join(lines))
