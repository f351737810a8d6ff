"""What the World suite needs from an implementation, and the in-memory one.

A World implementation's test runner provides a :class:`WorldFactory` (override the
``flowcraft_world_factory`` fixture): ``create`` opens a World on a fresh namespace (not
started: the suite starts it), ``reopen`` opens a second World on the same storage (the
"restart after a crash" of the recovery tests), ``destroy`` removes what ``create`` made.
``capabilities`` names the optional behaviours it supports (see ``WORLD_CAPABILITIES``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Protocol

from flowcraft.core.world import InMemoryWorld, World

#: Optional behaviours a World may declare; tests that need one run as strict xfails
#: where it is not declared.
WORLD_CAPABILITIES: Mapping[str, str] = {
    "run_expiry": "create(run_retention=...) is honoured: events on a run whose retention "
    "passed are refused with 410",
}


class WorldFactory(Protocol):
    """Creates Worlds for the suite (one namespace per test)."""

    capabilities: frozenset[str]

    async def create(self, namespace: str, *, run_retention: timedelta | None = None) -> World:
        """A new, not yet started World on a fresh ``namespace``.

        Its ``start()`` must re-enqueue ``{"runId": ...}`` on ``"__wkf_workflow_" +
        workflow_name`` for every run left pending or running (the suite's runtime listens
        there).
        """
        ...

    async def reopen(self, world: World) -> World:
        """A second, not yet started World over ``world``'s storage and queues."""
        ...

    async def destroy(self, world: World) -> None:
        """Remove the namespace's data (after every World on it was closed)."""
        ...


class InMemoryWorldFactory:
    """``InMemoryWorld`` for the suite."""

    capabilities = frozenset({"run_expiry"})

    async def create(self, namespace: str, *, run_retention: timedelta | None = None) -> World:
        """A fresh InMemoryWorld."""
        del namespace
        return InMemoryWorld(run_retention=run_retention)

    async def reopen(self, world: World) -> World:
        """An InMemoryWorld over the same state."""
        assert isinstance(world, InMemoryWorld)
        return InMemoryWorld(world.state)

    async def destroy(self, world: World) -> None:
        """Nothing to remove."""
        del world
