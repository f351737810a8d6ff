"""Azure Queue Storage: message envelopes, sizes and delays. Pure: no I/O.

Wire format of one job message: the message text is an ASCII JSON envelope (so it is valid in
the service's XML payload whatever the body holds, and no SDK encode policy is involved: the
clients are built with none, and base64 is done here, explicitly)::

    {"fc": 1, "id": "<message id>", "b": "<base64 of the body>"}
    {"fc": 1, "id": "<message id>", "ref": "<offload key>", "n": <chunks>}   (large bodies)

A dead letter (poison queue) is the same envelope plus ``"reason"``. A message that is not
such an envelope (another producer) keeps Azure's message id as its id and its text as body,
with a ``problem`` for the worker to dead-letter it.

Sizes: Azure takes at most 64 KiB of message text. An envelope bigger than
``MAX_TEXT - SIZE_MARGIN`` is offloaded (the margin leaves room for a reason of at most
``REASON_CHARS`` characters, JSON-escaped, when the message is dead-lettered).

Delays and visibility timeouts are whole seconds rounded up (never early), at most 7 days
(``MAX_DELAY``, the service's cap for both).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass

__all__ = [
    "MAX_DELAY",
    "MAX_TEXT",
    "REASON_CHARS",
    "SIZE_MARGIN",
    "Decoded",
    "dead_text",
    "decode",
    "encode",
    "encode_offloaded",
    "seconds_up",
]

#: The longest visibility timeout (and so delay) Azure Queue Storage takes: 7 days.
MAX_DELAY = 604_800
#: The most text one message may carry.
MAX_TEXT = 65_536
#: Bytes kept free below ``MAX_TEXT`` (a dead-letter reason).
SIZE_MARGIN = 8_192
#: A dead-letter reason is cut to this many characters (at most 6 bytes each, escaped).
REASON_CHARS = 1_000
_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Decoded:
    """A received message's id and body, or where its body was offloaded to.

    ``problem`` says why it could not be decoded (then ``body`` is its raw text's bytes).
    """

    message_id: str
    body: bytes
    offload: tuple[str, int] | None = None
    problem: str | None = None
    reason: str | None = None


def _dump(envelope: dict[str, object]) -> str:
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=True)


def encode(message_id: str, body: bytes) -> str:
    """The envelope of a message kept in the queue (the caller offloads it if too big).

    Raises:
        ValueError: ``message_id`` is empty.
    """
    if not message_id:
        raise ValueError("message id must not be empty")
    return _dump({"fc": _VERSION, "id": message_id, "b": base64.b64encode(body).decode("ascii")})


def encode_offloaded(message_id: str, key: str, count: int) -> str:
    """The envelope of a message whose body lives in ``count`` items under ``key``."""
    return _dump({"fc": _VERSION, "id": message_id, "ref": key, "n": count})


def dead_text(text: str, message_id: str, reason: str) -> str:
    """The poison-queue text of a message received as ``text``: its envelope plus ``reason``."""
    cut = reason[:REASON_CHARS] + ("..." if len(reason) > REASON_CHARS else "")
    try:
        envelope = json.loads(text)
    except ValueError:
        envelope = None
    if not (isinstance(envelope, dict) and envelope.get("fc") == _VERSION):
        envelope = {"fc": _VERSION, "id": message_id,
                    "b": base64.b64encode(text.encode("utf-8")).decode("ascii")}  # fmt: skip
    return _dump({**envelope, "id": message_id, "reason": cut})


def decode(text: str, azure_id: str) -> Decoded:
    """Id and body of a received message (``offload`` set: the body is to be fetched)."""
    raw = text.encode("utf-8", errors="surrogatepass")
    try:
        envelope = json.loads(text)
    except ValueError:
        envelope = None
    if not (isinstance(envelope, dict) and envelope.get("fc") == _VERSION):
        return Decoded(message_id=azure_id, body=raw, problem="not a flowcraft message envelope")
    message_id = envelope.get("id")
    reason = envelope.get("reason")
    if not isinstance(message_id, str) or not message_id:
        return Decoded(message_id=azure_id, body=raw, problem="envelope without an id")
    reason = reason if isinstance(reason, str) else None
    if "ref" in envelope:
        key, count = envelope.get("ref"), envelope.get("n")
        if not isinstance(key, str) or not isinstance(count, int) or count < 1:
            return Decoded(message_id=message_id, body=raw, problem="bad offload reference")
        return Decoded(message_id=message_id, body=b"", offload=(key, count), reason=reason)
    try:
        body = base64.b64decode(str(envelope.get("b", "")), validate=True)
    except (binascii.Error, ValueError) as exc:
        return Decoded(message_id=message_id, body=raw, problem=f"body is not base64: {exc}")
    return Decoded(message_id=message_id, body=body, reason=reason)


def seconds_up(seconds: float, what: str, *, limit: int = MAX_DELAY) -> int:
    """``seconds`` as whole seconds rounded up (never early), within ``0..limit``.

    Raises:
        ValueError: NaN, or above ``limit`` (the runtime chains longer delays).
    """
    if math.isnan(seconds):
        raise ValueError(f"{what} must be a number, got {seconds}")
    if seconds > limit:
        raise ValueError(f"{what} {seconds} s is above Azure Queue Storage's cap of {limit} s")
    return max(0, math.ceil(seconds))
