"""Whole-document validation: every problem at once, each with a code and a JSON path."""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowcraft.core._model import problems as codes
from flowcraft.core._model.compat import Dialect, normalise
from flowcraft.core._model.graph import Blueprint, Graph
from flowcraft.core._model.graph_checks import GraphItems, check_graph
from flowcraft.core._model.limits import DEFAULT_LIMITS, Limits
from flowcraft.core._model.paths import sort_key
from flowcraft.core._model.scope import Scope
from flowcraft.core._model.structural import validate_model
from flowcraft.core.errors import Problem


@dataclass(frozen=True, slots=True)
class Checked:
    """The outcome of validating a document.

    Attributes:
        blueprint: The blueprint, or ``None`` when any error was found.
        problems: Every problem, in document order.
    """

    blueprint: Blueprint | None
    problems: tuple[Problem, ...] = field(default=())


def check_document(
    data: object,
    *,
    registry: Container[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    dialect: Dialect = "auto",
) -> Checked:
    """Validate a parsed document (JSON-like data) and collect every problem."""
    if not isinstance(data, Mapping):
        message = (
            "the document is empty"
            if data is None
            else f"a blueprint must be a mapping, not {_type_name(data)}"
        )
        return Checked(None, (codes.INVALID_VALUE.problem("$", message),))
    normalised = normalise(data, dialect)
    scope = Scope(registry, limits, normalised.dialect, normalised.origins, data.get("metadata"))
    scope.problems.extend(normalised.problems)
    blueprint = _check_root(normalised.document, scope)
    found = tuple(sorted(scope.problems, key=lambda problem: sort_key(problem.path)))
    return Checked(None if found else blueprint, found)


def _check_root(document: Mapping[str, Any], scope: Scope) -> Blueprint | None:
    if not scope.admit_sizes(document, "$"):
        return None
    blueprint = validate_model(Blueprint, document, "$", scope)
    _require_nodes(document, "$", scope)
    items = GraphItems.of(blueprint, document)
    check_graph(items, "$", scope, depth=0, check_body=_check_body)
    return blueprint


def _require_nodes(document: Mapping[str, Any], path: str, scope: Scope) -> None:
    """A graph without nodes does nothing: a mistake, never a workflow."""
    nodes = document.get("nodes")
    if nodes is None or (isinstance(nodes, list | tuple) and not nodes):
        where = "a blueprint" if path == "$" else "a body"
        scope.add(codes.INVALID_VALUE.problem(f"{path}.nodes", f"{where} needs at least one node"))


def _check_body(raw: object, path: str, scope: Scope, depth: int) -> None:
    if depth > scope.limits.max_depth:
        limit = scope.limits.max_depth
        scope.add(codes.TOO_DEEP.problem(path, f"bodies are nested more than {limit} deep"))
        return
    if not isinstance(raw, Mapping):
        message = f"a body must be a mapping with nodes and edges, not {_type_name(raw)}"
        scope.add(codes.INVALID_VALUE.problem(path, message))
        return
    if not scope.admit_sizes(raw, path):
        return
    graph = validate_model(Graph, raw, path, scope)
    _require_nodes(raw, path, scope)
    check_graph(GraphItems.of(graph, raw), path, scope, depth, check_body=_check_body)


def _type_name(value: object) -> str:
    names = {list: "a list", str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)
