"""Conversion of CEL results to plain, JSON-ready Python values."""

from __future__ import annotations

import datetime as dt

from flowcraft.core.errors import ExpressionError

_SCALARS = (str, int, float, bool, type(None))


def to_plain(source: str, value: object) -> object:
    """Return ``value`` as plain Python data: dict, list, str, int, float, bool or None.

    Timestamps become ISO-8601 strings and durations become seconds.

    Raises:
        ExpressionError: The value has no plain form (bytes, CEL types ...).
    """
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, list | tuple):
        return [to_plain(source, item) for item in value]
    if isinstance(value, dict):
        return {_key(source, key): to_plain(source, item) for key, item in value.items()}
    return _special(source, value)


def _special(source: str, value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    has_value = getattr(value, "has_value", None)
    if type(value).__name__ == "OptionalValue" and callable(has_value):
        return to_plain(source, getattr(value, "value")()) if has_value() else None  # noqa: B009
    raise ExpressionError(source, f"the result has no plain form ({type(value).__name__})")


def _key(source: str, key: object) -> str | int | bool:
    if isinstance(key, str | int | bool):
        return key
    raise ExpressionError(source, f"a map key has no plain form ({type(key).__name__})")
