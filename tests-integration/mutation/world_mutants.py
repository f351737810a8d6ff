"""Deliberately broken variants of ``InMemoryWorld`` (the World suite's mutation check).

Loaded as a pytest plugin (``-p world_mutants``) with ``FLOWCRAFT_WORLD_MUTANT=<name>``: it
breaks one guarantee of the World protocol before the suite runs. ``test_world_mutation.py``
runs the World suite on each and requires it to fail.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime

from flowcraft.core.world import (
    EventResult,
    NewEvent,
    Policy,
    QueueHandler,
    RunStatus,
    Snapshot,
    StepStatus,
    WaitStatus,
    _memory,
    _memory_queue,
    _memory_streams,
)
from flowcraft.core.world._rules import Outcome, Refusal

MUTANT_ENV = "FLOWCRAFT_WORLD_MUTANT"

Decide = Callable[..., Outcome]


def _patch_snapshot(change: Callable[[Snapshot], Snapshot]) -> None:
    """``InMemoryWorld`` decides on a doctored snapshot."""
    original: Decide = _memory.decide  # type: ignore[attr-defined]

    def decide(
        snapshot: Snapshot, run_id: str, event: NewEvent, *, now: datetime, policy: Policy
    ) -> Outcome:
        return original(change(snapshot), run_id, event, now=now, policy=policy)

    _memory.decide = decide  # type: ignore[attr-defined]


def _log_with_holes() -> None:
    """Sequences are reserved under the lock but events stored later, in any order."""

    async def events_create(
        self: _memory.InMemoryWorld, run_id: str | None, event: NewEvent
    ) -> EventResult:
        resolved = _memory._resolve_run_id(run_id, event)
        with self.state.lock:
            snapshot = self._load(resolved, event)
            outcome = _memory.decide(  # type: ignore[attr-defined]
                snapshot, resolved, event, now=self._clock(), policy=self._policy
            )
            if isinstance(outcome, Refusal):
                raise outcome.error
            log = self.state.runs.get(resolved)
            if log is not None and outcome.events:
                log.last_sequence = outcome.events[-1].sequence
        await asyncio.sleep(random.random() * 0.003)
        with self.state.lock:
            self._commit(resolved, outcome)
        return outcome.result

    _memory.InMemoryWorld.events_create = events_create  # type: ignore[method-assign]


def _terminal_run_accepts_transitions() -> None:
    def running(snapshot: Snapshot) -> Snapshot:
        run = snapshot.run
        if run is not None and run.status.terminal:
            run = run.model_copy(update={"status": RunStatus.RUNNING})
        return replace(snapshot, run=run)

    _patch_snapshot(running)


def _step_completes_twice() -> None:
    def reopened(snapshot: Snapshot) -> Snapshot:
        step = snapshot.step
        if step is not None and step.status == StepStatus.COMPLETED:
            step = step.model_copy(update={"status": StepStatus.RUNNING})
        return replace(snapshot, step=step)

    _patch_snapshot(reopened)


def _hook_token_reused() -> None:
    _patch_snapshot(lambda snapshot: replace(snapshot, token_holder=None))


def _wait_completes_twice() -> None:
    def waiting(snapshot: Snapshot) -> Snapshot:
        wait = snapshot.wait
        if wait is not None:
            wait = wait.model_copy(update={"status": WaitStatus.WAITING})
        return replace(snapshot, wait=wait)

    _patch_snapshot(waiting)


def _stream_loses_eof() -> None:
    def close(self: _memory_streams.MemoryStreams, run_id: str, name: str) -> None:
        self._stream(run_id, name)

    _memory_streams.MemoryStreams.close = close  # type: ignore[method-assign]


def _queue_without_redelivery() -> None:
    async def deliver(
        self: _memory_queue.MemoryQueue,
        envelope: _memory_queue.Envelope,
        handler: QueueHandler,
    ) -> None:
        envelope.attempt += 1
        try:
            answer = await handler(
                envelope.message,
                queue_name=envelope.queue_name,
                message_id=envelope.message_id,
                attempt=envelope.attempt,
            )
        except Exception:
            return
        del answer  # a Redeliver is ignored too

    _memory_queue.MemoryQueue._deliver = deliver  # type: ignore[method-assign]


MUTANTS: Mapping[str, Callable[[], None]] = {
    "log_with_holes": _log_with_holes,
    "terminal_run_accepts_transitions": _terminal_run_accepts_transitions,
    "step_completes_twice": _step_completes_twice,
    "hook_token_reused_by_a_live_hook": _hook_token_reused,
    "wait_completes_twice": _wait_completes_twice,
    "stream_loses_eof": _stream_loses_eof,
    "queue_without_redelivery": _queue_without_redelivery,
}


def pytest_configure() -> None:
    """Apply the mutant named in the environment."""
    name = os.environ.get(MUTANT_ENV)
    if name:
        MUTANTS[name]()
