"""The pure item layout of the DynamoDB run store: journals, large values, keys, cursors."""

from __future__ import annotations

import hashlib
import random

import pytest
from flowcraft.core import ports
from flowcraft.sqs import _items as it
from hypothesis import given
from hypothesis import strategies as st

_values = st.one_of(
    st.none(),
    st.binary(max_size=200),
    st.builds(lambda sha, n: it.Ref(sha=sha, chunks=n), st.text("0123456789abcdef", min_size=64,
              max_size=64), st.integers(1, 20)),
)  # fmt: skip
_entries = st.lists(
    st.builds(it.Entry, st.sampled_from("rco"), st.text(max_size=40), _values),
    max_size=60,
)  # fmt: skip


@given(_entries)
def test_a_journal_gives_back_its_entries_in_order(entries: list[it.Entry]) -> None:
    payloads = it.pack_journal(entries)
    assert it.unpack_journal(payloads) == entries


_messages = st.lists(
    st.builds(ports.Message, id=st.text(max_size=30), body=st.binary(max_size=100)), max_size=20
)


@given(_messages)
def test_an_outbox_item_gives_back_its_messages_in_order(messages: list[ports.Message]) -> None:
    assert it.unpack_outbox(it.pack_outbox(messages)) == messages


def test_a_corrupt_outbox_item_is_an_error_not_wrong_messages() -> None:
    packed = it.pack_outbox([ports.Message(id="m1", body=b"one"), ports.Message(id="m2", body=b"")])
    for broken in (packed[:-1], packed + b"x", b"\0\0\0\5nope!", b""):
        with pytest.raises(ValueError, match="outbox item is corrupt"):
            it.unpack_outbox(broken)


def test_outbox_items_sort_by_the_version_that_wrote_them() -> None:
    keys = [it.outbox_key(it.outbox_entry(v)) for v in (2, 10, 9, 100_000)]
    assert sorted(keys) == [it.outbox_key(it.outbox_entry(v)) for v in (2, 9, 10, 100_000)]
    assert all(it.HEADER < k < it.STATE_END for k in keys)


def test_a_journal_of_twenty_thousand_records_fits_in_a_few_items() -> None:
    entries = [
        it.Entry("r", f'["n","",{i}]', it.dumps({"status": "running", "input": {"i": i}}))
        for i in range(20_000)
    ]  # fmt: skip
    payloads = it.pack_journal(entries)
    assert len(payloads) <= 4
    assert all(len(p) <= it.CHUNK for p in payloads)
    assert it.unpack_journal(payloads) == entries


def test_incompressible_journals_are_split_under_the_item_limit() -> None:
    noise = [it.Entry("c", str(i), random.Random(i).randbytes(9_000)) for i in range(60)]
    payloads = it.pack_journal(noise)
    assert len(payloads) > 1
    assert all(len(p) <= it.CHUNK for p in payloads)
    assert it.unpack_journal(payloads) == noise


def test_small_values_stay_inline_and_large_ones_become_chunks() -> None:
    blobs = it.Blobs()
    assert blobs.store(b"x" * it.INLINE) == b"x" * it.INLINE
    assert blobs.chunks == {}
    big = bytes(range(256)) * 8_000  # 2 MB, barely compressible
    ref = blobs.store(big)
    assert isinstance(ref, it.Ref)
    assert ref.sha == hashlib.sha256(big).hexdigest()
    assert ref.chunks == len(blobs.chunks) >= 1
    assert all(len(chunk) <= it.CHUNK for chunk in blobs.chunks.values())
    assert it.assemble(ref, blobs.chunks) == big
    assert it.stored_value(it.stored_attributes("d", ref), "d") == ref
    assert it.stored_value({"d": {"B": b"v"}}, "d") == b"v"
    assert it.stored_value({}, "d") is None


def test_a_missing_or_corrupt_chunk_is_an_error_not_a_wrong_value() -> None:
    blobs = it.Blobs()
    ref = blobs.store(b"y" * 100_000)
    assert isinstance(ref, it.Ref)
    with pytest.raises(ValueError, match="missing or corrupt"):
        it.assemble(ref, {})
    other = it.Blobs()
    other_ref = other.store(b"z" * 100_000)
    assert isinstance(other_ref, it.Ref)
    swapped = dict(zip(it.chunk_keys(ref), other.chunks.values(), strict=True))
    with pytest.raises(ValueError, match="does not match"):
        it.assemble(ref, swapped)


def test_created_keys_sort_newest_first_then_by_id() -> None:
    keys = [
        it.created_key(t, r) for t, r in ((5000.0, "a"), (5000.0, "c"), (999.5, "z"), (1e9, "b"))
    ]
    assert sorted(keys, reverse=True) == [keys[3], keys[1], keys[0], keys[2]]


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    key = it.created_key(1234.5, "run-1")
    assert it.decode_cursor(it.encode_cursor(key)) == key
    for bad in ("not-a-cursor", "", it.encode_cursor("12#x")):
        with pytest.raises(ValueError, match="cursor"):
            it.decode_cursor(bad)


def test_a_status_item_round_trips_a_run_record() -> None:
    record = ports.RunRecord(
        run_id="r1", blueprint_id="bp", blueprint_version="2", blueprint_digest="d",
        status="running", input={"x": [1]}, output=None, errors=({"m": "e"},),
        parent=("p", "n", "f", 3), idempotency_key="k", created_at=1e9 + 0.25, updated_at=1e9 + 1,
    )  # fmt: skip
    blobs = it.Blobs()
    item = it.status_item(record, blobs)
    assert item["active"] == {"S": "running"}
    values = {n: it.stored_value(item, n) for n in ("input", "output", "errors")}
    plain = {n: v for n, v in values.items() if isinstance(v, bytes)}
    assert it.run_record(item, plain) == record
    finished = ports.RunRecord(
        run_id="r2",
        blueprint_id="b",
        blueprint_version="1",
        blueprint_digest="d",
        status="completed",
    )
    done = it.status_item(finished, blobs)
    assert "active" not in done
