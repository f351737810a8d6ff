"""flowcraft-core: the Flowcraft workflow engine.

The public API of the engine is re-exported here; implementation modules are private.

Running::

    from flowcraft.core import FlowRuntime

    runtime = FlowRuntime(registry=my_registry)
    result = await runtime.run(blueprint, {"order_id": 42})   # or runtime.run_sync(...)

Blueprints::

    from flowcraft.core import load_blueprint, analyze, lint, to_mermaid

    blueprint = load_blueprint("order.yaml", registry=my_registry)  # BlueprintError lists problems
    print(analyze(blueprint).start_nodes)
    print(to_mermaid(blueprint))
"""

from flowcraft.core.__about__ import __version__
from flowcraft.core._analysis.facts import GraphFacts, analyze
from flowcraft.core._analysis.lint import lint
from flowcraft.core._analysis.mermaid import STATE_STYLES, to_mermaid
from flowcraft.core._builder import Flow, node, uses_key
from flowcraft.core._distributed.blueprints import BlueprintSet
from flowcraft.core._distributed.client import Client, DistributedRunHandle
from flowcraft.core._distributed.memory import (
    MemoryCoordinationStore,
    MemoryJobQueue,
    MemoryRunStore,
)
from flowcraft.core._distributed.reconciler import Reconciler, ReconcileStats
from flowcraft.core._distributed.worker import Worker
from flowcraft.core._engine.state import NodeError, NodeStatus, RunStatus
from flowcraft.core._expressions import SCOPE_NAMES, CompiledExpression, compile_expression
from flowcraft.core._model.compat import Dialect
from flowcraft.core._model.config import JoinStrategy, NodeConfig, RetryPolicy
from flowcraft.core._model.constructs import (
    ConstructSpec,
    LoopSpec,
    MapSpec,
    SleepSpec,
    SubflowSpec,
    WaitSpec,
)
from flowcraft.core._model.graph import Blueprint, Edge, Graph, Node
from flowcraft.core._model.kinds import BUILTIN_KINDS
from flowcraft.core._model.limits import Limits
from flowcraft.core._model.load import (
    dump_blueprint,
    load_blueprint,
    loads_blueprint,
    parse_blueprint,
    validate_blueprint,
)
from flowcraft.core._model.problems import ALL_CODES, Code
from flowcraft.core._model.schema import blueprint_json_schema
from flowcraft.core._runtime.context import (
    NodeContext,
    NodeLogFilter,
    Result,
    RunContext,
    Suspend,
)
from flowcraft.core._runtime.events import EventBus
from flowcraft.core._runtime.result import AwaitingNode, RunResult
from flowcraft.core._runtime.runtime import FlowRuntime, RunHandle
from flowcraft.core._runtime.serializer import JsonSerializer, Serializer
from flowcraft.core.errors import (
    BlueprintError,
    ExpressionError,
    FlowcraftError,
    NonRetryableError,
    Problem,
    ResumeError,
    RunError,
    RunNotFoundError,
    UnknownBlueprintError,
    UnknownNodeError,
)

__all__ = [
    "ALL_CODES",
    "BUILTIN_KINDS",
    "SCOPE_NAMES",
    "STATE_STYLES",
    "AwaitingNode",
    "Blueprint",
    "BlueprintError",
    "BlueprintSet",
    "Client",
    "Code",
    "CompiledExpression",
    "ConstructSpec",
    "Dialect",
    "DistributedRunHandle",
    "Edge",
    "EventBus",
    "ExpressionError",
    "Flow",
    "FlowRuntime",
    "FlowcraftError",
    "Graph",
    "GraphFacts",
    "JoinStrategy",
    "JsonSerializer",
    "Limits",
    "LoopSpec",
    "MapSpec",
    "MemoryCoordinationStore",
    "MemoryJobQueue",
    "MemoryRunStore",
    "Node",
    "NodeConfig",
    "NodeContext",
    "NodeError",
    "NodeLogFilter",
    "NodeStatus",
    "NonRetryableError",
    "Problem",
    "ReconcileStats",
    "Reconciler",
    "Result",
    "ResumeError",
    "RetryPolicy",
    "RunContext",
    "RunError",
    "RunHandle",
    "RunNotFoundError",
    "RunResult",
    "RunStatus",
    "Serializer",
    "SleepSpec",
    "SubflowSpec",
    "Suspend",
    "UnknownBlueprintError",
    "UnknownNodeError",
    "WaitSpec",
    "Worker",
    "__version__",
    "analyze",
    "blueprint_json_schema",
    "compile_expression",
    "dump_blueprint",
    "lint",
    "load_blueprint",
    "loads_blueprint",
    "node",
    "parse_blueprint",
    "to_mermaid",
    "uses_key",
    "validate_blueprint",
]
