"""What every run handle shares: cancelling and resuming through the object that owns the run."""

from __future__ import annotations

from typing import Protocol


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
