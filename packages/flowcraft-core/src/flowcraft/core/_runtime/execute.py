"""Running one node attempt: context, implementation lookup, timeout, errors, serialization.

Shared by the in-memory runtime and the distributed worker, so a node behaves the same on
every backend: the attempt's outcome is always an event for the decision core (success with
output, action and buffered context writes; failure with a structured error; suspension).
"""

from __future__ import annotations

import asyncio
import difflib
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flowcraft.core._engine import events as ev
from flowcraft.core._engine.actions import RunNode
from flowcraft.core._engine.scope import OutputsView
from flowcraft.core._engine.state import NodeError, RunState
from flowcraft.core._runtime.context import (
    CancelFlag,
    NodeContext,
    Result,
    RunContext,
    Suspend,
    running_node,
)
from flowcraft.core._runtime.middleware import compose
from flowcraft.core._runtime.nodes import NodeFn, NodeForms
from flowcraft.core._runtime.serializer import Serializer
from flowcraft.core.errors import NonRetryableError, UnknownNodeError


class NodeExecutor:
    """Runs node attempts for one registry, middleware stack and serializer."""

    def __init__(
        self,
        *,
        registry: Mapping[str, object],
        forms: NodeForms,
        serializer: Serializer,
        middleware: Sequence[object] = (),
        dependencies: Mapping[str, Any] | None = None,
    ) -> None:
        self.registry = registry
        self.dependencies: Mapping[str, Any] = dict(dependencies or {})
        self._forms = forms
        self._serializer = serializer
        self._middleware = tuple(middleware)
        self._fns: dict[str, NodeFn] = {}

    def forget(self, uses: str) -> None:
        """Drop the cached callable of ``uses`` (after the registry changed)."""
        self._fns.pop(uses, None)

    def node_fn(self, uses: str) -> NodeFn:
        """The composed (middleware-wrapped) callable behind ``uses``."""
        fn = self._fns.get(uses)
        if fn is None:
            if uses not in self.registry:
                raise UnknownNodeError(_unknown(uses, self.registry))
            fn = compose(self._middleware, self._forms.wrap(self.registry[uses]))
            self._fns[uses] = fn
        return fn

    def roundtrip(self, value: object) -> object:
        """``value`` as another process would see it after serialization."""
        if value is None or isinstance(value, bool | int | str):
            return value
        return self._serializer.loads(self._serializer.dumps(value))

    def context_for(self, action: RunNode, state: RunState, cancelled: CancelFlag) -> NodeContext:
        """The node context of ``action`` over the run's current state."""
        frame = state.frames[action.frame]
        node = frame.plan.nodes[action.node_id]
        return NodeContext(
            input=action.input,
            params=action.params,
            context=RunContext(state.context),
            outputs=OutputsView(state, frame),
            run_id=state.run_id,
            node_id=action.node_id,
            frame=action.frame,
            attempt=action.attempt,
            max_attempts=node.retry.max_attempts,
            idempotency_key=action.idempotency_key,
            deps=self.dependencies,
            cancelled=cancelled,
        )

    async def execute(self, action: RunNode, ctx: NodeContext) -> ev.Event | None:
        """Run one attempt; its outcome event, or None if it was cancelled on purpose."""
        try:
            fn = self.node_fn(action.uses)
            with running_node(ctx.run_id, action.node_id, action.frame, action.attempt):
                if action.timeout is None:
                    value = await fn(ctx)
                else:
                    async with asyncio.timeout(action.timeout):
                        value = await fn(ctx)
        except asyncio.CancelledError:
            if ctx.cancelled.is_set():
                return None  # cancelled on purpose: the core already recorded it
            raise
        except TimeoutError:
            message = (
                f"node {action.node_id} attempt {action.attempt} timed out after {action.timeout}s"
            )
            return self._failed(action, self._error(action, "TimeoutError", message))
        except Exception as exc:  # a node's failure is data for the core
            retryable = not isinstance(exc, NonRetryableError)
            return self._failed(action, self._exception(action, exc), retryable=retryable)
        return self._success(action, value, ctx)

    def _success(self, action: RunNode, value: object, ctx: NodeContext) -> ev.Event:
        if isinstance(value, Suspend):
            return ev.NodeSuspended(
                at=time.time(), node_id=action.node_id, frame=action.frame, attempt=action.attempt
            )
        output, route = (value.output, value.action) if isinstance(value, Result) else (value, None)
        writes = ctx.context.writes
        try:
            output = self.roundtrip(output)
            if writes:
                writes = {k: v if v is ev.DELETED else self.roundtrip(v) for k, v in writes.items()}
        except (TypeError, ValueError) as exc:
            message = f"node {action.node_id} produced a value the serializer refuses: {exc}"
            error = self._error(action, "SerializationError", message)
            return self._failed(action, error, retryable=False)
        return ev.NodeSucceeded(
            at=time.time(),
            node_id=action.node_id,
            frame=action.frame,
            attempt=action.attempt,
            output=output,
            action=route,
            context_writes=writes,
        )

    def _failed(self, action: RunNode, error: NodeError, *, retryable: bool = True) -> ev.Event:
        return ev.NodeFailed(
            at=time.time(),
            node_id=action.node_id,
            frame=action.frame,
            attempt=action.attempt,
            error=error,
            retryable=retryable,
        )

    def _error(self, action: RunNode, kind: str, message: str) -> NodeError:
        return NodeError(
            node_id=action.node_id,
            frame=action.frame,
            attempt=action.attempt,
            type=kind,
            message=message,
        )

    def _exception(self, action: RunNode, exc: BaseException) -> NodeError:
        kind = type(exc).__qualname__
        module = type(exc).__module__
        if module not in ("builtins", "__main__"):
            kind = f"{module}.{kind}"
        return NodeError(
            node_id=action.node_id,
            frame=action.frame,
            attempt=action.attempt,
            type=kind,
            message=str(exc),
            traceback="".join(traceback.format_exception(exc)),
        )


def _unknown(name: str, known: Iterable[str]) -> str:
    hint = difflib.get_close_matches(name, list(known), n=1)
    suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"no implementation for uses {name!r}{suffix}"
