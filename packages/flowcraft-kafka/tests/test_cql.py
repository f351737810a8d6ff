"""Rows of the store's statements: plain tuples from the driver, named once per column list."""

from __future__ import annotations

from typing import Any

import pytest
from flowcraft.kafka._cql import Result, row_class


class _ResultSet:
    """What ``Result`` reads of the driver's ``ResultSet`` (its first page)."""

    def __init__(
        self, columns: list[str] | None, rows: list[Any], paging_state: bytes | None = None
    ) -> None:
        self.column_names, self.current_rows, self.paging_state = columns, rows, paging_state


def test_rows_get_the_column_names_as_fields() -> None:
    found = Result(_ResultSet(["version", "journal"], [(3, None), (4, "j")], b"next"))
    assert [(row.version, row.journal) for row in found] == [(3, None), (4, "j")]
    assert found.one() == (3, None)
    assert found.paging_state == b"next"


def test_one_class_per_column_list() -> None:
    assert row_class(["a", "b"]) is row_class(("a", "b"))
    assert row_class(["a", "b"]) is not row_class(["b", "a"])


def test_column_names_become_fields_as_the_driver_names_them() -> None:
    row = row_class(["[applied]", "owner", "writetime(x)"])(True, "w", 7)
    assert (row.applied, row.owner, row.writetime_x) == (True, "w", 7)


def test_was_applied_reads_the_applied_column() -> None:
    assert Result(_ResultSet(["[applied]"], [(True,)])).was_applied is True
    refused = Result(_ResultSet(["[applied]", "version"], [(False, 4)]))
    assert refused.was_applied is False
    assert refused.one().version == 4


def test_was_applied_of_an_unconditional_result_is_a_mistake() -> None:
    with pytest.raises(RuntimeError, match="conditional"):
        _ = Result(_ResultSet(["version"], [(1,)])).was_applied
    with pytest.raises(RuntimeError, match="conditional"):
        _ = Result(_ResultSet(None, [])).was_applied


def test_no_rows() -> None:
    found = Result(_ResultSet(["version"], []))
    assert found.one() is None
    assert list(found) == []


def test_rows_a_session_already_named_are_kept() -> None:
    named = row_class(["k"])("v")
    assert Result(_ResultSet(["k"], [named])).one() is named
