"""How messages look on SQS: bodies, attributes, sizes, delays and batches. Pure: no I/O.

Wire format of one job message (SQS standard queue):

* ``MessageBody``: the body as UTF-8 text when it is valid UTF-8 made only of the characters
  SQS accepts (``#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF``); otherwise its
  base64 text with attribute ``flowcraft-encoding`` = ``base64``. SQS refuses an empty body:
  an empty one is sent as ``-`` with ``flowcraft-encoding`` = ``empty``. An offloaded body
  (see ``_offload``) is sent as its DynamoDB key.
* Message attributes: ``flowcraft-id`` (String: the message id), ``flowcraft-encoding``
  (String, see above), ``flowcraft-offload`` (String: the key of the offloaded chunks) and
  ``flowcraft-chunks`` (Number: how many), ``flowcraft-reason`` (String: why it was
  dead-lettered; dead-letter queue only). A message without ``flowcraft-id`` (sent by another
  tool) takes its SQS ``MessageId`` as id and its body as UTF-8 text.

Sizes are counted as SQS counts them: the body's UTF-8 bytes plus, per attribute, the bytes of
its name, its data type and its value. A message bigger than ``limit - SIZE_MARGIN`` is
offloaded; the margin leaves room for ``flowcraft-reason`` (at most ``REASON_BYTES``) when the
message is dead-lettered with the same attributes. A batch holds at most ``BATCH_ENTRIES``
entries whose sizes add up to at most the limit (SQS's total payload limit of a batch).

Delays: ``DelaySeconds`` is the delay rounded up (never early) and at most ``MAX_DELAY``;
visibility changes (``nack``, ``extend``) are rounded up to whole seconds, at most
``MAX_VISIBILITY``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "BATCH_ENTRIES",
    "CHUNKS",
    "ENCODING",
    "ID",
    "MAX_DELAY",
    "MAX_VISIBILITY",
    "OFFLOAD",
    "REASON",
    "REASON_BYTES",
    "SIZE_MARGIN",
    "Attributes",
    "Decoded",
    "Encoded",
    "attribute_size",
    "chunks",
    "clean_attributes",
    "decode",
    "delay_seconds",
    "encode",
    "encode_offloaded",
    "pack",
    "reason_attribute",
    "sqs_text",
    "string_attribute",
    "visibility_seconds",
]

ID = "flowcraft-id"
ENCODING = "flowcraft-encoding"
OFFLOAD = "flowcraft-offload"
CHUNKS = "flowcraft-chunks"
REASON = "flowcraft-reason"

#: Entries of one SendMessageBatch / DeleteMessageBatch / ChangeMessageVisibilityBatch.
BATCH_ENTRIES = 10
#: The longest DelaySeconds SQS takes (15 minutes).
MAX_DELAY = 900
#: The longest visibility timeout SQS takes (12 hours).
MAX_VISIBILITY = 43_200
#: Bytes kept free below the size limit (the dead-letter reason, rounding).
SIZE_MARGIN = 8_192
#: A dead-letter reason is cut to this many UTF-8 bytes.
REASON_BYTES = 4_096

_BASE64 = "base64"
_EMPTY = "empty"
_EMPTY_BODY = "-"
#: Characters SQS refuses in a body or a String attribute.
_REFUSED = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_T = TypeVar("_T")
Attributes = dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Encoded:
    """A message as sent: its ``MessageBody``, its message attributes and their SQS size."""

    body: str
    attributes: Attributes
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Decoded:
    """A received message's id and body, or where its body was offloaded to.

    ``problem`` says why the body could not be decoded (then ``body`` is the raw text's
    UTF-8 bytes: the worker dead-letters it as undecodable).
    """

    message_id: str
    body: bytes
    offload: tuple[str, int] | None = None
    problem: str | None = None


def string_attribute(value: str) -> dict[str, Any]:
    """A String message attribute."""
    return {"DataType": "String", "StringValue": value}


def sqs_text(text: str) -> bool:
    """Whether SQS accepts ``text`` as a body or a String attribute value."""
    return _REFUSED.search(text) is None


def _text_of(body: bytes) -> str | None:
    """``body`` as text SQS accepts as it is, or None."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if sqs_text(text) else None


def attribute_size(attributes: Mapping[str, Mapping[str, Any]]) -> int:
    """The bytes SQS counts for ``attributes`` (name + data type + value, each)."""
    total = 0
    for name, attribute in attributes.items():
        value = attribute.get("StringValue", attribute.get("BinaryValue", b""))
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        total += len(name.encode()) + len(str(attribute["DataType"]).encode()) + len(raw)
    return total


def _encoded(body: str, attributes: Attributes) -> Encoded:
    size = len(body.encode("utf-8")) + attribute_size(attributes)
    return Encoded(body=body, attributes=attributes, size=size)


