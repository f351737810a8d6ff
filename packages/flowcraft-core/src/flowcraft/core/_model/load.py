"""The public loading API: parse, validate, load files, dump."""

from __future__ import annotations

from collections.abc import Container, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from flowcraft.core._model.compat import Dialect
from flowcraft.core._model.documents import Format, parse_text, read_file
from flowcraft.core._model.graph import Blueprint
from flowcraft.core._model.limits import DEFAULT_LIMITS, Limits
from flowcraft.core._model.validate import check_document
from flowcraft.core.errors import BlueprintError, Problem


def parse_blueprint(
    data: Mapping[str, Any],
    *,
    registry: Container[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    dialect: Dialect = "auto",
) -> Blueprint:
    """Validate a blueprint given as plain data (as parsed from JSON or YAML).

    Args:
        data: The document.
        registry: Known ``uses`` keys; when given, unknown keys are problems (built-ins are
            always known).
        limits: Size limits.
        dialect: ``auto`` reads TypeScript (camelCase, milliseconds) blueprints when it sees
            TypeScript-only fields; ``python`` or ``typescript`` force one reading.

    Raises:
        BlueprintError: With every problem found.
    """
    return _parse_any(data, registry=registry, limits=limits, dialect=dialect)


def validate_blueprint(
    data: object,
    *,
    registry: Container[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    dialect: Dialect = "auto",
) -> tuple[Problem, ...]:
    """Return every problem of a blueprint document (empty when it is valid); never raises."""
    return check_document(data, registry=registry, limits=limits, dialect=dialect).problems


def load_blueprint(
    path: str | Path,
    *,
    registry: Container[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    dialect: Dialect = "auto",
    format: Format = "auto",
) -> Blueprint:
    """Read, parse and validate a JSON or YAML blueprint file.

    Raises:
        BlueprintError: The file is unreadable (FC001), too large (FC002) or invalid.
    """
    data = read_file(path, limits, format)
    return _parse_any(data, registry=registry, limits=limits, dialect=dialect)


def loads_blueprint(
    text: str | bytes,
    *,
    registry: Container[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    dialect: Dialect = "auto",
    format: Format = "auto",
) -> Blueprint:
    """Parse and validate a blueprint from JSON or YAML text.

    Raises:
        BlueprintError: The text is not JSON/YAML (FC001), too large (FC002) or invalid.
    """
    data = parse_text(text, limits, format)
    return _parse_any(data, registry=registry, limits=limits, dialect=dialect)


def _parse_any(
    data: object, *, registry: Container[str] | None, limits: Limits, dialect: Dialect
) -> Blueprint:
    checked = check_document(data, registry=registry, limits=limits, dialect=dialect)
    if checked.blueprint is None:
        raise BlueprintError(checked.problems)
    return checked.blueprint


def dump_blueprint(blueprint: Blueprint, *, format: Literal["json", "yaml"] = "json") -> str:
    """Return the canonical text of a blueprint (snake_case, defaults left out)."""
    if format == "json":
        return blueprint.to_json() + "\n"
    return yaml.safe_dump(blueprint.to_dict(), sort_keys=False, allow_unicode=True)
