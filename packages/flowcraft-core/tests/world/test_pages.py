"""Cursors and pages (``_pages``)."""

from __future__ import annotations

import pytest
from flowcraft.core.world import Pagination, WorldRequestError
from flowcraft.core.world._pages import decode_cursor, encode_cursor, paginate

ITEMS = [(i, f"item{i}") for i in range(1, 8)]


def test_pages_ascending_then_descending_cover_everything_once() -> None:
    for order in ("asc", "desc"):
        seen: list[str] = []
        cursor = None
        while True:
            page = paginate(ITEMS, Pagination(limit=3, cursor=cursor, sort_order=order), "x")
            seen += page.data
            cursor = page.cursor
            if not page.has_more:
                break
        expected = [item for _, item in ITEMS]
        assert seen == (expected if order == "asc" else expected[::-1])


def test_a_cursor_stays_valid_as_the_list_grows_and_an_empty_page_keeps_it() -> None:
    page = paginate(ITEMS, Pagination(limit=100), "x")
    assert not page.has_more
    assert page.cursor is not None
    empty = paginate(ITEMS, Pagination(cursor=page.cursor), "x")
    assert (empty.data, empty.cursor, empty.has_more) == ([], page.cursor, False)
    grown = paginate([*ITEMS, (8, "item8")], Pagination(cursor=page.cursor), "x")
    assert grown.data == ["item8"]


def test_foreign_or_garbled_cursors_are_400() -> None:
    with pytest.raises(WorldRequestError):
        decode_cursor(encode_cursor("x", "asc", 3), "y", "asc")
    with pytest.raises(WorldRequestError):
        decode_cursor(encode_cursor("x", "asc", 3), "x", "desc")
    with pytest.raises(WorldRequestError):
        decode_cursor("not a cursor!", "x", "asc")


def test_limit_is_bounded() -> None:
    with pytest.raises(ValueError, match="less than or equal to 1000"):
        Pagination(limit=1001)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Pagination(limit=0)
