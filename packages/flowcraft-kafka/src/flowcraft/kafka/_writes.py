"""What a save writes into the run's partition, as plain operations: pure, no I/O.

A save becomes a list of :data:`Op` (a record, a context key or its deletion, an outbox
message, a sent message's removal; the leases a save carries live in a table of their own and
are written after it). Small saves put their operations into the one conditional batch; a
save whose operations exceed :data:`BATCH_BUDGET` bytes (a 10,000-wide fan-out: about 20,000
records) is packed into journal chunks of about :data:`CHUNK_BYTES` each (:func:`chunks`),
written before the conditional batch that points the run at them, then applied (Cassandra's
batch limit is 50 KiB by default).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from flowcraft.core.ports import DELETE, Message
from flowcraft.kafka._codec import dumps

__all__ = ["BATCH_BUDGET", "CHUNK_BYTES", "Op", "chunks", "ops_from_chunk", "ops_of", "size"]

#: Above this many bytes of operations, a save goes through the journal.
BATCH_BUDGET = 30_000
#: The size of one journal chunk (one row, one write).
CHUNK_BYTES = 30_000

Op = tuple[Any, ...]  # ("r", key, json) ("c", key, json|None) ("o", id, body, order) ("s", id)


def ops_of(
    *, version: int, records: Mapping[str, object], context_writes: Mapping[str, object],
    outbox: Sequence[Message], sent: Sequence[str],
) -> list[Op]:  # fmt: skip
    """The operations of a save that makes ``version``."""
    ops: list[Op] = [("r", key, dumps(value)) for key, value in records.items()]
    for key, value in context_writes.items():
        ops.append(("c", key, None if value == DELETE else dumps(value)))
    ops.extend(("s", message_id) for message_id in sent)
    for index, message in enumerate(outbox):
        ops.append(("o", message.id, message.body, version * 1_000_000 + index))
    return ops


def size(op: Op) -> int:
    """About how many bytes ``op`` writes."""
    return 40 + sum(len(part) for part in op[1:] if isinstance(part, str | bytes))


def chunks(ops: Sequence[Op]) -> Iterator[str]:
    """``ops`` packed into JSON chunks of about :data:`CHUNK_BYTES` (bodies base64)."""
    packed: list[list[Any]] = []
    used = 0
    for op in ops:
        row = [base64.b64encode(p).decode() if isinstance(p, bytes) else p for p in op]
        if packed and used + size(op) > CHUNK_BYTES:
            yield dumps(packed)
            packed, used = [], 0
        packed.append(row)
        used += size(op)
    if packed:
        yield dumps(packed)


def ops_from_chunk(text: str) -> list[Op]:
    """The operations of a journal chunk."""
    ops: list[Op] = []
    for row in json.loads(text):
        if row[0] == "o":
            row[2] = base64.b64decode(row[2])
        ops.append(tuple(row))
    return ops
