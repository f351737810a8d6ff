"""The decision core: ``apply(state, event) -> Decision``. Pure: no I/O, no clock, no randomness.

:func:`apply` updates the state in place (so a run of n nodes costs O(n), not O(n^2));
:func:`decide` is the functional form that leaves its argument untouched. Every transition rule
of DESIGN §4 lives here and in the modules it imports; the runtimes never branch on node state.

Duplicate and stale events are no-ops: an event about an attempt applies only while that attempt
is the current one and in the status the event expects, so redelivery can never move a node
backwards or count a join arrival twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from flowcraft.core._engine import constructs
from flowcraft.core._engine.actions import (
    CancelChildRun,
    CancelNode,
    Decision,
    NodeNotice,
    Rejection,
    ResumeChildRun,
    RunNode,
    RunNotice,
    ScheduleTimer,
    StartChildRun,
)
from flowcraft.core._engine.events import (
    DELETED,
    CancelRequested,
    ChildRunChanged,
    Event,
    NodeFailed,
    NodeResumed,
    NodeSucceeded,
    NodeSuspended,
    RunStarted,
    TimerFired,
    TimerPurpose,
)
from flowcraft.core._engine.frames import ROOT, InstanceKey, attempt_id, instance_id
from flowcraft.core._engine.plan import Expression, Join, NodeKind, Plan, PlanEdge, PlanNode
from flowcraft.core._engine.retry import backoff_delay
from flowcraft.core._engine.scope import (
    OutputsView,
    evaluate,
    has_output,
    resolve_inputs,
)
from flowcraft.core._engine.state import (
    Arrival,
    FrameState,
    NodeError,
    NodeRecord,
    NodeStatus,
    RunState,
    RunStatus,
    set_node_status,
)

_S = NodeStatus
_LIVE = frozenset({_S.PENDING, _S.RUNNING, _S.SLEEPING, _S.AWAITING})
#: Live instances that are not executing right now (cancelled when the run fails).
_NOT_STARTED = frozenset({_S.PENDING, _S.SLEEPING, _S.AWAITING})


def new_run(run_id: str, plan: Plan) -> RunState:
    """A fresh run state (status pending) for ``plan``."""
    return RunState(run_id=run_id, plan=plan)


def decide(state: RunState, event: Event) -> tuple[RunState, Decision]:
    """The functional form: a new state and the decision; ``state`` is left untouched."""
    new = state.clone()
    return new, apply(new, event)


def apply(state: RunState, event: Event, *, notices: bool = True) -> Decision:
    """Apply one event to ``state`` (in place) and return what to do next.

    ``notices=False`` leaves :attr:`Decision.notices` empty (nobody listens: saves the work).
    """
    return Machine(state, event.at, notices=notices).handle(event)


class RoutingError(Exception):
    """An edge expression failed while routing; carries the structured error."""

    def __init__(self, error: NodeError) -> None:
        super().__init__(error.message)
        self.error = error


class Machine:
    """One event's worth of decisions over a run state."""

    def __init__(self, state: RunState, now: float, *, notices: bool = True) -> None:
        self.state = state
        self.now = now
        self._notices = notices
        self.decision = Decision()
        self._skips: deque[tuple[FrameState, str]] = deque()

    # ------------------------------------------------------------------ dispatch

    def handle(self, event: Event) -> Decision:
        """Dispatch ``event``, finish propagation and settle the run status."""
        handler: Callable[[Any], None] = _HANDLERS[type(event)].__get__(self)
        if self.state.status is RunStatus.PENDING and not isinstance(event, RunStarted):
            return self.decision
        handler(event)
        self._drain_skips()
        self._settle()
        if self.state.status.terminal and self.state.busy == 0 and not self.state.settled:
            self.state.settled = True
            self.decision.settled = True
        return self.decision

    def _record(self, node_id: str | None, frame: str) -> NodeRecord | None:
        return None if node_id is None else self.state.nodes.get((node_id, frame))

    def _current(
        self, node_id: str, frame: str, attempt: int, *ok: NodeStatus
    ) -> NodeRecord | None:
        """The record if this event is about its current attempt in one of the ``ok`` statuses."""
        record = self.state.nodes.get((node_id, frame))
        if record is None or record.attempt != attempt or record.status not in ok:
            return None
        return record

    def node_of(self, record: NodeRecord) -> PlanNode:
        """The plan node of a record."""
        return self.state.frames[record.frame].plan.nodes[record.node_id]

    def halted(self, frame: FrameState) -> bool:
        """Whether nothing new may start in ``frame`` (run finished, or frame abandoned)."""
        return self.state.status.terminal or frame.dead

    # ------------------------------------------------------------------ events

    def _on_started(self, event: RunStarted) -> None:
        if self.state.status is not RunStatus.PENDING:
            return
        self.state.input = event.input
        self.state.touch("i")
        self._set_run_status(RunStatus.RUNNING)
        self.open_frame(ROOT, self.state.plan, owner=None, input=event.input)

    def _on_succeeded(self, event: NodeSucceeded) -> None:
        record = self._current(event.node_id, event.frame, event.attempt, _S.RUNNING)
        if record is None or self.node_of(record).kind is not NodeKind.TASK:
            return
        self._write_context(event.context_writes)
        record.finished_at = event.at
        self.succeed(record, event.output, event.action)

    def _on_failed(self, event: NodeFailed) -> None:
        record = self._current(event.node_id, event.frame, event.attempt, _S.RUNNING)
        if record is None or self.node_of(record).kind is not NodeKind.TASK:
            return
        record.finished_at = event.at
        self.attempt_failed(record, event.error, retryable=event.retryable)

    def _on_suspended(self, event: NodeSuspended) -> None:
        record = self._current(event.node_id, event.frame, event.attempt, _S.RUNNING)
        if record is not None and self.node_of(record).kind is NodeKind.TASK:
            self._await(record)

    def _on_resumed(self, event: NodeResumed) -> None:
        key = self._resume_key(event)
        record = None if key is None else self.state.nodes.get(key)
        if record is None:
            self._reject_missing(event)
        elif record.status is _S.AWAITING and not self.state.status.terminal:
            self._resume(record, event)
        elif record.resumed:
            return  # a duplicate resume is a no-op
        else:
            self._reject(
                "not-awaiting",
                f"node {record.node_id!r} (frame {record.frame!r}) is not awaiting: "
                f"it is {record.status.value} in a {self.state.status.value} run",
            )

    def _reject_missing(self, event: NodeResumed) -> None:
        frame = self.state.frames.get(event.frame)
        if event.token is None and frame is not None and event.node_id in frame.plan.nodes:
            self._reject(
                "not-awaiting",
                f"node {event.node_id!r} (frame {event.frame!r}) is "
                "not awaiting: it has not started",
            )
            return
        what = f"token {event.token!r}" if event.token else f"node {event.node_id!r}"
        where = f" in frame {event.frame!r}" if event.token is None else ""
        self._reject("unknown-node", f"run {self.state.run_id} has no {what}{where}")

    def _on_timer(self, event: TimerFired) -> None:
        if event.purpose is TimerPurpose.RETRY:
            record = self._current(event.node_id, event.frame, event.attempt - 1, _S.PENDING)
            if record is not None and not self.halted(self.state.frames[record.frame]):
                self.start_attempt(record, self.node_of(record), event.attempt)
            return
        record = self._current(event.node_id, event.frame, event.attempt, _S.SLEEPING)
        if record is not None:
            self.succeed(record, record.input, None)

    def _on_child(self, event: ChildRunChanged) -> None:
        record = self._current(event.node_id, event.frame, event.attempt, _S.RUNNING, _S.AWAITING)
        if record is None or self.node_of(record).kind is not NodeKind.SUBFLOW:
            return
        constructs.child_changed(self, record, event)

    def _on_cancel(self, event: CancelRequested) -> None:
        if self.state.status.terminal:
            return
        for record in list(self.state.nodes.values()):
            if record.status in _LIVE:
                self._cancel_record(record)
        self.finish(RunStatus.CANCELLED)

    # ------------------------------------------------------------------ frames

    def open_frame(
        self, frame: str, plan: Plan, *, owner: InstanceKey | None, input: object, index: int = 0
    ) -> FrameState:
        """Open a frame running ``plan`` and start its start nodes with ``input``."""
        state = FrameState(
            frame=frame,
            plan=plan,
            owner=owner,
            input=input,
            index=index,
            open=len(plan.nodes) - len(plan.fallback_handlers),
        )
        self.state.frames[frame] = state
        self.state.touch("f", frame)
        self.state.touch("o", frame)
        if state.open == 0:
            self._frame_done(state)
        for node_id in plan.start_nodes:
            state.fired.add(node_id)
            self.state.touch("x", frame, node_id)
            self.activate(state, node_id, input)
        return state

    def _frame_done(self, frame: FrameState) -> None:
        if frame.dead:
            return
        result = frame_result(self.state, frame)
        if frame.owner is None:
            if not self.state.status.terminal:
                self.state.output = result
                self.state.touch("r")
                self.finish(RunStatus.COMPLETED)
            return
        constructs.body_done(self, frame, result)

    def abandon_frames(self, frames: list[str]) -> None:
        """Mark frames (and everything nested in them) dead and cancel what still runs there."""
        prefixes = tuple(f"{f}/" for f in frames)
        doomed = {f for f in self.state.frames if f in frames or f.startswith(prefixes)}
        for name in doomed:
            self.state.frames[name].dead = True
            self.state.touch("o", name)
        for record in list(self.state.nodes.values()):
            if record.frame in doomed and record.status in _LIVE:
                self._cancel_record(record)

    # ------------------------------------------------------------------ node lifecycle

    def activate(self, frame: FrameState, node_id: str, input: object) -> None:
        """A node's turn has come in ``frame``: create its instance and start it."""
        if self.halted(frame):
            return
        node = frame.plan.nodes[node_id]
        if node.inputs is not None:
            input = resolve_inputs(self.state, frame, node.inputs)
        record = self._new_record(node_id, frame.frame, input)
        self._dispatch(record, node)

    def _new_record(self, node_id: str, frame: str, input: object) -> NodeRecord:
        record = NodeRecord(node_id=node_id, frame=frame, input=input)
        self.state.nodes[record.key] = record
        self.state.touch("n", frame, node_id)
        self.state.busy += 1
        return record

    def _dispatch(self, record: NodeRecord, node: PlanNode) -> None:
        if node.kind is NodeKind.WAIT:
            self._await(record)
        elif node.kind is NodeKind.SLEEP:
            self._sleep(record, node)
        else:
            self.start_attempt(record, node, 1)

    def start_attempt(self, record: NodeRecord, node: PlanNode, attempt: int) -> None:
        """Start attempt ``attempt`` of a task, subflow, map or loop instance."""
        record.attempt = attempt
        record.started_at, record.finished_at = self.now, None
        set_node_status(self.state, record, _S.RUNNING)
        self.notify(record)
        if node.kind is NodeKind.TASK:
            self.decision.actions.append(self._run_node(record, node))
        elif node.kind is NodeKind.SUBFLOW:
            self._start_child(record, node)
        else:
            constructs.start(self, record, node)

    def _run_node(self, record: NodeRecord, node: PlanNode) -> RunNode:
        return run_node_action(self.state.run_id, record, node)

    def _start_child(self, record: NodeRecord, node: PlanNode) -> None:
        assert node.subflow is not None
        frame = self.state.frames[record.frame]
        spec = node.subflow
        child_input = record.input
        if spec.input is not None:
            child_input = resolve_inputs(self.state, frame, spec.input)
        record.child_run_id = attempt_id(self.state.run_id, record.key, record.attempt)
        self.decision.actions.append(
            StartChildRun(
                node_id=record.node_id,
                frame=record.frame,
                attempt=record.attempt,
                child_run_id=record.child_run_id,
                blueprint=spec.blueprint,
                input=child_input,
            )
        )

    def _await(self, record: NodeRecord) -> None:
        record.token = instance_id(self.state.run_id, record.key)
        self.state.tokens[record.token] = record.key
        set_node_status(self.state, record, _S.AWAITING)
        self.notify(record)

    def _sleep(self, record: NodeRecord, node: PlanNode) -> None:
        spec = node.sleep
        seconds = 0.0
        if spec is not None and spec.until is not None:
            seconds = max(0.0, spec.until - self.now)
        elif spec is not None and spec.seconds is not None:
            seconds = spec.seconds
        record.attempt = 1
        record.due_at = self.now + seconds
        set_node_status(self.state, record, _S.SLEEPING)
        self.notify(record)
        self.decision.actions.append(
            ScheduleTimer(
                node_id=record.node_id,
                frame=record.frame,
                attempt=1,
                purpose=TimerPurpose.SLEEP,
                delay=seconds,
            )
        )

    def _resume(self, record: NodeRecord, event: NodeResumed) -> None:
        node = self.node_of(record)
        if node.kind is NodeKind.SUBFLOW and record.child_run_id is not None:
            self.decision.actions.append(
                ResumeChildRun(
                    child_run_id=record.child_run_id,
                    node_id=None,
                    frame=ROOT,
                    token=None,
                    output=event.output,
                    action=event.action,
                )
            )
            return
        declared = self._declared_actions(record)
        if event.action is not None and declared and event.action not in declared:
            self._reject(
                "unknown-action",
                f"node {record.node_id!r} (frame {record.frame!r}) has no edge for action "
                f"{event.action!r}; its actions: {', '.join(sorted(declared))}",
            )
            return
        record.resumed = True
        self.succeed(record, event.output, event.action)

    def _declared_actions(self, record: NodeRecord) -> frozenset[str]:
        """The actions of the node's outgoing edges (empty: it routes without actions)."""
        edges = self.state.frames[record.frame].plan.outgoing.get(record.node_id, ())
        return frozenset(e.action for e in edges if e.action is not None)

    def _resume_key(self, event: NodeResumed) -> InstanceKey | None:
        if event.token is not None:
            return self.state.tokens.get(event.token)
        return None if event.node_id is None else (event.node_id, event.frame)

    def succeed(self, record: NodeRecord, output: object, action: str | None) -> None:
        """The instance succeeded: record it and, unless the run is halted, route onwards."""
        record.output = output
        record.action = action
        if record.finished_at is None:
            record.finished_at = self.now
        set_node_status(self.state, record, _S.SUCCEEDED)
        self.notify(record)
        frame = self.state.frames[record.frame]
        if self.halted(frame):
            return
        if record.fallback_for is not None:
            failed = self.state.nodes[(record.fallback_for, record.frame)]
            failed.output, failed.action = output, action
            self._resolve(frame, failed)
        else:
            self._resolve(frame, record)

    def attempt_failed(self, record: NodeRecord, error: NodeError, *, retryable: bool) -> None:
        """An attempt failed: retry after the backoff delay, or fail the instance for good."""
        node = self.node_of(record)
        record.error = error
        if record.finished_at is None:
            record.finished_at = self.now
        frame = self.state.frames[record.frame]
        if self.halted(frame) or not retryable or record.attempt >= node.retry.max_attempts:
            self._failed_for_good(record, node, error)
            return
        if record.status is _S.AWAITING:
            set_node_status(self.state, record, _S.RUNNING)
        set_node_status(self.state, record, _S.PENDING)
        self.notify(record, retrying=True)
        seed = attempt_id(self.state.run_id, record.key, record.attempt)
        delay = backoff_delay(node.retry, record.attempt, seed)
        if delay <= 0:
            self.start_attempt(record, node, record.attempt + 1)
            return
        record.due_at = self.now + delay
        self.decision.actions.append(
            ScheduleTimer(
                node_id=record.node_id,
                frame=record.frame,
                attempt=record.attempt + 1,
                purpose=TimerPurpose.RETRY,
                delay=delay,
            )
        )

    def _failed_for_good(self, record: NodeRecord, node: PlanNode, error: NodeError) -> None:
        set_node_status(self.state, record, _S.FAILED)
        self.notify(record)
        frame = self.state.frames[record.frame]
        if self.halted(frame):
            return
        if node.fallback is None:
            self.escalate(frame, error)
            return
        if (node.fallback, record.frame) in self.state.nodes:
            self.escalate(frame, _shared_fallback(record, node.fallback, error))
            return
        handler = self._new_record(
            node.fallback, record.frame, {"error": error.as_dict(), "input": record.input}
        )
        handler.fallback_for = record.node_id
        self._dispatch(handler, frame.plan.nodes[node.fallback])

    def escalate(self, frame: FrameState, error: NodeError) -> None:
        """A failure nothing in ``frame`` absorbs: fail the run, or the construct owning it.

        Failing the run is fail-fast: nothing new starts (waiting retries, sleeps and waits are
        cancelled), attempts already running finish and are recorded, then the run settles.
        """
        if frame.owner is None:
            self.state.errors.append(error)
            for record in list(self.state.nodes.values()):
                if record.status in _NOT_STARTED:
                    self._cancel_record(record)
            self.finish(RunStatus.FAILED)
            return
        constructs.body_failed(self, frame, error)

    def _cancel_record(self, record: NodeRecord) -> None:
        node = self.node_of(record)
        if record.status is _S.RUNNING and node.kind is NodeKind.TASK:
            self.decision.actions.append(
                CancelNode(node_id=record.node_id, frame=record.frame, attempt=record.attempt)
            )
        if record.child_run_id is not None and record.status in (_S.RUNNING, _S.AWAITING):
            self.decision.actions.append(CancelChildRun(child_run_id=record.child_run_id))
        set_node_status(self.state, record, _S.CANCELLED)
        self.notify(record)

    # ------------------------------------------------------------------ routing and joins

    def _resolve(self, frame: FrameState, record: NodeRecord) -> None:
        record.resolved = True
        frame.open -= 1
        self.state.touch("n", record.frame, record.node_id)
        self.state.touch("o", frame.frame)
        if record.status is _S.SKIPPED:
            for edge in frame.plan.outgoing[record.node_id]:
                self._arrive(frame, edge, Arrival(taken=False, source=edge.source))
        else:
            try:
                routes = self._route(frame, record)
            except RoutingError as exc:
                self.escalate(frame, exc.error)
                return
            for edge, arrival in routes:
                self._arrive(frame, edge, arrival)
        if frame.open == 0:
            self._frame_done(frame)

    def _route(self, frame: FrameState, record: NodeRecord) -> list[tuple[PlanEdge, Arrival]]:
        edges = frame.plan.outgoing[record.node_id]
        if not edges:
            return []
        if record.action is None and record.node_id in frame.plan.plain_sources:
            return [(e, Arrival(taken=True, source=e.source, value=record.output)) for e in edges]
        scope = self._edge_scope(frame, record)
        chosen: list[PlanEdge] = []
        if record.action is not None:
            chosen = [e for e in edges if e.action == record.action and _holds(e, scope)]
        if not chosen:
            chosen = [e for e in edges if e.action is None and _holds(e, scope)]
        taken = {e.index for e in chosen}
        return [
            (e, Arrival(taken=True, source=e.source, value=_transform(e, scope, record.output)))
            if e.index in taken
            else (e, Arrival(taken=False, source=e.source))
            for e in edges
        ]

    def _edge_scope(self, frame: FrameState, record: NodeRecord) -> dict[str, object]:
        return {
            "input": record.input,
            "result": record.output,
            "action": record.action,
            "context": self.state.context,
            "outputs": OutputsView(self.state, frame),
            "params": dict(self.node_of(record).params),
        }

    def _arrive(self, frame: FrameState, edge: PlanEdge, arrival: Arrival) -> None:
        if edge.target in frame.fired:
            return
        if len(frame.plan.incoming[edge.target]) == 1:  # no join: decide at once
            self._fire(frame, edge.target)
            if arrival.taken:
                self.activate(frame, edge.target, arrival.value)
            else:
                self._skips.append((frame, edge.target))
            return
        arrivals = frame.arrivals.setdefault(edge.target, {})
        if edge.index in arrivals:
            return
        arrivals[edge.index] = arrival
        self.state.touch("a", frame.frame, edge.target, edge.index)
        node = frame.plan.nodes[edge.target]
        incoming = frame.plan.incoming[edge.target]
        if node.join is Join.ANY and arrival.taken:
            self._fire(frame, node.id)
            self.activate(frame, node.id, _join_input(incoming, {edge.index: arrival}))
        elif len(arrivals) == len(incoming):
            self._fire(frame, node.id)
            if any(a.taken for a in arrivals.values()):
                self.activate(frame, node.id, _join_input(incoming, arrivals))
            else:
                self._skips.append((frame, node.id))

    def _fire(self, frame: FrameState, node_id: str) -> None:
        frame.fired.add(node_id)
        self.state.touch("x", frame.frame, node_id)

    def _drain_skips(self) -> None:
        while self._skips:
            frame, node_id = self._skips.popleft()
            if self.halted(frame):
                continue
            record = self._new_record(node_id, frame.frame, None)
            set_node_status(self.state, record, _S.SKIPPED)
            self.notify(record)
            self._resolve(frame, record)

    # ------------------------------------------------------------------ run status

    def _write_context(self, writes: Mapping[str, object]) -> None:
        for key, value in writes.items():
            if value is DELETED:
                self.state.context.pop(key, None)
            else:
                self.state.context[key] = value
            self.decision.context_writes[key] = value

    def finish(self, status: RunStatus) -> None:
        """Move the run to a terminal status, exactly once."""
        if self.state.status.terminal:
            return
        self._set_run_status(status)
        self.decision.finished = status

    def _settle(self) -> None:
        state = self.state
        if state.status.terminal:
            return
        if state.busy == 0 and state.awaiting > 0:
            self._set_run_status(RunStatus.AWAITING)
        elif state.status is RunStatus.AWAITING and state.busy > 0:
            self._set_run_status(RunStatus.RUNNING)

    def _set_run_status(self, status: RunStatus) -> None:
        if self.state.status is not status:
            self.state.status = status
            self.decision.notices.append(RunNotice(status=status))

    def notify(self, record: NodeRecord, *, retrying: bool = False) -> None:
        """Add a node notice for the event bus."""
        if not self._notices:
            return
        self.decision.notices.append(
            NodeNotice(
                node_id=record.node_id,
                frame=record.frame,
                attempt=record.attempt,
                status=record.status,
                retrying=retrying,
                error=record.error,
            )
        )

    def _reject(self, code: str, message: str) -> None:
        self.decision.rejection = Rejection(code=code, message=message)


