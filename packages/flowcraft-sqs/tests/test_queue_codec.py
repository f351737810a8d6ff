"""The SQS queue's pure parts: wire encoding, sizes, delays, batch packing, the batcher, settling.

No network: the batcher and the delivery run against fakes.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from typing import Any

import pytest
from flowcraft.core.aio import TurnBatch
from flowcraft.core.errors import PermanentBackendError, TransientBackendError
from flowcraft.sqs._batch import Errors, batcher, entry_errors, stale
from flowcraft.sqs._codec import (
    CHUNKS,
    ENCODING,
    ID,
    MAX_VISIBILITY,
    OFFLOAD,
    REASON_BYTES,
    attribute_size,
    chunks,
    clean_attributes,
    decode,
    delay_seconds,
    encode,
    encode_offloaded,
    pack,
    reason_attribute,
    sqs_text,
    visibility_seconds,
)
from flowcraft.sqs._delivery import SqsDelivery
from flowcraft.sqs._queue import _visibility_left
from hypothesis import given
from hypothesis import strategies as st


def _received(encoded_body: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """A ReceiveMessage entry as boto3 returns it."""
    return {"MessageId": "sqs-id", "Body": encoded_body, "MessageAttributes": attributes}


def _round_trip(body: bytes) -> bytes:
    encoded = encode("m-1", body)
    decoded = decode(_received(encoded.body, encoded.attributes))
    assert decoded.problem is None
    assert decoded.message_id == "m-1"
    return decoded.body


# ------------------------------------------------------------------ encoding choice


def test_text_bodies_travel_as_text() -> None:
    body = "héllo\t\n\r ✓ 😀 \ud7ff\ue000\ufffd\U0010ffff".encode()
    encoded = encode("m-1", body)
    assert encoded.body == body.decode()
    assert ENCODING not in encoded.attributes
    assert encoded.attributes[ID] == {"DataType": "String", "StringValue": "m-1"}
    assert _round_trip(body) == body


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe not utf-8",
        b"\x00 nul",
        b"bell \x07",
        b"\x1f unit separator",
        "\ufffe non-character".encode(),
        "\uffff non-character".encode(),
        bytes(range(256)),
    ],
)
def test_bodies_sqs_refuses_as_text_travel_as_base64(body: bytes) -> None:
    encoded = encode("m-1", body)
    assert encoded.attributes[ENCODING]["StringValue"] == "base64"
    assert base64.b64decode(encoded.body) == body
    assert _round_trip(body) == body


def test_an_empty_body_is_sent_as_a_placeholder() -> None:
    encoded = encode("m-1", b"")
    assert encoded.body  # SQS refuses empty bodies
    assert encoded.attributes[ENCODING]["StringValue"] == "empty"
    assert _round_trip(b"") == b""


@given(st.binary(max_size=300))
def test_every_body_round_trips(body: bytes) -> None:
    encoded = encode("m-1", body)
    assert encoded.body
    assert sqs_text(encoded.body)
    assert _round_trip(body) == body


@given(st.text(max_size=100))
def test_text_sqs_accepts_stays_text(text: str) -> None:
    body = text.encode("utf-8", errors="surrogatepass")
    encoded = encode("m-1", body)
    as_text = ENCODING not in encoded.attributes
    assert as_text == (bool(text) and sqs_text(text) and not _has_surrogates(text))


def _has_surrogates(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@pytest.mark.parametrize("message_id", ["", "nul\x00", "\ufffe"])
def test_ids_sqs_cannot_carry_are_refused(message_id: str) -> None:
    with pytest.raises(ValueError, match="message id"):
        encode(message_id, b"x")


def test_a_foreign_message_keeps_its_sqs_id_and_text() -> None:
    decoded = decode({"MessageId": "sqs-id", "Body": "plain"})
    assert (decoded.message_id, decoded.body, decoded.problem) == ("sqs-id", b"plain", None)


@pytest.mark.parametrize(
    ("encoding", "text", "problem"),
    [("base64", "not base64!", "not base64"), ("rot13", "uryyb", "unknown")],
)
def test_an_undecodable_body_comes_raw_with_its_problem(
    encoding: str, text: str, problem: str
) -> None:
    attributes = {ID: {"DataType": "String", "StringValue": "m-1"}}
    attributes[ENCODING] = {"DataType": "String", "StringValue": encoding}
    decoded = decode(_received(text, attributes))
    assert decoded.body == text.encode()
    assert decoded.problem is not None
    assert problem in decoded.problem


def test_an_offloaded_message_carries_its_key_and_chunk_count() -> None:
    encoded = encode_offloaded("m-1", "body#m-1#u", 3)
    assert encoded.attributes[OFFLOAD]["StringValue"] == "body#m-1#u"
    assert encoded.attributes[CHUNKS] == {"DataType": "Number", "StringValue": "3"}
    decoded = decode(_received(encoded.body, encoded.attributes))
    assert (decoded.message_id, decoded.offload) == ("m-1", ("body#m-1#u", 3))
    broken = {**encoded.attributes, CHUNKS: {"DataType": "Number", "StringValue": "0"}}
    assert decode(_received(encoded.body, broken)).problem is not None


# ------------------------------------------------------------------ sizes


def test_sizes_count_body_and_attribute_names_types_and_values() -> None:
    encoded = encode("m-1", "é".encode())
    id_size = len(ID) + len("String") + len("m-1")
    assert attribute_size(encoded.attributes) == id_size
    assert encoded.size == 2 + id_size  # "é" is two UTF-8 bytes
    binary = {"b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}}
    assert attribute_size(binary) == 1 + 6 + 2


def test_base64_grows_a_binary_body_by_a_third() -> None:
    assert encode("m", b"\xff" * 3000).size > 4000


def test_reasons_are_cut_and_cleaned() -> None:
    long = reason_attribute("é" * REASON_BYTES)["StringValue"]
    assert len(long.encode()) <= REASON_BYTES
    assert long.endswith("...")
    assert reason_attribute("bad \x00 byte")["StringValue"] == "bad \ufffd byte"
    assert reason_attribute("")["StringValue"]  # never an empty attribute


def test_received_attributes_are_cleaned_for_sending_again() -> None:
    received: dict[str, dict[str, Any]] = {
        ID: {"StringValue": "m", "DataType": "String", "StringListValues": [], "Other": 1},
        "b": {"BinaryValue": b"x", "DataType": "Binary", "BinaryListValues": []},
    }
    assert clean_attributes(received) == {
        ID: {"StringValue": "m", "DataType": "String"},
        "b": {"BinaryValue": b"x", "DataType": "Binary"},
    }


def test_chunks_cut_bodies_and_join_back() -> None:
    body = bytes(1_000_000)
    pieces = chunks(body, 350_000)
    assert [len(p) for p in pieces] == [350_000, 350_000, 300_000]
    assert b"".join(pieces) == body


# ------------------------------------------------------------------ delays


@pytest.mark.parametrize(
    ("delay", "seconds"),
    [(0.0, 0), (-3.0, 0), (0.001, 1), (1.0, 1), (1.2, 2), (899.5, 900), (900.0, 900)],
)
def test_delays_round_up_to_whole_seconds(delay: float, seconds: int) -> None:
    assert delay_seconds(delay) == seconds


@given(st.floats(min_value=0.0, max_value=900.0))
def test_a_delay_is_never_early_and_less_than_a_second_late(delay: float) -> None:
    assert delay <= delay_seconds(delay) <= delay + 1


@pytest.mark.parametrize("delay", [900.01, 1e9, math.inf, math.nan])
def test_delays_above_the_maximum_are_refused(delay: float) -> None:
    with pytest.raises(ValueError, match="delay"):
        delay_seconds(delay)


@pytest.mark.parametrize(
    ("seconds", "visibility"),
    [
        (0.0, 0),
        (-1.0, 0),
        (0.2, 1),
        (30.0, 30),
        (43_199.5, 43_200),
        (1e9, 43_200),
        (math.inf, 43_200),
    ],
)
def test_visibility_rounds_up_and_is_capped(seconds: float, visibility: int) -> None:
    assert visibility_seconds(seconds) == visibility
    assert visibility <= MAX_VISIBILITY


# ------------------------------------------------------------------ packing


def test_twenty_five_entries_make_three_batches() -> None:
    batches = pack(range(25), size=lambda _: 1, limit=262_144)
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [x for b in batches for x in b] == list(range(25))


def test_batches_stay_under_the_size_limit() -> None:
    sizes = [100_000, 100_000, 100_000, 50_000, 10_000, 300_000, 1]
    batches = pack(sizes, size=lambda s: s, limit=262_144)
    assert batches == [[100_000, 100_000], [100_000, 50_000, 10_000], [300_000], [1]]


@given(st.lists(st.integers(min_value=0, max_value=300), max_size=60))
def test_packing_keeps_order_and_limits(sizes: list[int]) -> None:
    batches = pack(sizes, size=lambda s: s, limit=256)
    assert [x for b in batches for x in b] == sizes
    for batch in batches:
        assert 1 <= len(batch) <= 10
        assert sum(batch) <= 256 or len(batch) == 1


# ------------------------------------------------------------------ batch answers


def test_entry_errors_split_sender_faults_from_the_rest() -> None:
    answer = {
        "Successful": [{"Id": "0"}],
        "Failed": [
            {"Id": "1", "SenderFault": True, "Code": "InvalidMessageContents", "Message": "no"},
            {"Id": "2", "SenderFault": False, "Code": "InternalError", "Message": "oops"},
            {"Id": "3", "SenderFault": True, "Code": "ReceiptHandleIsInvalid", "Message": "x"},
        ],
    }
    errors = entry_errors(answer, 5, "op", stale_ok=True)
    assert errors[0] is None
    assert errors[3] is None
    assert isinstance(errors[1], PermanentBackendError)
    assert isinstance(errors[2], TransientBackendError)
    assert isinstance(errors[4], TransientBackendError)  # no answer at all
    assert isinstance(entry_errors(answer, 4, "op", stale_ok=False)[3], PermanentBackendError)


def test_stale_receipt_handles_are_recognised() -> None:
    assert stale("ReceiptHandleIsInvalid", "")
    assert stale("AWS.SimpleQueueService.MessageNotInflight", "")
    assert stale("InvalidParameterValue", "Reason: The receipt handle has expired.")
    assert not stale("InvalidParameterValue", "DelaySeconds must be >= 0")


# ------------------------------------------------------------------ the batcher


class _FakeSqs:
    """Records batches; fails the entries and batches it is told to."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.bad_entries: set[str] = set()
        self.down = False
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, entries: list[str]) -> Errors:
        self.batches.append(entries)
        await asyncio.sleep(0)
        if self.down:
            raise TransientBackendError("down")
        return [PermanentBackendError(e) if e in self.bad_entries else None for e in entries]

    def spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def batcher(self, limit: int = 1_000) -> TurnBatch[str, None]:
        return batcher(self.send, size=len, limit=limit, spawn=self.spawn)


