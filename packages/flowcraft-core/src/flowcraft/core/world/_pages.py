"""Pages and cursors, shared by every list of a World (pure).

A cursor is opaque to callers: URL-safe base64 of ``{"k": kind, "o": order, "p": position}``
where ``position`` is the sort key of the last item returned (an event's sequence, a
creation counter, a chunk index). Listing from it returns the items strictly after that
position in the cursor's order, so cursors stay valid while the list grows. A cursor of
another list or order is a 400.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import TypeVar

from flowcraft.core.world._errors import WorldRequestError
from flowcraft.core.world._models import Page, Pagination, SortOrder

T = TypeVar("T")


def encode_cursor(kind: str, order: SortOrder, position: int) -> str:
    """The cursor after ``position`` in a ``kind`` list read in ``order``."""
    raw = json.dumps({"k": kind, "o": order, "p": position}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, order: SortOrder) -> int:
    """The position in ``cursor``; 400 if it is not a cursor of this list and order."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        fields = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position = fields["p"]
        valid = fields["k"] == kind and fields["o"] == order and isinstance(position, int)
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        valid = False
    if not valid:
        raise WorldRequestError(
            f"cursor {cursor!r} is not a cursor of this {kind} list in {order} order",
            code="bad_cursor",
        )
    return int(position)


def paginate(items: Iterable[tuple[int, T]], pagination: Pagination | None, kind: str) -> Page[T]:
    """One page of ``items`` (``(position, item)`` pairs in ascending position).

    Reads ``limit + 1`` items past the cursor to tell whether there are more.
    """
    request = pagination or Pagination()
    order = request.sort_order
    after = None if request.cursor is None else decode_cursor(request.cursor, kind, order)
    ordered = list(items) if order == "asc" else list(reversed(list(items)))
    if after is not None:
        ordered = [(p, i) for p, i in ordered if (p > after if order == "asc" else p < after)]
    window = ordered[: request.limit + 1]
    data = window[: request.limit]
    cursor = encode_cursor(kind, order, data[-1][0]) if data else request.cursor
    return Page[T](data=[item for _, item in data], cursor=cursor, has_more=len(window) > len(data))
