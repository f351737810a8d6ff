"""What every run handle shares: cancelling and resuming through the object that owns the run."""

from __future__ import annotations

import time
from typing import Protocol

from flowcraft.core._engine import events as ev
from flowcraft.core._engine.actions import Decision
from flowcraft.core.errors import ResumeError


class RunOwner(Protocol):
    """A runtime or client that can cancel and resume its runs."""

    async def cancel(self, run_id: str) -> None:
        """Cancel the run (durable, idempotent)."""
        ...

    async def resume(
        self,
        run_id: str,
        node: str | None = None,
        *,
        output: object = None,
        action: str | None = None,
        frame: str = "",
        token: str | None = None,
    ) -> None:
        """Resume an awaiting node of the run."""
        ...


class HandleBase:
    """A run by id, plus the owner that acts on it."""

    def __init__(self, owner: RunOwner, run_id: str) -> None:
        self._owner = owner
        self.run_id = run_id

    async def cancel(self) -> None:
        """Cancel the run (idempotent); committed work and context are kept."""
        await self._owner.cancel(self.run_id)

    async def resume(
        self,
        node: str | None = None,
        *,
        output: object = None,
        action: str | None = None,
        frame: str = "",
        token: str | None = None,
    ) -> None:
        """Resume an awaiting node (by id and frame, or by token) with an output and action."""
        await self._owner.resume(
            self.run_id, node, output=output, action=action, frame=frame, token=token
        )


def resume_event(
    node: str | None, *, output: object, action: str | None, frame: str, token: str | None
) -> ev.NodeResumed:
    """The event of a resume by node id (and frame) or by token (``TypeError`` if neither)."""
    if node is None and token is None:
        raise TypeError("resume needs a node id or a token")
    return ev.NodeResumed(
        at=time.time(), node_id=node, frame=frame, token=token, output=output, action=action
    )


def check_resumed(run_id: str, decision: Decision | None) -> None:
    """Raise ``ResumeError`` if the decision rejected the resume (a duplicate is no rejection)."""
    if decision is not None and decision.rejection is not None:
        raise ResumeError(run_id, decision.rejection.code, decision.rejection.message)