async def test_submits_of_one_turn_share_batches() -> None:
    fake = _FakeSqs()
    batcher = fake.batcher()
    await asyncio.gather(*(batcher.submit(f"e{i}") for i in range(25)))
    assert [len(b) for b in fake.batches] == [10, 10, 5]
    await batcher.submit("later")
    assert fake.batches[-1] == ["later"]


async def test_batches_respect_the_size_limit() -> None:
    fake = _FakeSqs()
    batcher = fake.batcher(limit=10)
    await asyncio.gather(*(batcher.submit(entry) for entry in ["aaaa", "bbbb", "cccc", "d"]))
    assert fake.batches == [["aaaa", "bbbb"], ["cccc", "d"]]


async def test_a_failed_entry_fails_its_caller_only() -> None:
    fake = _FakeSqs()
    fake.bad_entries = {"e3"}
    batcher = fake.batcher()
    results = await asyncio.gather(
        *(batcher.submit(f"e{i}") for i in range(5)), return_exceptions=True
    )
    assert [type(r).__name__ for r in results] == ["NoneType"] * 3 + [
        "PermanentBackendError",
        "NoneType",
    ]


async def test_a_failed_request_fails_each_of_its_callers() -> None:
    fake = _FakeSqs()
    fake.down = True
    batcher = fake.batcher()
    results = await asyncio.gather(
        *(batcher.submit(f"e{i}") for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, TransientBackendError) for r in results)