_HANDLERS: dict[type, Any] = {
    RunStarted: Machine._on_started,
    NodeSucceeded: Machine._on_succeeded,
    NodeFailed: Machine._on_failed,
    NodeSuspended: Machine._on_suspended,
    NodeResumed: Machine._on_resumed,
    TimerFired: Machine._on_timer,
    ChildRunChanged: Machine._on_child,
    CancelRequested: Machine._on_cancel,
}


def _holds(edge: PlanEdge, scope: Mapping[str, object]) -> bool:
    if edge.condition is None:
        return True
    value = _evaluate_edge(edge, edge.condition, "condition", scope)
    if not isinstance(value, bool):
        raise RoutingError(_edge_error(edge, "condition", f"must be a bool, got {value!r}"))
    return value


def _transform(edge: PlanEdge, scope: Mapping[str, object], output: object) -> object:
    if edge.transform is None:
        return output
    return _evaluate_edge(edge, edge.transform, "transform", scope)


def _evaluate_edge(
    edge: PlanEdge, expr: Expression, what: str, scope: Mapping[str, object]
) -> object:
    try:
        return evaluate(expr, scope)
    except Exception as exc:  # an expression failure must fail loudly, with its origin
        raise RoutingError(_edge_error(edge, what, str(exc), type(exc).__name__)) from exc


