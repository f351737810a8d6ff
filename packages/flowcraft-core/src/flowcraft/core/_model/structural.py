"""Shape validation through the pydantic models, turned into coded problems with paths."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from flowcraft.core._model import problems as codes
from flowcraft.core._model.paths import from_loc
from flowcraft.core._model.scope import Scope
from flowcraft.core.errors import Problem
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


def validate_model(
    model: type[ModelT], data: object, path: str, scope: Scope, *, construct: bool = False
) -> ModelT | None:
    """Validate ``data`` as ``model``; on failure record every error and return ``None``.

    Args:
        model: The model class.
        data: The JSON-like data.
        path: JSON path of ``data`` in the document.
        scope: Where problems are recorded.
        construct: Whether ``model`` is a built-in kind's params (selects FC107/FC108).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        scope.problems.extend(_convert(exc, path, scope, construct=construct))
        return None


def salvage(model: type[ModelT], items: object) -> list[tuple[int, ModelT]]:
    """Return the valid items of a list, with their indexes (errors are reported elsewhere)."""
    if not isinstance(items, list):
        return []
    valid: list[tuple[int, ModelT]] = []
    for index, item in enumerate(items):
        try:
            valid.append((index, model.model_validate(item)))
        except ValidationError:
            continue
    return valid


def _convert(exc: ValidationError, base: str, scope: Scope, *, construct: bool) -> list[Problem]:
    converted: list[Problem] = []
    for error in exc.errors(include_url=False, include_context=False):
        path = scope.original_path(from_loc(base, error["loc"]))
        code = _code_of(error["type"], error["loc"], construct=construct)
        converted.append(code.problem(path, _message(error)))
    return converted


def _code_of(kind: str, loc: tuple[str | int, ...], *, construct: bool) -> codes.Code:
    if construct and kind == "missing" and loc == ("max_iterations",):
        return codes.LOOP_NO_MAX
    if construct and kind == "value_error" and loc == ():
        return codes.BAD_CONSTRUCT
    if kind == "missing":
        return codes.MISSING_FIELD
    if kind == "extra_forbidden":
        return codes.UNKNOWN_FIELD
    return codes.INVALID_VALUE


#: pydantic's error types in the words of a blueprint's author.
_PLAIN = {
    "dict_type": "should be a mapping",
    "model_type": "should be a mapping",
    "model_attributes_type": "should be a mapping",
    "list_type": "should be a list",
    "tuple_type": "should be a list",
    "string_type": "should be text",
    "int_type": "should be a whole number",
    "int_parsing": "should be a whole number",
    "int_from_float": "should be a whole number",
    "float_type": "should be a number",
    "float_parsing": "should be a number",
    "bool_type": "should be true or false",
    "bool_parsing": "should be true or false",
}


def _message(error: Mapping[str, Any]) -> str:
    if error["type"] == "missing":
        return f"the field `{error['loc'][-1]}` is required"
    if error["type"] == "extra_forbidden":
        return f"unknown field `{error['loc'][-1]}`"
    text = _PLAIN.get(error["type"]) or str(error["msg"]).removeprefix("Value error, ")
    if text.startswith("Input should"):
        text = "should" + text.removeprefix("Input should")
    if error["loc"] == ():
        return text
    return f"{text} (got {_show(error.get('input'))})"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
