"""The blueprints a worker or client knows, pinned by id, version and content digest."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from flowcraft.core._engine.compile import compile_blueprint
from flowcraft.core._engine.plan import Plan
from flowcraft.core._expressions import DEFAULT_BUDGET, checked_budget
from flowcraft.core._model.graph import Blueprint
from flowcraft.core.errors import UnknownBlueprintError


def digest_of(blueprint: Blueprint) -> str:
    """The content hash of a blueprint (SHA-256 of its canonical JSON)."""
    return hashlib.sha256(blueprint.to_json(indent=None).encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Pinned:
    """One blueprint version as a run records it."""

    blueprint: Blueprint
    plan: Plan
    version: str
    digest: str


class BlueprintSet:
    """Blueprints by id and version. A run pins ``(id, version, digest)`` when it starts.

    ``expression_budget`` is the seconds of work one expression evaluation may take (default
    0.1); give every process of a deployment the same one.
    """

    def __init__(
        self, blueprints: Iterable[Blueprint] = (), *, expression_budget: float = DEFAULT_BUDGET
    ) -> None:
        self.expression_budget = checked_budget(expression_budget)
        self._by_key: dict[tuple[str, str], Pinned] = {}
        self._latest: dict[str, Pinned] = {}
        for blueprint in blueprints:
            self.add(blueprint)

    def add(self, blueprint: Blueprint) -> Pinned:
        """Register a blueprint; the last one added for an id is its latest."""
        version = blueprint.version or "0"
        plan = compile_blueprint(blueprint, self._resolve, expression_budget=self.expression_budget)
        pinned = Pinned(
            blueprint=blueprint, plan=plan, version=version, digest=digest_of(blueprint)
        )
        self._by_key[(blueprint.id, version)] = pinned
        self._latest[blueprint.id] = pinned
        return pinned

    def latest(self, blueprint_id: str) -> Pinned:
        """The latest version of ``blueprint_id``."""
        try:
            return self._latest[blueprint_id]
        except KeyError:
            raise UnknownBlueprintError(f"no blueprint {blueprint_id!r}") from None

    def find(self, blueprint_id: str, version: str, digest: str) -> Pinned | None:
        """The exact pinned version, or None when this process does not have it."""
        pinned = self._by_key.get((blueprint_id, version))
        return pinned if pinned is not None and pinned.digest == digest else None

    def knows(self, blueprint_id: str) -> bool:
        """Whether any version of ``blueprint_id`` is registered."""
        return blueprint_id in self._latest

    def _resolve(self, blueprint_id: str) -> Plan:
        return self.latest(blueprint_id).plan


def blueprint_set(
    blueprints: Iterable[Blueprint] | BlueprintSet, expression_budget: float | None
) -> BlueprintSet:
    """``blueprints`` as a set; ``expression_budget`` (None: the default) for a new one.

    Raises:
        ValueError: A set is given with a budget other than its own.
    """
    if not isinstance(blueprints, BlueprintSet):
        budget = DEFAULT_BUDGET if expression_budget is None else expression_budget
        return BlueprintSet(blueprints, expression_budget=budget)
    if expression_budget is not None and expression_budget != blueprints.expression_budget:
        raise ValueError("expression_budget: give it to the BlueprintSet passed as blueprints")
    return blueprints
