"""Turns CEL engine exceptions into short, clear messages (no engine internals)."""

from __future__ import annotations

import re

_LOCATED = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")
_MAX_MESSAGE = 240


def describe_failure(exc: BaseException) -> str:
    """Return a one-line explanation of a CEL compile or evaluation failure."""
    return describe_text(type(exc).__name__, str(exc))


def describe_text(kind: str, text: str) -> str:
    """:func:`describe_failure` of an exception known by its class name and text."""
    if kind == "KeyError":
        return f"no such key: {text}"
    located = _LOCATED.search(text)
    if located is not None:
        line, column, reason = located.groups()
        reason = reason.removeprefix("Syntax error: ")
        return _short(f"syntax error at line {line}, column {column}: {reason}")
    return _short(_first_sentence(text) or kind)


def _first_sentence(text: str) -> str:
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    return first_line.split(". ", 1)[0].rstrip(".")


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."
