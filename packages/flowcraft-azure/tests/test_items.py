"""The store's item layout (``_items``, pure): rows, folding, parts, cursors."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from flowcraft.azure import _items as it
from flowcraft.core import ports
from hypothesis import given
from hypothesis import strategies as st


def _run(version: int, log: Mapping[str, object], snap: object = None) -> dict[str, object]:
    return {"ver": version, "log": log, "snap": snap}


def test_a_fold_applies_saves_in_version_order() -> None:
    first = it.delta_rows(2, {"a": 1}, {"k": "v"}, [ports.Message(id="m1", body=b"1")], ())
    second = it.delta_rows(3, {"a": 2, "b": [1]}, {"k": ports.DELETE}, [], ["m1"])
    folded = it.fold(_run(3, {it.log_key(3): {"rows": second}, it.log_key(2): {"rows": first}}), {})
    assert folded is not None
    assert folded.records == {"a": ("2", 3), "b": ("[1]", 3)}
    assert folded.context == {}
    assert folded.messages({}, {}) == ()


def test_outbox_keeps_first_positions_and_drops_sent_markers() -> None:
    rows = it.delta_rows(2, {}, {}, [ports.Message(id=m, body=m.encode()) for m in "abca"], ())
    folded = it.fold(_run(2, {it.log_key(2): {"rows": rows}}), {})
    assert folded is not None
    assert [m.id for m in folded.messages({}, {})] == ["a", "b", "c"]
    assert [m.id for m in folded.messages({it.sent_key("b"): 1}, {})] == ["a", "c"]


def test_a_missing_part_asks_for_another_read() -> None:
    log = {it.log_key(2): {"n": 2, "nonce": "x"}}
    assert it.fold(_run(2, log), {"j:2:x:0": []}) is None
    assert it.fold(_run(2, log), {"j:2:x:0": [], "j:2:x:1": [["r", "k", "1", 2]]}) is not None
    snap = {"ver": 1, "nonce": "s", "n": 1}
    assert it.fold(_run(1, {}, snap), {}) is None


def test_a_snapshot_keeps_record_versions_and_unsent_messages() -> None:
    rows = it.delta_rows(4, {"r": True}, {"c": 1}, [ports.Message(id="m", body=b"")], ())
    folded = it.fold(_run(4, {it.log_key(4): {"rows": rows}}), {})
    assert folded is not None
    again = it.fold(_run(4, {}, {"ver": 4, "nonce": "n", "n": 1}),
                    {"s:4:n:0": folded.snapshot_rows({})})  # fmt: skip
    assert again is not None
    assert (again.records, again.context, list(again.outbox)) == (
        {"r": ("true", 4)},
        {"c": "1"},
        ["m"],
    )
    assert folded.snapshot_rows({it.sent_key("m"): 1})[-1][0] == "c"


def test_rows_are_packed_into_parts_under_the_limit() -> None:
    rows: list[it.Row] = [["r", f"k{i}", "x" * 1000, 1] for i in range(2000)]
    parts = it.pack_rows(rows)
    assert len(parts) > 1
    assert all(it.rows_size(p) <= it.PART_BYTES for p in parts)
    assert [r for p in parts for r in p] == rows
    with pytest.raises(ValueError, match="Cosmos DB items hold 2 MB"):
        it.pack_rows([["c", "big", "x" * it.PART_BYTES, 1]])


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    assert it.decode_cursor(it.encode_cursor(12.5, "run/1")) == (12.5, "run/1")
    for foreign in ("", "abc", "fc1:!!", "fc1:" + "W10="):
        with pytest.raises(ValueError, match="not a cursor of this store"):
            it.decode_cursor(foreign)


def test_ids_and_hashes_are_safe_for_item_ids_and_predicates() -> None:
    for text in ("a/b", "it's", "x\\y?#"):
        assert it.attempt_id(text, text)[2:].isalnum()
        assert it.run_item_id(text)[2:].isalnum()
        assert it.owner_hash(text).isalnum()
        assert it.sent_key(text).isalnum()


def test_ids_are_unique_across_runs() -> None:
    """The local Cosmos server checks a patch's predicate by id alone, across partitions."""
    assert it.run_item_id("r1") != it.run_item_id("r2")
    assert it.attempt_id("r1", "a#1") != it.attempt_id("r2", "a#1")
    assert it.attempt_id("r1", "a#1") == it.attempt_id("r1", "a#1")


def test_a_small_text_is_kept_whole_and_a_large_one_becomes_chunks() -> None:
    blobs = it.Blobs()
    assert blobs.put('{"a":1}') == '{"a":1}'
    assert blobs.chunks == {}
    large = json.dumps({"k": 'é"' * 2_000_000})
    ref = blobs.put(large)
    assert ref.startswith("~z:")
    assert it.refs(ref) == sorted(blobs.chunks)
    assert all(len(d) <= it.CHUNK_CHARS and d.isascii() for d in blobs.chunks.values())
    assert it.resolve(ref, blobs.chunks) == large
    assert it.refs('"~z:not a ref"') == []
    assert it.refs("QUJD") == []


def test_the_size_limit_counts_escapes_and_utf8() -> None:
    assert it.stored_size('"' * 40_000) > it.VALUE_BYTES  # each quote escaped
    assert it.Blobs().put('"' * 40_000).startswith("~z:")
    assert it.Blobs().put("é" * 40_000).startswith("~z:")  # 2 bytes each in UTF-8


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.text())
def test_stored_size_is_the_size_of_the_string_as_json(text: str) -> None:
    expected = json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert it.stored_size(text) == len(expected)


@given(_JSON)
def test_dumps_is_compact_json_that_keeps_characters(value: object) -> None:
    assert it.dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_a_missing_chunk_is_reported_not_guessed() -> None:
    blobs = it.Blobs()
    ref = blobs.put("x" * 3_000_000)
    partial = dict(list(blobs.chunks.items())[:-1])
    with pytest.raises(it.MissingChunkError):
        it.resolve(ref, partial)