async def test_a_cancelled_caller_does_not_break_the_batch() -> None:
    fake = _FakeSqs()
    batcher = fake.batcher()
    first = asyncio.ensure_future(batcher.submit("a"))
    second = asyncio.ensure_future(batcher.submit("b"))
    await asyncio.sleep(0)
    first.cancel()
    await second
    assert fake.batches == [["a", "b"]]  # sent anyway: at least once


# ------------------------------------------------------------------ settling once


class _FakeSettler:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail_next = False

    async def _call(self, what: str) -> None:
        if self.fail_next:
            self.fail_next = False
            raise TransientBackendError(what)
        self.calls.append(what)

    async def settle_ack(self, delivery: SqsDelivery) -> None:
        await self._call("delete")

    async def settle_visibility(self, delivery: SqsDelivery, seconds: float, *, nack: bool) -> None:
        await self._call(f"{'nack' if nack else 'extend'} {seconds}")

    async def settle_dead(self, delivery: SqsDelivery, reason: str) -> None:
        await self._call(f"dead {reason}")

    def forget(self, delivery: SqsDelivery) -> None:
        self.calls.append("forget")


def _delivery(settler: _FakeSettler) -> SqsDelivery:
    return SqsDelivery(
        message_id="m-1",
        body=b"x",
        delivery_count=2,
        receipt_handle="rh",
        received_at=0.0,
        wire_body="x",
        wire_attributes={},
        settler=settler,
    )


async def test_a_delivery_settles_once() -> None:
    settler = _FakeSettler()
    delivery = _delivery(settler)
    await delivery.extend(5.0)
    await delivery.ack()
    await delivery.nack(1.0)
    await delivery.dead_letter("late")
    await delivery.extend(5.0)
    assert settler.calls == ["extend 5.0", "delete", "forget"]
    assert delivery.settled


def test_visibility_stays_within_twelve_hours_of_the_receive() -> None:
    delivery = _delivery(_FakeSettler())
    delivery.received_at = time.monotonic() - (MAX_VISIBILITY - 100)
    assert _visibility_left(delivery, 30.0) == 30
    assert 98 <= _visibility_left(delivery, 1e9) <= 100
    delivery.received_at = time.monotonic() - 2 * MAX_VISIBILITY
    assert _visibility_left(delivery, 30.0) == 0


async def test_a_failed_settlement_can_be_tried_again() -> None:
    settler = _FakeSettler()
    delivery = _delivery(settler)
    settler.fail_next = True
    with pytest.raises(TransientBackendError):
        await delivery.dead_letter("poison")
    assert not delivery.settled
    await delivery.dead_letter("poison")
    assert settler.calls == ["dead poison", "forget"]
