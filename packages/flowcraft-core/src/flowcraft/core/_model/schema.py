"""JSON Schema of the canonical blueprint format (``flowcraft schema``)."""

from __future__ import annotations

from typing import Any

from flowcraft.core.__about__ import __version__
from flowcraft.core._model.constructs import SPEC_TYPES
from flowcraft.core._model.graph import Blueprint
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

SCHEMA_ID = "https://flowcraft.dev/schemas/blueprint.json"


def blueprint_json_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of canonical blueprints.

    The params of built-in kinds are described with ``if``/``then`` on ``uses``. TypeScript
    (camelCase) blueprints are accepted by the loader but are not what this schema describes.
    """
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Blueprint, "validation")]
    models.extend((spec, "validation") for spec in SPEC_TYPES.values())
    _, schema = models_json_schema(models, ref_template="#/$defs/{model}")
    defs: dict[str, Any] = schema["$defs"]
    defs["Node"]["allOf"] = [_params_rule(uses, spec.__name__) for uses, spec in SPEC_TYPES.items()]
    root = {k: v for k, v in defs["Blueprint"].items() if k not in {"title", "description"}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Flowcraft blueprint",
        "description": f"A Flowcraft workflow blueprint (flowcraft-core {__version__}).",
        **root,
        "$defs": {name: value for name, value in defs.items() if name != "Blueprint"},
    }


def _params_rule(uses: str, spec_name: str) -> dict[str, Any]:
    return {
        "if": {"properties": {"uses": {"const": uses}}, "required": ["uses"]},
        "then": {"properties": {"params": {"$ref": f"#/$defs/{spec_name}"}}},
    }
