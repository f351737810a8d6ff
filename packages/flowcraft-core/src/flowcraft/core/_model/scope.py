"""State shared by the checks of one document: settings, problems found, running totals."""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowcraft.core._model import problems as codes
from flowcraft.core._model.limits import Limits
from flowcraft.core.errors import Problem


@dataclass
class Scope:
    """Settings and findings of one validation.

    Attributes:
        registry: Known ``uses`` keys, or ``None`` to skip that check.
        limits: Size limits.
        dialect: The dialect the document is read in.
        origins: Canonical path → path as written, for renamed TypeScript fields.
        metadata: The document's metadata (``cycleEntryPoints`` marks TypeScript loops).
        problems: Problems found so far.
    """

    registry: Container[str] | None
    limits: Limits
    dialect: str
    origins: Mapping[str, str]
    metadata: object
    problems: list[Problem] = field(default_factory=list)
    _nodes: int = 0
    _edges: int = 0

    def add(self, problem: Problem) -> None:
        """Record a problem."""
        self.problems.append(problem)

    @property
    def ts_loops_declared(self) -> bool:
        """Whether the metadata declares TypeScript cycle entry points."""
        return isinstance(self.metadata, Mapping) and "cycleEntryPoints" in self.metadata

    def original_path(self, path: str) -> str:
        """Map a canonical path back to the spelling the document used."""
        prefix = path
        while prefix:
            if prefix in self.origins:
                return self.origins[prefix] + path[len(prefix) :]
            prefix = prefix[: max(prefix.rfind("."), prefix.rfind("["), 0)]
        return path

    def admit_sizes(self, graph: Mapping[str, Any], path: str) -> bool:
        """Count a graph's nodes and edges; record a problem and refuse it past the limits."""
        self._nodes += _length(graph.get("nodes"))
        self._edges += _length(graph.get("edges"))
        if self._nodes > self.limits.max_nodes:
            return self._too_large(path, f"more than {self.limits.max_nodes} nodes")
        if self._edges > self.limits.max_edges:
            return self._too_large(path, f"more than {self.limits.max_edges} edges")
        return True

    def _too_large(self, path: str, what: str) -> bool:
        self.add(codes.TOO_LARGE.problem(path, f"the document has {what} (see Limits)"))
        return False


def _length(value: object) -> int:
    return len(value) if isinstance(value, list) else 0
