"""A tiny DSL for the suite's blueprints (plain documents, validated like any blueprint)."""

from __future__ import annotations

from typing import Any

from flowcraft.core._model.graph import Blueprint
from flowcraft.core._model.load import parse_blueprint
from flowcraft.core.testing.nodes import registry


def n(
    node_id: str,
    kind: str,
    /,
    *,
    config: dict[str, Any] | None = None,
    inputs: str | dict[str, str] | None = None,
    **params: object,
) -> dict[str, Any]:
    """A node; a ``kind`` without a dot means ``suite.<kind>``; ``params`` are keywords."""
    node: dict[str, Any] = {"id": node_id, "uses": kind if "." in kind else f"suite.{kind}"}
    if params:
        node["params"] = params
    if config:
        node["config"] = config
    if inputs is not None:
        node["inputs"] = inputs
    return node


def e(source: str, target: str, **options: Any) -> dict[str, Any]:  # noqa: ANN401
    """An edge (``action``, ``condition``, ``transform``)."""
    return {"source": source, "target": target, **options}


def bp(
    blueprint_id: str,
    nodes: list[dict[str, Any]],
    edges: list[dict[str, Any]] | None = None,
    *,
    version: str = "1",
) -> Blueprint:
    """A validated blueprint (version ``"1"`` unless told)."""
    data = {"id": blueprint_id, "version": version, "nodes": nodes, "edges": edges or []}
    return parse_blueprint(data, registry=registry())
