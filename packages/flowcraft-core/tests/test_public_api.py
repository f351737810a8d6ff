"""The façade exports exactly the public names of the blueprint layer (and more as they come)."""

import flowcraft.core

BLUEPRINT_API = {
    "ALL_CODES",
    "BUILTIN_KINDS",
    "SCOPE_NAMES",
    "STATE_STYLES",
    "Blueprint",
    "BlueprintError",
    "Code",
    "CompiledExpression",
    "ConstructSpec",
    "Dialect",
    "Edge",
    "ExpressionError",
    "Flow",
    "FlowcraftError",
    "Graph",
    "GraphFacts",
    "JoinStrategy",
    "Limits",
    "LoopSpec",
    "MapSpec",
    "Node",
    "NodeConfig",
    "Problem",
    "RetryPolicy",
    "SleepSpec",
    "SubflowSpec",
    "WaitSpec",
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
}


RUNTIME_API = {
    "EventBus",
    "FlowRuntime",
    "JsonSerializer",
    "NodeContext",
    "NodeLogFilter",
    "NodeError",
    "NodeStatus",
    "NonRetryableError",
    "Result",
    "ResumeError",
    "RunContext",
    "RunError",
    "RunHandle",
    "RunNotFoundError",
    "RunResult",
    "AwaitingNode",
    "RunStatus",
    "Serializer",
    "Suspend",
    "UnknownBlueprintError",
    "UnknownNodeError",
}


DISTRIBUTED_API = {
    "BlueprintSet",
    "Client",
    "DistributedRunHandle",
    "MemoryCoordinationStore",
    "MemoryJobQueue",
    "MemoryRunStore",
    "ReconcileStats",
    "Reconciler",
    "Worker",
}


def test_exported_names() -> None:
    assert set(flowcraft.core.__all__) == BLUEPRINT_API | RUNTIME_API | DISTRIBUTED_API
    assert all(hasattr(flowcraft.core, name) for name in flowcraft.core.__all__)


def test_errors_module_is_public_and_shaped() -> None:
    from flowcraft.core import errors

    assert issubclass(errors.BlueprintError, errors.FlowcraftError)
    assert issubclass(errors.BlueprintError, ValueError)
    assert issubclass(errors.ExpressionError, errors.FlowcraftError)
    assert "FlowcraftError" in (errors.__doc__ or "")


def test_every_error_class_is_exported_and_drawn_in_the_tree() -> None:
    import inspect

    from flowcraft.core import errors

    classes = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, errors.FlowcraftError)
    }
    assert classes <= set(errors.__all__)
    doc = errors.__doc__ or ""
    assert all(name in doc for name in classes), sorted(c for c in classes if c not in doc)
