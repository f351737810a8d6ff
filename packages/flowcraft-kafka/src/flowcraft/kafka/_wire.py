"""A consumed Kafka message as plain typed values (confluent-kafka's accessors return Optionals)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import Message

__all__ = ["Wire", "header", "unpack"]

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Wire:
    """What the adapter reads of a consumed message."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: Headers
    timestamp_ms: int

    @property
    def tp(self) -> tuple[str, int]:
        """Its partition."""
        return (self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        """The first value of header ``name``."""
        return header(self.headers, name)


def header(headers: Sequence[tuple[str, bytes]], name: str) -> bytes | None:
    """The first value of header ``name`` in ``headers``."""
    for key, value in headers:
        if key == name:
            return value
    return None


def unpack(message: Message) -> Wire:
    """The typed values of a consumed (error-free) message."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    headers = tuple((k, v.encode() if isinstance(v, str) else (v or b"")) for k, v in pairs)
    key, value = message.key(), message.value()
    return Wire(
        topic=message.topic() or "", partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=key.encode() if isinstance(key, str) else (key or b""),
        value=value.encode() if isinstance(value, str) else (value or b""),
        headers=headers, timestamp_ms=message.timestamp()[1],
    )  # fmt: skip
