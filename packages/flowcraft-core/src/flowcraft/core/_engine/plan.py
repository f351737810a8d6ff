"""The executable form of a blueprint, as the decision core reads it (pure, immutable data).

A :class:`Plan` is one level of a blueprint: its nodes, its edges indexed both ways, its start
and terminal nodes and its fallback handlers. Structured constructs (loop, map) own a body plan,
so every level is a DAG and joins and completion are evaluated within one frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class NodeKind(StrEnum):
    """What the engine does with a node."""

    TASK = "task"
    WAIT = "wait"
    SLEEP = "sleep"
    SUBFLOW = "subflow"
    MAP = "map"
    LOOP = "loop"


class Join(StrEnum):
    """How a node with several incoming edges fires."""

    ALL = "all"
    ANY = "any"


class Expression(Protocol):
    """A compiled expression. ``evaluate`` is pure and raises ``ExpressionError`` on failure."""

    @property
    def source(self) -> str:
        """The expression text, for error messages."""
        ...

    def evaluate(self, scope: Mapping[str, object]) -> object:
        """Evaluate against ``scope`` (input, result, outputs, context, params, ...)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Attempts and backoff. ``max_attempts`` counts every attempt (1 = no retry)."""

    max_attempts: int = 1
    delay: float = 0.0
    backoff: float = 1.0
    max_delay: float | None = None
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.delay < 0 or self.backoff < 1 or self.jitter < 0:
            raise ValueError("delay and jitter must be >= 0 and backoff >= 1")


NO_RETRY = RetryPolicy()

#: ``inputs`` of a node: a reference string, a mapping of name -> reference, or not given.
InputSpec = str | Mapping[str, str] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopSpec:
    """A loop node: ``body`` runs in frames ``<loop>#i`` while ``condition`` holds."""

    body: Plan
    condition: Expression | None
    max_iterations: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MapSpec:
    """A map node: ``body`` runs once per item in frames ``<map>[i]``, ``concurrency`` at a time."""

    body: Plan
    items: Expression | None
    concurrency: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SubflowSpec:
    """A subflow node: a child run of ``blueprint`` with optional input/output mappings."""

    blueprint: str
    input: InputSpec = None
    output: InputSpec = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SleepSpec:
    """A durable timer: ``seconds`` after the node starts, or an absolute ``until`` (epoch s)."""

    seconds: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanNode:
    """One node of a plan."""

    id: str
    kind: NodeKind = NodeKind.TASK
    uses: str = ""
    params: Mapping[str, object] = field(default_factory=dict)
    inputs: InputSpec = None
    retry: RetryPolicy = NO_RETRY
    timeout: float | None = None
    fallback: str | None = None
    join: Join = Join.ALL
    loop: LoopSpec | None = None
    map: MapSpec | None = None
    subflow: SubflowSpec | None = None
    sleep: SleepSpec | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanEdge:
    """One edge; ``index`` is its position in :attr:`Plan.edges` (its identity for joins)."""

    index: int
    source: str
    target: str
    action: str | None = None
    condition: Expression | None = None
    transform: Expression | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """One level of a blueprint, indexed for the decision core. Build with :func:`build_plan`."""

    id: str
    version: str
    nodes: Mapping[str, PlanNode]
    edges: tuple[PlanEdge, ...]
    incoming: Mapping[str, tuple[PlanEdge, ...]]
    outgoing: Mapping[str, tuple[PlanEdge, ...]]
    start_nodes: tuple[str, ...]
    terminal_nodes: tuple[str, ...]
    fallback_handlers: frozenset[str]
    #: Nodes whose outgoing edges carry no action, condition or transform (routing fast path).
    plain_sources: frozenset[str] = frozenset()

    @property
    def graph_nodes(self) -> tuple[str, ...]:
        """Nodes that take part in the graph (every node but the fallback handlers)."""
        return tuple(n for n in self.nodes if n not in self.fallback_handlers)


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeSpec:
    """An edge before indexing."""

    source: str
    target: str
    action: str | None = None
    condition: Expression | None = None
    transform: Expression | None = None


def build_plan(
    *, id: str, version: str, nodes: Sequence[PlanNode], edges: Sequence[EdgeSpec]
) -> Plan:
    """Index nodes and edges into a :class:`Plan` (the graph must already be validated)."""
    by_id = {node.id: node for node in nodes}
    indexed = tuple(
        PlanEdge(
            index=i,
            source=e.source,
            target=e.target,
            action=e.action,
            condition=e.condition,
            transform=e.transform,
        )
        for i, e in enumerate(edges)
    )
    incoming: dict[str, list[PlanEdge]] = {n: [] for n in by_id}
    outgoing: dict[str, list[PlanEdge]] = {n: [] for n in by_id}
    for edge in indexed:
        incoming[edge.target].append(edge)
        outgoing[edge.source].append(edge)
    handlers = frozenset(n.fallback for n in nodes if n.fallback is not None)
    graph = [n for n in by_id if n not in handlers]
    return Plan(
        id=id,
        version=version,
        nodes=by_id,
        edges=indexed,
        incoming={k: tuple(v) for k, v in incoming.items()},
        outgoing={k: tuple(v) for k, v in outgoing.items()},
        start_nodes=tuple(n for n in graph if not incoming[n]),
        terminal_nodes=tuple(n for n in graph if not outgoing[n]),
        fallback_handlers=handlers,
        plain_sources=frozenset(
            n
            for n, out in outgoing.items()
            if all(e.action is None and e.condition is None and e.transform is None for e in out)
        ),
    )
