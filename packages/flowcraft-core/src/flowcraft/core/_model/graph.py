"""The blueprint document: Blueprint, Node, Edge, and Graph (an inline body of a construct).

These models check *shape* only (types, ranges, unknown fields). Whole-document rules (unique
ids, edge targets, cycles, expressions ...) are checked by the loader, which is how blueprints
should be made: ``parse_blueprint``, ``load_blueprint`` or the ``Flow`` builder.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any

from flowcraft.core._model.base import FrozenModel
from flowcraft.core._model.config import NodeConfig
from flowcraft.core._model.kinds import BUILTIN_KINDS, LOOP, MAP, SLEEP, SUBFLOW, WAIT
from pydantic import BeforeValidator, Field, JsonValue

if TYPE_CHECKING:
    from flowcraft.core._model.constructs import (
        ConstructSpec,
        LoopSpec,
        MapSpec,
        SleepSpec,
        SubflowSpec,
        WaitSpec,
    )


def _check_inputs(value: Any) -> Any:  # noqa: ANN401 - runs before validation
    is_mapping = isinstance(value, dict) and all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    )
    if value is not None and not isinstance(value, str) and not is_mapping:
        raise ValueError("`inputs` must be a string or a mapping of strings to strings")
    return value


Params = Annotated[dict[str, JsonValue], Field(strict=False)]
Inputs = Annotated[
    str | Annotated[dict[str, str], Field(strict=False)], BeforeValidator(_check_inputs)
]


class Edge(FrozenModel):
    """A connection from ``source`` to ``target``.

    Attributes:
        source: Id of the node the edge leaves.
        target: Id of the node the edge enters.
        action: If set, the edge is taken only when the source's result carries this action.
        condition: Expression that must hold for the edge to be taken.
        transform: Expression that reshapes the source's output for the target.
    """

    source: str
    target: str
    action: str | None = None
    condition: str | None = None
    transform: str | None = None

    @property
    def key(self) -> tuple[str, str, str | None]:
        """The edge's identity within its graph: ``(source, target, action)``."""
        return (self.source, self.target, self.action)


class Node(FrozenModel):
    """One step of a workflow.

    Attributes:
        id: Unique id within its graph.
        uses: Registry key of the implementation, or a built-in kind (``flowcraft.loop`` ...).
        params: Static parameters, passed to the implementation as given.
        inputs: Where the input comes from: one key, or a mapping of input key to source key.
        config: Retry, timeout, fallback and join settings.
    """

    id: str
    uses: str
    params: Params = Field(default_factory=dict)
    inputs: Inputs | None = None
    config: NodeConfig = NodeConfig()

    @property
    def is_builtin(self) -> bool:
        """Whether ``uses`` names a built-in kind."""
        return self.uses in BUILTIN_KINDS

    @cached_property
    def spec(self) -> ConstructSpec | None:
        """The typed params of a built-in node, or ``None`` for a registry node.

        Raises:
            pydantic.ValidationError: The params are invalid (never for loaded blueprints).
        """
        from flowcraft.core._model.constructs import parse_spec  # noqa: PLC0415 - cycle

        return parse_spec(self.uses, self.params)

    def wait_spec(self) -> WaitSpec:
        """Return the params of a ``flowcraft.wait`` node (``TypeError`` for other kinds)."""
        return self._spec(WAIT)  # type: ignore[return-value]

    def sleep_spec(self) -> SleepSpec:
        """Return the params of a ``flowcraft.sleep`` node (``TypeError`` for other kinds)."""
        return self._spec(SLEEP)  # type: ignore[return-value]

    def subflow_spec(self) -> SubflowSpec:
        """Return the params of a ``flowcraft.subflow`` node (``TypeError`` for other kinds)."""
        return self._spec(SUBFLOW)  # type: ignore[return-value]

    def map_spec(self) -> MapSpec:
        """Return the params of a ``flowcraft.map`` node (``TypeError`` for other kinds)."""
        return self._spec(MAP)  # type: ignore[return-value]

    def loop_spec(self) -> LoopSpec:
        """Return the params of a ``flowcraft.loop`` node (``TypeError`` for other kinds)."""
        return self._spec(LOOP)  # type: ignore[return-value]

    def _spec(self, kind: str) -> ConstructSpec:
        spec = self.spec
        if self.uses != kind or spec is None:
            raise TypeError(f"node {self.id!r} uses {self.uses!r}, not {kind!r}")
        return spec


class _NodeLookup:
    """Node lookup shared by ``Graph`` and ``Blueprint``."""

    if TYPE_CHECKING:
        nodes: tuple[Node, ...]

    @cached_property
    def node_map(self) -> Mapping[str, Node]:
        """Nodes by id (the first one wins if ids repeat in an unvalidated graph)."""
        nodes: dict[str, Node] = {}
        for node in self.nodes:
            nodes.setdefault(node.id, node)
        return nodes

    def node(self, node_id: str) -> Node:
        """Return the node with this id.

        Raises:
            KeyError: No node has this id.
        """
        try:
            return self.node_map[node_id]
        except KeyError:
            raise KeyError(f"no node {node_id!r} in this graph") from None


NodeList = Annotated[tuple[Node, ...], Field(strict=False)]
EdgeList = Annotated[tuple[Edge, ...], Field(strict=False)]


class Graph(FrozenModel, _NodeLookup):
    """Nodes and edges: the inline body of a loop or map construct.

    Attributes:
        nodes: The nodes, in document order.
        edges: The edges, in document order.
    """

    nodes: NodeList = ()
    edges: EdgeList = ()


def _version_to_str(value: Any) -> Any:  # noqa: ANN401 - runs before validation
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Blueprint(FrozenModel, _NodeLookup):
    """A workflow definition: a graph of nodes and edges with an id.

    Attributes:
        id: Identifier of the workflow.
        version: Optional version label (numbers are accepted and kept as text).
        nodes: The nodes, in document order.
        edges: The edges, in document order.
        metadata: Free-form JSON data; the engine does not interpret it.
    """

    id: str = Field(min_length=1)
    version: Annotated[str | None, BeforeValidator(_version_to_str)] = None
    nodes: NodeList = ()
    edges: EdgeList = ()
    metadata: Params = Field(default_factory=dict)

    @property
    def graph(self) -> Graph:
        """The blueprint's nodes and edges as a plain ``Graph``."""
        return Graph(nodes=self.nodes, edges=self.edges)

    def to_json(self, *, indent: int | None = 2) -> str:
        """Return the canonical JSON text of the blueprint."""
        return self.model_dump_json(by_alias=True, exclude_defaults=True, indent=indent)
