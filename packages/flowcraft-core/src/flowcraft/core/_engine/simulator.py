"""A deterministic, synchronous simulator of a runtime around the decision core.

Virtual time, no threads, no I/O: node implementations are plain functions, timers are entries
in a heap, child runs are simulated runs. It can deliver every event twice (duplicate delivery)
to prove that duplicates change nothing. The unit and property tests of the core drive it; it is
also the reference the real runtimes are compared with.

With ``check_records`` (the default) every step also proves the stored form of the state right
(``records.py``): the records a decision marks as changed rebuild exactly the state it left; the
state before the step, patched with those records, is the state after it; and a decision that is
never saved, rolled back with the stored values of the keys it touched, leaves nothing behind.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

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
from flowcraft.core._engine.events import (
    CancelRequested,
    ChildOutcome,
    ChildRunChanged,
    Event,
    NodeFailed,
    NodeResumed,
    NodeSucceeded,
    NodeSuspended,
    RunStarted,
    TimerFired,
)
from flowcraft.core._engine.plan import Plan
from flowcraft.core._engine.records import (
    all_records,
    changed_keys,
    changed_records,
    header_of,
    patch_state,
    state_from_records,
)
from flowcraft.core._engine.state import NodeError, NodeStatus, RunState, RunStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """What a simulated node implementation receives."""

    run_id: str
    node_id: str
    frame: str
    attempt: int
    input: object
    params: Mapping[str, object]
    context: Mapping[str, object]
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """A richer result than a bare output: an action, context writes, a duration, a suspension."""

    output: object = None
    action: str | None = None
    writes: Mapping[str, object] = field(default_factory=dict)
    duration: float = 0.0
    suspend: bool = False


#: How long after the first delivery a duplicate is delivered again (virtual seconds).
LATE = 0.05

#: A node implementation: returns an output or an :class:`Outcome`, or raises.
Impl = Callable[[Call], object]


@dataclass(slots=True)
class SimRun:
    """One simulated run and what happened in it."""

    state: RunState
    parent: tuple[str, str, str, int] | None = None  # (run id, node id, frame, attempt)
    reported: ChildOutcome | None = None
    decisions: list[Decision] = field(default_factory=list)
    #: The run as a store would hold it (header, records), with ``check_records``.
    header: dict[str, object] = field(default_factory=dict)
    records: dict[str, object] = field(default_factory=dict)


class Simulator:
    """Drives runs of the decision core in virtual time."""

    def __init__(
        self,
        plans: Mapping[str, Plan],
        registry: Mapping[str, Impl],
        *,
        duplicate: bool = False,
        check_records: bool = True,
    ) -> None:
        self.check_records = check_records
        self.plans = plans
        self.registry = registry
        self.duplicate = duplicate
        self.now = 0.0
        self.runs: dict[str, SimRun] = {}
        self.calls: list[Call] = []
        self._queue: list[tuple[float, int, str, Event]] = []
        self._seq = itertools.count()
        self._late: set[int] = set()

    # ---------------------------------------------------------------- public API

    def start(self, plan_id: str, input: object = None, *, run_id: str = "run") -> SimRun:
        """Create a run and queue its start."""
        run = SimRun(state=new_run(run_id, self.plans[plan_id]))
        if self.check_records:
            run.state.changes = set()
            run.header = header_of(run.state)
        self.runs[run_id] = run
        self.post(run_id, RunStarted(at=self.now, input=input))
        return run

    def post(self, run_id: str, event: Event, delay: float = 0.0) -> None:
        """Queue ``event`` for ``run_id`` after ``delay`` virtual seconds."""
        heapq.heappush(self._queue, (self.now + delay, next(self._seq), run_id, event))

    def resume(
        self,
        run_id: str,
        node_id: str,
        *,
        output: object = None,
        action: str | None = None,
        frame: str = "",
    ) -> Decision:
        """Resume now (synchronously) and return the decision (its rejection, if any)."""
        return self._apply(
            run_id,
            NodeResumed(at=self.now, node_id=node_id, frame=frame, output=output, action=action),
        )

    def cancel(self, run_id: str) -> Decision:
        """Cancel now (synchronously)."""
        return self._apply(run_id, CancelRequested(at=self.now))

    def status(self, run_id: str = "run") -> RunStatus:
        """The status of a run now."""
        return self.runs[run_id].state.status

    def run_until_idle(self, max_steps: int = 1_000_000) -> None:
        """Process queued events in time order until none is left."""
        self.run_until(float("inf"), max_steps=max_steps)

    def run_until(self, time: float, *, max_steps: int = 1_000_000) -> None:
        """Process queued events due at or before ``time`` (virtual seconds)."""
        for _ in range(max_steps):
            if not self._queue or self._queue[0][0] > time:
                return
            at, seq, run_id, event = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            self._apply(run_id, event)
            if self.duplicate and seq not in self._late:
                self._apply(run_id, event)  # redelivered at once, and once more later
                heapq.heappush(self._queue, (self.now + LATE, self._late_seq(), run_id, event))
        raise RuntimeError("simulation did not settle")

    # ---------------------------------------------------------------- internals

    def _late_seq(self) -> int:
        seq = next(self._seq)
        self._late.add(seq)
        return seq

    def _apply(self, run_id: str, event: Event) -> Decision:
        run = self.runs[run_id]
        before = self._stored_state(run) if self.check_records else None
        decision = apply(run.state, event)
        if before is not None:
            self._check_records(run, before)
        run.decisions.append(decision)
        for action in decision.actions:
            self._carry_out(run, action)
        self._report_to_parent(run)
        return decision

    def _stored_state(self, run: SimRun) -> RunState:
        state = run.state
        return state_from_records(state.run_id, state.plan, run.header, run.records, state.context)

    def _check_records(self, run: SimRun, before: RunState) -> None:
        """Save the step's changes to the run's records and prove them (see the docstring)."""
        state = run.state
        written = changed_records(state)
        assert state.changes is not None
        state.changes.clear()
        run.header = header_of(state)
        run.records.update(written)
        expected = _snapshot(state)
        assert _snapshot(self._stored_state(run)) == expected, "records do not rebuild the state"
        patch_state(before, run.header, written)
        before.context = dict(state.context)
        assert _snapshot(before) == expected, "the step's records do not patch the state"
        unsaved = self._stored_state(run)
        unsaved.changes = set()
        apply(unsaved, CancelRequested(at=self.now))
        touched = changed_keys(unsaved)
        patch_state(
            unsaved,
            run.header,
            {k: run.records[k] for k in touched if k in run.records},
            [k for k in touched if k not in run.records],
        )
        assert _snapshot(unsaved) == expected, "an unsaved decision is not rolled back"

    def _carry_out(self, run: SimRun, action: Action) -> None:
        run_id = run.state.run_id
        if isinstance(action, RunNode):
            self._run_node(run, action)
        elif isinstance(action, ScheduleTimer):
            self.post(
                run_id,
                TimerFired(
                    at=self.now + action.delay,
                    node_id=action.node_id,
                    frame=action.frame,
                    attempt=action.attempt,
                    purpose=action.purpose,
                ),
                action.delay,
            )
        elif isinstance(action, StartChildRun):
            self._start_child(run, action)
        elif isinstance(action, CancelChildRun):
            self.post(action.child_run_id, CancelRequested(at=self.now))
        elif isinstance(action, ResumeChildRun):
            self._resume_child(action)
        elif isinstance(action, CancelNode):
            pass  # simulated nodes finish instantly; their late events are ignored by the core

    def _run_node(self, run: SimRun, action: RunNode) -> None:
        call = Call(
            run_id=run.state.run_id,
            node_id=action.node_id,
            frame=action.frame,
            attempt=action.attempt,
            input=action.input,
            params=action.params,
            context=dict(run.state.context),
            now=self.now,
        )
        self.calls.append(call)
        try:
            result = self.registry[action.uses](call)
        except Exception as exc:  # a node failure is data for the core
            error = NodeError(
                node_id=action.node_id,
                frame=action.frame,
                attempt=action.attempt,
                type=type(exc).__name__,
                message=str(exc),
            )
            failed = NodeFailed(
                at=self.now,
                node_id=action.node_id,
                frame=action.frame,
                attempt=action.attempt,
                error=error,
            )
            self.post(run.state.run_id, failed)
            return
        outcome = result if isinstance(result, Outcome) else Outcome(output=result)
        at = self.now + outcome.duration
        event: Event
        if outcome.suspend:
            event = NodeSuspended(
                at=at, node_id=action.node_id, frame=action.frame, attempt=action.attempt
            )
        else:
            event = NodeSucceeded(
                at=at,
                output=outcome.output,
                action=outcome.action,
                context_writes=outcome.writes,
                node_id=action.node_id,
                frame=action.frame,
                attempt=action.attempt,
            )
        self.post(run.state.run_id, event, outcome.duration)

    def _start_child(self, run: SimRun, action: StartChildRun) -> None:
        if action.child_run_id in self.runs:
            return
        child = self.start(action.blueprint, action.input, run_id=action.child_run_id)
        child.parent = (run.state.run_id, action.node_id, action.frame, action.attempt)

    def _resume_child(self, action: ResumeChildRun) -> None:
        child = self.runs[action.child_run_id]
        awaiting = [r for r in child.state.nodes.values() if r.status is NodeStatus.AWAITING]
        if len(awaiting) == 1:
            target = awaiting[0]
            self.resume(
                child.state.run_id,
                target.node_id,
                output=action.output,
                action=action.action,
                frame=target.frame,
            )

    def _report_to_parent(self, run: SimRun) -> None:
        if run.parent is None:
            return
        outcome = _outcome_of(run.state.status)
        if outcome is None or outcome is run.reported:
            return
        run.reported = outcome
        parent_id, node_id, frame, attempt = run.parent
        error = run.state.errors[0] if run.state.errors else None
        outputs = {
            r.node_id: r.output
            for r in run.state.nodes.values()
            if r.frame == "" and r.status is NodeStatus.SUCCEEDED
        }
        self.post(
            parent_id,
            ChildRunChanged(
                at=self.now,
                node_id=node_id,
                frame=frame,
                attempt=attempt,
                outcome=outcome,
                output=run.state.output,
                outputs=outputs,
                error=error,
            ),
        )


def _outcome_of(status: RunStatus) -> ChildOutcome | None:
    return {
        RunStatus.COMPLETED: ChildOutcome.COMPLETED,
        RunStatus.FAILED: ChildOutcome.FAILED,
        RunStatus.CANCELLED: ChildOutcome.CANCELLED,
        RunStatus.AWAITING: ChildOutcome.AWAITING,
        RunStatus.RUNNING: ChildOutcome.RUNNING,
    }.get(status)


def _snapshot(state: RunState) -> tuple[object, ...]:
    """Everything a state holds, comparable (what the records hold and what is derived)."""
    return (
        header_of(state),
        all_records(state),
        dict(state.tokens),
        {name: (id(f.plan), f.owner) for name, f in state.frames.items()},
        {k: (cs.frames, cs.active, cs.items) for k, cs in state.constructs.items()},
    )
