"""JSON paths of problems: ``$.nodes[3].config.retry.max_attempts``."""

from __future__ import annotations

import re
from collections.abc import Iterable

_UNION_TAG = re.compile(r"^(str|int|float|bool|dict|list|none)$|^[a-z-]+\[.*\]$")


def join(base: str, *parts: str | int) -> str:
    """Append keys and indexes to a JSON path."""
    text = [base]
    for part in parts:
        if isinstance(part, int):
            text.append(f"[{part}]")
        elif part.isidentifier() and part.isascii():
            text.append(f".{part}")
        else:
            text.append(f"[{part!r}]")
    return "".join(text)


def from_loc(base: str, loc: Iterable[str | int]) -> str:
    """Turn a pydantic error location into a JSON path, dropping union member tags."""
    parts = [part for part in loc if isinstance(part, int) or not _UNION_TAG.match(part)]
    return join(base, *parts)


def sort_key(path: str) -> tuple[tuple[int, int | str], ...]:
    """Order paths as they appear in a document (``[10]`` after ``[9]``)."""
    tokens = re.findall(r"\[(\d+)\]|([^.\[\]]+)", path)
    return tuple((0, int(number)) if number else (1, name) for number, name in tokens)
