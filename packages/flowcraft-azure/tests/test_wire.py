"""The queue's envelopes, sizes and delays (``_wire``, pure)."""

from __future__ import annotations

import json

import pytest
from flowcraft.azure._wire import MAX_DELAY, dead_text, decode, encode, encode_offloaded, seconds_up


@pytest.mark.parametrize("body", [b"", b"plain json {}", bytes(range(256)), "é\u2028".encode()])
def test_bodies_round_trip_through_an_ascii_envelope(body: bytes) -> None:
    text = encode("m-1", body)
    assert text.isascii()
    decoded = decode(text, "azure-id")
    assert (decoded.message_id, decoded.body, decoded.problem) == ("m-1", body, None)


def test_awkward_ids_survive() -> None:
    decoded = decode(encode("a<b>&\x01\u00e9", b"x"), "azure-id")
    assert decoded.message_id == "a<b>&\x01\u00e9"


def test_an_empty_id_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        encode("", b"x")


def test_an_offloaded_envelope_names_its_chunks() -> None:
    decoded = decode(encode_offloaded("m", "body:k", 3), "azure-id")
    assert (decoded.offload, decoded.body) == (("body:k", 3), b"")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("hello", "not a flowcraft message envelope"),
        ('{"fc": 1, "b": "aGk="}', "envelope without an id"),
        ('{"fc": 1, "id": "m", "b": "**"}', "body is not base64"),
        ('{"fc": 1, "id": "m", "ref": 5, "n": 1}', "bad offload reference"),
    ],
)
def test_foreign_or_damaged_messages_keep_their_text_and_say_why(text: str, problem: str) -> None:
    decoded = decode(text, "azure-id")
    assert decoded.problem is not None
    assert decoded.problem.startswith(problem)
    assert decoded.body == text.encode()


def test_a_dead_letter_carries_the_reason_cut_to_size() -> None:
    text = dead_text(encode("m", b"body"), "m", "x" * 5000)
    decoded = decode(text, "azure-id")
    assert decoded.body == b"body"
    assert decoded.reason is not None
    assert len(decoded.reason) == 1003


def test_a_foreign_message_dead_lettered_keeps_its_text_and_the_id_the_worker_saw() -> None:
    decoded = decode(dead_text("not json", "azure-7", "undecodable"), "other")
    assert (decoded.message_id, decoded.body, decoded.reason) == (
        "azure-7",
        b"not json",
        "undecodable",
    )
    assert json.loads(dead_text("not json", "azure-7", "r"))["fc"] == 1


def test_delays_round_up_and_stop_at_seven_days() -> None:
    assert [seconds_up(s, "delay") for s in (0, 0.01, 1.0, 1.2)] == [0, 1, 1, 2]
    assert seconds_up(MAX_DELAY, "delay") == MAX_DELAY
    with pytest.raises(ValueError, match="cap"):
        seconds_up(MAX_DELAY + 1, "delay")
    with pytest.raises(ValueError, match="number"):
        seconds_up(float("nan"), "delay")