def _edge_error(
    edge: PlanEdge, what: str, message: str, kind: str = "ExpressionError"
) -> NodeError:
    return NodeError(
        node_id=edge.source,
        frame="",
        attempt=0,
        type=kind,
        message=f"edge {edge.source} -> {edge.target}: {what} failed: {message}",
    )


def _join_input(incoming: tuple[PlanEdge, ...], arrivals: Mapping[int, Arrival]) -> object:
    """The input of a node from its arrivals: one edge -> that value; several -> by source."""
    if len(incoming) == 1:
        return next(iter(arrivals.values())).value
    return {
        arrivals[e.index].source: arrivals[e.index].value
        for e in incoming
        if e.index in arrivals and arrivals[e.index].taken
    }


def _shared_fallback(record: NodeRecord, handler: str, cause: NodeError) -> NodeError:
    return NodeError(
        node_id=record.node_id,
        frame=record.frame,
        attempt=record.attempt,
        type="FallbackConflict",
        message=f"fallback handler {handler!r} already ran in this frame; node "
        f"{record.node_id!r} failed with {cause.type}: {cause.message}",
    )


def run_node_action(run_id: str, record: NodeRecord, node: PlanNode) -> RunNode:
    """The action that runs ``record``'s current attempt (the reconciler rebuilds it too)."""
    return RunNode(
        node_id=record.node_id,
        frame=record.frame,
        attempt=record.attempt,
        uses=node.uses,
        params=node.params,
        input=record.input,
        timeout=node.timeout,
        idempotency_key=attempt_id(run_id, record.key, record.attempt),
    )


def frame_result(state: RunState, frame: FrameState) -> object:
    """A frame's output: its one terminal's output, or terminal id -> output of those that ran."""
    terminals = frame.plan.terminal_nodes
    records = {t: state.nodes.get((t, frame.frame)) for t in terminals}
    if len(terminals) == 1:
        only = records[terminals[0]]
        return only.output if only is not None and has_output(only) else None
    return {t: r.output for t, r in records.items() if r is not None and has_output(r)}