def encode(message_id: str, body: bytes) -> Encoded:
    """The wire form of a message kept in SQS (the caller offloads it if too big).

    Raises:
        ValueError: ``message_id`` is empty or has characters SQS refuses.
    """
    if not message_id or not sqs_text(message_id):
        raise ValueError(f"message id {message_id!r}: empty, or characters SQS refuses")
    attributes: Attributes = {ID: string_attribute(message_id)}
    if not body:
        return _encoded(_EMPTY_BODY, {**attributes, ENCODING: string_attribute(_EMPTY)})
    text = _text_of(body)
    if text is not None:
        return _encoded(text, attributes)
    encoded = base64.b64encode(body).decode("ascii")
    return _encoded(encoded, {**attributes, ENCODING: string_attribute(_BASE64)})


def encode_offloaded(message_id: str, key: str, count: int) -> Encoded:
    """The wire form of a message whose body lives in ``count`` items under ``key``."""
    attributes: Attributes = {
        ID: string_attribute(message_id),
        OFFLOAD: string_attribute(key),
        CHUNKS: {"DataType": "Number", "StringValue": str(count)},
    }
    return _encoded(key, attributes)


def _string(attributes: Mapping[str, Mapping[str, Any]], name: str) -> str | None:
    value = attributes.get(name, {}).get("StringValue")
    return value if isinstance(value, str) else None


def decode(message: Mapping[str, Any]) -> Decoded:
    """Id and body of a received SQS message (``offload`` set: the body is to be fetched).

    A body that does not decode as its ``flowcraft-encoding`` says (a message not written by
    this adapter, or damaged) comes back as its raw text, with the ``problem``.
    """
    attributes = message.get("MessageAttributes") or {}
    message_id = _string(attributes, ID) or str(message.get("MessageId", ""))
    text = str(message.get("Body", ""))
    key, count = _string(attributes, OFFLOAD), _string(attributes, CHUNKS)
    try:
        if key is not None:
            if count is None or not count.isdigit() or int(count) < 1:
                raise ValueError(f"offloaded, but {CHUNKS} is {count!r}")
            return Decoded(message_id=message_id, body=b"", offload=(key, int(count)))
        return Decoded(message_id=message_id, body=_body(_string(attributes, ENCODING), text))
    except ValueError as exc:
        return Decoded(message_id=message_id, body=text.encode("utf-8"), problem=str(exc))


def _body(encoding: str | None, text: str) -> bytes:
    if encoding is None:
        return text.encode("utf-8")
    if encoding == _EMPTY:
        return b""
    if encoding == _BASE64:
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"body is not base64: {exc}") from exc
    raise ValueError(f"unknown {ENCODING} {encoding!r}")


def reason_attribute(reason: str) -> dict[str, Any]:
    """``reason`` as a String attribute: characters SQS refuses replaced, cut to its limit."""
    cleaned = _REFUSED.sub("\ufffd", reason) or "-"
    raw = cleaned.encode("utf-8")
    if len(raw) > REASON_BYTES:
        cleaned = raw[: REASON_BYTES - 3].decode("utf-8", errors="ignore") + "..."
    return string_attribute(cleaned)


def clean_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> Attributes:
    """Received message attributes in the form ``SendMessage`` takes them back."""
    kept = ("DataType", "StringValue", "BinaryValue")
    return {
        name: {key: value for key, value in attribute.items() if key in kept}
        for name, attribute in attributes.items()
    }


def _whole_seconds(seconds: float, limit: int, what: str) -> int:
    if math.isnan(seconds):
        raise ValueError(f"{what} must be a number, got {seconds}")
    if seconds >= limit:
        return limit
    return max(0, math.ceil(seconds))


def delay_seconds(delay: float, max_delay: float = MAX_DELAY) -> int:
    """``DelaySeconds`` for ``delay``: rounded up, never early.

    Raises:
        ValueError: ``delay`` is above ``max_delay`` (the runtime chains longer ones) or NaN.
    """
    if delay > max_delay:
        raise ValueError(f"delay {delay} s is above the queue's max_delay of {max_delay} s")
    return _whole_seconds(delay, MAX_DELAY, "delay")


def visibility_seconds(seconds: float) -> int:
    """A visibility timeout for ``seconds``: rounded up, within 0..``MAX_VISIBILITY``."""
    return _whole_seconds(seconds, MAX_VISIBILITY, "visibility timeout")


def pack(
    items: Iterable[_T], *, size: Callable[[_T], int], limit: int, entries: int = BATCH_ENTRIES
) -> list[list[_T]]:
    """``items`` in order, cut into batches of at most ``entries`` and ``limit`` total size.

    An item bigger than ``limit`` on its own gets a batch of its own (SQS then refuses it,
    for its caller only).
    """
    batches: list[list[_T]] = []
    current: list[_T] = []
    total = 0
    for item in items:
        weight = size(item)
        if current and (len(current) >= entries or total + weight > limit):
            batches.append(current)
            current, total = [], 0
        current.append(item)
        total += weight
    if current:
        batches.append(current)
    return batches


def chunks(data: bytes, chunk_bytes: int) -> Sequence[bytes]:
    """``data`` cut into pieces of at most ``chunk_bytes`` (at least one piece)."""
    return [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]
