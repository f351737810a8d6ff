"""Records in and out of static columns, cursors, and the names a store accepts."""

from types import SimpleNamespace

import pytest
from flowcraft.core.ports import RunRecord
from flowcraft.kafka._codec import decode_cursor, dumps, encode_cursor, record_of, record_static
from flowcraft.kafka._tables import Tables


def test_a_record_round_trips_through_its_columns() -> None:
    record = RunRecord(
        run_id="r", blueprint_id="bp", blueprint_version="2", blueprint_digest="d",
        status="failed", input={"x": [1]}, output="o", errors=({"code": "E"},),
        parent=("p", "n", "f", 3), idempotency_key="k", created_at=5.0, updated_at=6.0,
    )  # fmt: skip
    row = SimpleNamespace(record=record_static(record), status="failed", output=dumps("o"),
                          errors=dumps([{"code": "E"}]), updated_at=6.0)  # fmt: skip
    assert record_of("r", row) == record
    assert record_of("r", SimpleNamespace(record=None)) is None


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    assert decode_cursor(encode_cursor(20_000, 1.5, "run-1")) == (20_000, 1.5, "run-1")
    for foreign in ("", "3", "kc1:%%%", "kc1:" + "W10="):
        with pytest.raises(ValueError, match="cursor"):
            decode_cursor(foreign)


@pytest.mark.parametrize("name", ["bad-name", "1st", "a b", "x" * 41, "drop;table"])
def test_names_are_identifiers(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid keyspace or table name"):
        Tables(name)
