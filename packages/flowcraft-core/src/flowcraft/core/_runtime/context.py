"""What a node sees while it runs, and what it may return."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from flowcraft.core._engine.events import DELETED

_MISSING = object()


@dataclass(frozen=True, slots=True)
class Result:
    """A node result with an action (routing) next to its output."""

    output: object = None
    action: str | None = None


@dataclass(frozen=True, slots=True)
class Suspend:
    """Returned by a node to wait for a human: the run awaits until ``resume`` names this node."""

    reason: str | None = None


class RunContext:
    """The run-scoped key-value context, as one node attempt sees it.

    Reads see the run's committed context plus this attempt's own writes. Writes are buffered
    and committed atomically with the node's success; a failed attempt leaves nothing behind.
    """

    __slots__ = ("_base", "_writes")

    def __init__(self, base: Mapping[str, object]) -> None:
        self._base = base
        self._writes: dict[str, object] = {}

    def get(self, key: str, default: Any = None) -> Any:  # noqa: ANN401 - user data
        """The value of ``key`` (this attempt's write wins), or ``default``."""
        value = self._writes.get(key, _MISSING)
        if value is _MISSING:
            return self._base.get(key, default)
        return default if value is DELETED else value

    def __getitem__(self, key: str) -> Any:  # noqa: ANN401 - user data
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _MISSING) is not _MISSING

    def set(self, key: str, value: object) -> None:
        """Buffer a write of ``key``."""
        if not isinstance(key, str) or not key:
            raise TypeError(f"context keys are non-empty strings, got {key!r}")
        self._writes[key] = value

    def delete(self, key: str) -> None:
        """Buffer a deletion of ``key``."""
        self._writes[key] = DELETED

    def keys(self) -> Iterator[str]:
        """Keys visible to this attempt."""
        seen = {k for k, v in self._writes.items() if v is not DELETED}
        yield from seen
        yield from (k for k in self._base if k not in self._writes)

    def to_dict(self) -> dict[str, object]:
        """A snapshot of what this attempt sees."""
        return {k: self[k] for k in self.keys()}

    @property
    def writes(self) -> Mapping[str, object]:
        """The buffered writes (``DELETED`` marks a deletion)."""
        return self._writes


class CancelFlag:
    """Set when the attempt is cancelled (run cancelled, attempt abandoned)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        """Mark cancelled."""
        self._set = True

    def is_set(self) -> bool:
        """Whether cancelled."""
        return self._set


@dataclass(slots=True, kw_only=True)
class NodeContext:
    """Everything a node attempt receives.

    Attributes:
        input: The node's input (see DESIGN §4 "Inputs").
        params: The node's static ``params`` from the blueprint.
        context: The run context (buffered reads/writes, committed on success).
        outputs: Outputs of the nodes that ran before, by node id.
        run_id: The run.
        node_id: This node.
        frame: The frame of this instance (``""`` at top level; ``"L#2"`` in loop iteration 2).
        attempt: 1-based attempt number.
        max_attempts: How many attempts the retry policy allows.
        idempotency_key: Stable for this node instance and attempt: use it for side effects.
        deps: User dependencies given to the runtime.
        cancelled: Set when the attempt is cancelled (coroutines are also cancelled).
    """

    input: Any
    params: Mapping[str, Any]
    context: RunContext
    outputs: Mapping[str, Any]
    run_id: str
    node_id: str
    frame: str
    attempt: int
    max_attempts: int
    idempotency_key: str
    deps: Mapping[str, Any] = field(default_factory=dict)
    cancelled: CancelFlag = field(default_factory=CancelFlag)
    _logger: logging.Logger | None = None

    @property
    def logger(self) -> logging.Logger:
        """A logger named ``flowcraft.node.<node_id>``."""
        if self._logger is None:
            self._logger = logging.getLogger(f"flowcraft.node.{self.node_id}")
        return self._logger

    @property
    def is_cancelled(self) -> bool:
        """Whether the run (or this attempt) was cancelled: long nodes should check and stop."""
        return self.cancelled.is_set()

    def suspend(self, reason: str | None = None) -> Suspend:
        """Return this from a node to wait for ``resume``."""
        return Suspend(reason)


#: The node attempt running in this task (or thread): ``(run_id, node_id, frame, attempt)``.
_RUNNING: ContextVar[tuple[str, str, str, int] | None] = ContextVar(
    "flowcraft_running_node", default=None
)


@contextlib.contextmanager
def running_node(run_id: str, node_id: str, frame: str, attempt: int) -> Iterator[None]:
    """Mark the code inside as one node attempt (for :class:`NodeLogFilter`).

    Restores the previous value by setting it, not with the token: a node coroutine may be
    started eagerly in one context and finish in its task's copy of it.
    """
    previous = _RUNNING.get()
    _RUNNING.set((run_id, node_id, frame, attempt))
    try:
        yield
    finally:
        _RUNNING.set(previous)


class NodeLogFilter(logging.Filter):
    """Stamps log records with the node attempt that logged them.

    Adds ``run_id``, ``node_id``, ``frame`` and ``attempt`` (None outside a node) and
    ``flowcraft_node``, a short ``[run R node N#A]`` label ("" outside a node), to every record
    that passes the handler or logger it is added to: ``ctx.logger`` records and anything else
    a node's code logs, in coroutines and in threads alike.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Stamp the record (keeping a lifecycle record's own fields); never drops one."""
        running = _RUNNING.get()
        record.flowcraft_node = "" if running is None else _label(*running)
        if hasattr(record, "run_id"):  # set by the record's emitter (an EventLogger record)
            return True
        record.run_id, record.node_id, record.frame, record.attempt = running or (None,) * 4
        return True


def _label(run_id: str, node_id: str, frame: str, attempt: int) -> str:
    where = f"{node_id} [{frame}]" if frame else node_id
    return f"[run {run_id} node {where}#{attempt}] "
