"""Code-first definition: the fluent ``Flow`` builder and the ``@node`` decorator.

``uses`` keys generated for Python callables are their qualified names
(``f"{module}.{qualname}"``), so the same code yields the same keys in every process. Callables
without a stable name (lambdas, functions defined inside functions) need an explicit key:
``@node("orders.charge")``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Container, Mapping
from pathlib import Path
from typing import Any, Self, TypedDict, TypeVar, Unpack, overload

from flowcraft.core._model.config import JoinStrategy, RetryPolicy
from flowcraft.core._model.graph import Blueprint
from flowcraft.core._model.kinds import LOOP, MAP, SLEEP, SUBFLOW, WAIT
from flowcraft.core._model.load import parse_blueprint
from flowcraft.core._runtime.nodes import INLINE_ATTR

F = TypeVar("F", bound=Callable[..., object])
_ATTRIBUTE = "__flowcraft_uses__"


@overload
def node(target: F, /) -> F: ...
@overload
def node(key: str | None = None, /, *, inline: bool = False) -> Callable[[F], F]: ...
def node(target: F | str | None = None, /, *, inline: bool = False) -> F | Callable[[F], F]:
    """Mark a function or class as a node implementation with a stable ``uses`` key.

    Use as ``@node`` (key = ``module.qualname``) or ``@node("my.key")``. ``inline=True`` tells
    the runtime that a plain (sync) function never blocks, so it is called on the event loop
    instead of in the thread pool (faster; only for quick CPU-light functions).

    Raises:
        ValueError: No key is given and the callable has no stable qualified name.
    """
    if callable(target):
        return _mark(target, None, inline=inline)
    key = target

    def decorate(function: F) -> F:
        return _mark(function, key, inline=inline)

    return decorate


def _mark(function: F, key: str | None, *, inline: bool) -> F:
    setattr(function, _ATTRIBUTE, key if key is not None else _qualified_name(function))
    if inline:
        setattr(function, INLINE_ATTR, True)
    return function


def uses_key(implementation: Callable[..., object]) -> str:
    """Return the ``uses`` key of a callable: its ``@node`` key or its qualified name.

    Raises:
        ValueError: The callable has no stable qualified name (lambda, nested function).
    """
    key = getattr(implementation, _ATTRIBUTE, None)
    return key if isinstance(key, str) else _qualified_name(implementation)


def _qualified_name(implementation: Callable[..., object]) -> str:
    module = getattr(implementation, "__module__", None)
    qualname = getattr(implementation, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        shown = qualname or repr(implementation)
        raise ValueError(
            f"{shown} has no stable qualified name; give it a key with @node('some.key')"
        )
    return f"{_importable(module)}.{qualname}"


def _importable(module: str) -> str:
    """The name a worker imports ``module`` by (``__main__`` is a script or ``python -m``).

    ``python -m pkg.mod`` keeps the real name in ``__main__.__spec__``; ``python path/app.py``
    gets the file's module name relative to the directory it ran from (``sys.path[0]``), so
    the keys match those of a worker that imports the same file as a module.
    """
    if module != "__main__":
        return module
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name).removesuffix(".__main__")
    file = getattr(main, "__file__", None)
    if not file:
        return module  # an interactive session: nothing a worker could import
    path = Path(file).resolve().with_suffix("")
    base = Path(sys.path[0] or ".").resolve() if sys.path else path.parent
    try:
        parts = path.relative_to(base).parts
    except ValueError:
        parts = (path.name,)
    return ".".join(parts)


Uses = str | Callable[..., object]
Retry = RetryPolicy | Mapping[str, Any] | int


class NodeOptions(TypedDict, total=False):
    """Keyword options every node-adding method of ``Flow`` accepts."""

    inputs: str | Mapping[str, str] | None
    retry: Retry | None
    timeout: float | None
    fallback: str | None
    join: JoinStrategy | None


class Flow:
    """A fluent builder of blueprints; ``build()`` validates and returns the ``Blueprint``.

    Example::

        flow = (
            Flow("orders", version="1")
            .node("fetch", fetch_order, retry=3)
            .node("charge", charge, timeout=30, fallback="refund")
            .node("refund", refund)
            .edge("fetch", "charge", condition="input.total > 0")
        )
        blueprint, registry = flow.build(), flow.registry()
    """

    def __init__(
        self, flow_id: str, *, version: str | None = None, metadata: Mapping[str, Any] | None = None
    ) -> None:
        self._id = flow_id
        self._version = version
        self._metadata = dict(metadata or {})
        self._nodes: list[dict[str, Any]] = []
        self._edges: list[dict[str, Any]] = []
        self._implementations: dict[str, Callable[..., object]] = {}

    def node(
        self,
        node_id: str,
        uses: Uses,
        *,
        params: Mapping[str, Any] | None = None,
        inputs: str | Mapping[str, str] | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
        fallback: str | None = None,
        join: JoinStrategy | None = None,
    ) -> Self:
        """Add a node whose implementation is a registry key or a Python callable."""
        entry: dict[str, Any] = {"id": node_id, "uses": self._uses(uses)}
        if params:
            entry["params"] = dict(params)
        if inputs is not None:
            entry["inputs"] = inputs if isinstance(inputs, str) else dict(inputs)
        config = _config(retry, timeout, fallback, join)
        if config:
            entry["config"] = config
        self._nodes.append(entry)
        return self

    def edge(
        self,
        source: str,
        target: str,
        *,
        action: str | None = None,
        condition: str | None = None,
        transform: str | None = None,
    ) -> Self:
        """Add an edge; ``action``, ``condition`` and ``transform`` are optional."""
        entry = {"source": source, "target": target}
        optional = {"action": action, "condition": condition, "transform": transform}
        entry.update({key: value for key, value in optional.items() if value is not None})
        self._edges.append(entry)
        return self

    def wait(
        self, node_id: str, *, prompt: str | None = None, **options: Unpack[NodeOptions]
    ) -> Self:
        """Add a ``flowcraft.wait`` node (suspends until resumed)."""
        return self.node(node_id, WAIT, params=_given(prompt=prompt), **options)

    def sleep(
        self,
        node_id: str,
        *,
        seconds: float | None = None,
        until: str | None = None,
        **options: Unpack[NodeOptions],
    ) -> Self:
        """Add a ``flowcraft.sleep`` node: ``seconds`` or an ISO-8601 ``until``."""
        return self.node(node_id, SLEEP, params=_given(seconds=seconds, until=until), **options)

    def subflow(
        self,
        node_id: str,
        blueprint: str | Blueprint,
        *,
        input: str | Mapping[str, str] | None = None,
        output: str | Mapping[str, str] | None = None,
        **options: Unpack[NodeOptions],
    ) -> Self:
        """Add a ``flowcraft.subflow`` node running the blueprint with this id as a child run."""
        child = blueprint if isinstance(blueprint, str) else blueprint.id
        params = _given(blueprint=child, input=_plain(input), output=_plain(output))
        return self.node(node_id, SUBFLOW, params=params, **options)

    def map(
        self,
        node_id: str,
        each: Uses | Flow,
        *,
        items: str | None = None,
        concurrency: int | None = None,
        **options: Unpack[NodeOptions],
    ) -> Self:
        """Add a ``flowcraft.map`` node applying an implementation or a body ``Flow`` per item."""
        params = _given(items=items, concurrency=concurrency)
        if isinstance(each, Flow):
            params["body"] = self._adopt(each)
        else:
            params["uses"] = self._uses(each)
        return self.node(node_id, MAP, params=params, **options)

    def loop(
        self,
        node_id: str,
        body: Flow | str,
        *,
        while_: str,
        max_iterations: int,
        **options: Unpack[NodeOptions],
    ) -> Self:
        """Add a ``flowcraft.loop`` node over a body ``Flow`` or a blueprint id."""
        params: dict[str, Any] = {"while": while_, "max_iterations": max_iterations}
        if isinstance(body, Flow):
            params["body"] = self._adopt(body)
        else:
            params["blueprint"] = body
        return self.node(node_id, LOOP, params=params, **options)

    def to_dict(self) -> dict[str, Any]:
        """Return the blueprint document (not yet validated)."""
        document: dict[str, Any] = {"id": self._id}
        if self._version is not None:
            document["version"] = self._version
        document.update(nodes=list(self._nodes), edges=list(self._edges))
        if self._metadata:
            document["metadata"] = dict(self._metadata)
        return document

    def graph_dict(self) -> dict[str, Any]:
        """Return the nodes and edges only (the form of an inline body)."""
        return {"nodes": list(self._nodes), "edges": list(self._edges)}

    def build(self, *, registry: Container[str] | None = None) -> Blueprint:
        """Validate and return the blueprint.

        Args:
            registry: Known ``uses`` keys besides this flow's callables; when given, other
                keys are problems.

        Raises:
            BlueprintError: With every problem found.
        """
        known = None if registry is None else _Union(registry, self._implementations)
        return parse_blueprint(self.to_dict(), registry=known, dialect="python")

    def registry(self) -> dict[str, Callable[..., object]]:
        """Return ``uses`` key → callable for every callable given to this flow."""
        return dict(self._implementations)

    def _uses(self, uses: Uses) -> str:
        if isinstance(uses, str):
            return uses
        key = uses_key(uses)
        self._implementations[key] = uses
        return key

    def _adopt(self, body: Flow) -> dict[str, Any]:
        self._implementations.update(body.registry())
        return body.graph_dict()


class _Union(Container[str]):
    def __init__(self, first: Container[str], second: Container[str]) -> None:
        self._first, self._second = first, second

    def __contains__(self, key: object) -> bool:
        return key in self._first or key in self._second


def _config(
    retry: Retry | None, timeout: float | None, fallback: str | None, join: JoinStrategy | None
) -> dict[str, Any]:
    config = _given(timeout=timeout, fallback=fallback, join=join)
    if isinstance(retry, int):
        config["retry"] = {"max_attempts": retry}
    elif isinstance(retry, RetryPolicy):
        config["retry"] = retry.to_dict()
    elif retry is not None:
        config["retry"] = dict(retry)
    return config


def _given(**values: Any) -> dict[str, Any]:  # noqa: ANN401
    return {key: value for key, value in values.items() if value is not None}


def _plain(value: str | Mapping[str, str] | None) -> str | dict[str, str] | None:
    return value if value is None or isinstance(value, str) else dict(value)


__all__ = ["Flow", "node", "uses_key"]
