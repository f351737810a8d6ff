"""One run in memory: feeds events to the decision core and carries out its actions.

Everything happens on the event loop thread: events are applied one at a time from a queue (so a
child run reporting to its parent never re-enters a decision), node attempts are tasks, timers
are ``loop.call_later`` handles. The driver never branches on node state: the core decides.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowcraft.core._engine import events as ev
from flowcraft.core._engine.actions import (
    Action,
    CancelChildRun,
    CancelNode,
    Decision,
    ResumeChildRun,
    RunNode,
    ScheduleTimer,
    StartChildRun,
)
from flowcraft.core._engine.decide import apply, new_run
from flowcraft.core._engine.plan import Plan
from flowcraft.core._engine.state import NodeStatus, RunState, RunStatus
from flowcraft.core._runtime import events as public
from flowcraft.core._runtime.context import CancelFlag
from flowcraft.core._runtime.eager import start_eagerly
from flowcraft.core._runtime.result import RunResult, result_of

if TYPE_CHECKING:
    from flowcraft.core._runtime.runtime import FlowRuntime

_log = logging.getLogger("flowcraft.runtime")
_AttemptKey = tuple[str, str, int]
#: Node attempts started eagerly in a row before one goes through the event loop (fairness).
EAGER_STREAK = 64


@dataclass(slots=True)
class ParentLink:
    """Where a child run reports to."""

    driver: RunDriver
    node_id: str
    frame: str
    attempt: int


class RunDriver:
    """Drives one run of ``plan`` on the running event loop."""

    def __init__(
        self, runtime: FlowRuntime, run_id: str, plan: Plan, parent: ParentLink | None = None
    ) -> None:
        self.runtime = runtime
        self.state: RunState = new_run(run_id, plan)
        self.parent = parent
        self.done: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()
        self._queue: deque[ev.Event] = deque()
        self._draining = False
        self._tasks: dict[_AttemptKey, asyncio.Task[None]] = {}
        self._cancels: dict[_AttemptKey, CancelFlag] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._reported: ev.ChildOutcome | None = None
        self._eager_streak = 0

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.state.run_id

    # ---------------------------------------------------------------- events in

    def post(self, event: ev.Event) -> Decision | None:
        """Apply ``event`` (queued behind any event being applied); its decision if applied now."""
        self._queue.append(event)
        if self._draining:
            return None
        self._draining = True
        first: Decision | None = None
        try:
            while self._queue:
                decision = self._apply(self._queue.popleft())
                first = first or decision
        finally:
            self._draining = False
        return first

    def _apply(self, event: ev.Event) -> Decision:
        decision = apply(self.state, event, notices=self.runtime.events.has_listeners)
        if self.runtime.events.has_listeners:
            self._emit(decision, first=isinstance(event, ev.RunStarted))
        for action in decision.actions:
            self._carry_out(action)
        if decision.settled:
            self._finish()
        self._report_to_parent()
        return decision

    # ---------------------------------------------------------------- actions out

    def _carry_out(self, action: Action) -> None:
        handler = _ACTIONS[type(action)]
        handler(self, action)

    def _run_node(self, action: RunNode) -> None:
        key = (action.node_id, action.frame, action.attempt)
        cancelled = CancelFlag()
        self._cancels[key] = cancelled
        coro = self._attempt(action, cancelled)
        if action.timeout is None and self._eager_streak < EAGER_STREAK:
            self._eager_streak += 1
            task = start_eagerly(coro)
            if task is None:
                self._cancels.pop(key, None)
                return
        else:  # a real task turn lets the loop breathe between long eager streaks
            self._eager_streak = 0
            task = asyncio.get_running_loop().create_task(coro)
        self._tasks[key] = task
        task.add_done_callback(lambda _t: self._forget(key))

    def _forget(self, key: _AttemptKey) -> None:
        self._tasks.pop(key, None)
        self._cancels.pop(key, None)

    def _schedule(self, action: ScheduleTimer) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            self.post(
                ev.TimerFired(
                    at=time.time(),
                    node_id=action.node_id,
                    frame=action.frame,
                    attempt=action.attempt,
                    purpose=action.purpose,
                )
            )

        handle = loop.call_later(action.delay, fire)
        self._timers.add(handle)

    def _start_child(self, action: StartChildRun) -> None:
        link = ParentLink(self, action.node_id, action.frame, action.attempt)
        self.runtime._start_child(action, link)

    def _cancel_child(self, action: CancelChildRun) -> None:
        child = self.runtime._drivers.get(action.child_run_id)
        if child is not None:
            asyncio.get_running_loop().call_soon(child.post, ev.CancelRequested(at=time.time()))

    def _resume_child(self, action: ResumeChildRun) -> None:
        child = self.runtime._drivers.get(action.child_run_id)
        if child is None:
            return
        awaiting = [r for r in child.state.nodes.values() if r.status is NodeStatus.AWAITING]
        if len(awaiting) != 1:
            _log.error("resume of %s is ambiguous: %d awaiting nodes", child.run_id, len(awaiting))
            return
        target = awaiting[0]
        event = ev.NodeResumed(
            at=time.time(),
            node_id=target.node_id,
            frame=target.frame,
            output=action.output,
            action=action.action,
        )
        asyncio.get_running_loop().call_soon(child.post, event)

    def _cancel_node(self, action: CancelNode) -> None:
        key = (action.node_id, action.frame, action.attempt)
        flag = self._cancels.get(key)
        if flag is not None:
            flag.set()
        task = self._tasks.get(key)
        if task is not None:
            task.cancel()

    # ---------------------------------------------------------------- node attempts

    async def _attempt(self, action: RunNode, cancelled: CancelFlag) -> None:
        ctx = self.runtime.executor.context_for(action, self.state, cancelled)
        event = await self.runtime.executor.execute(action, ctx)
        if event is not None:
            self.post(event)

    # ---------------------------------------------------------------- run end and parents

    def _finish(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if not self.done.done():
            self.done.set_result(result_of(self.state))

    def _report_to_parent(self) -> None:
        if self.parent is None:
            return
        outcome = _OUTCOMES.get(self.state.status)
        if outcome is None or outcome is self._reported:
            return
        self._reported = outcome
        result = result_of(self.state)
        link = self.parent
        event = ev.ChildRunChanged(
            at=time.time(),
            node_id=link.node_id,
            frame=link.frame,
            attempt=link.attempt,
            outcome=outcome,
            output=result.output,
            outputs=result.outputs,
            error=result.errors[0] if result.errors else None,
        )
        asyncio.get_running_loop().call_soon(link.driver.post, event)

    # ---------------------------------------------------------------- events to the bus

    def _emit(self, decision: Decision, *, first: bool) -> None:
        now = time.time()
        for notice in decision.notices:
            event = public.event_of(notice, self.state, at=now, first=first)
            if event is not None:
                self.runtime.events.emit(event)


_ACTIONS: dict[type, Callable[[RunDriver, Any], None]] = {
    RunNode: RunDriver._run_node,
    ScheduleTimer: RunDriver._schedule,
    StartChildRun: RunDriver._start_child,
    CancelChildRun: RunDriver._cancel_child,
    ResumeChildRun: RunDriver._resume_child,
    CancelNode: RunDriver._cancel_node,
}
_OUTCOMES = {
    RunStatus.COMPLETED: ev.ChildOutcome.COMPLETED,
    RunStatus.FAILED: ev.ChildOutcome.FAILED,
    RunStatus.CANCELLED: ev.ChildOutcome.CANCELLED,
    RunStatus.AWAITING: ev.ChildOutcome.AWAITING,
    RunStatus.RUNNING: ev.ChildOutcome.RUNNING,
}
