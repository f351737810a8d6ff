"""How a run's pieces become DynamoDB items, and back: pure functions, no I/O.

One run is one item collection of the contexts table (partition key ``runId``); sort keys::

    !h                    header: ver (N), h (header JSON), pending (M: a large save's journal)
    c#<context key>       a context value: ver, d | ref+n, del (a tombstone, see below)
    j#<ver>#<nonce>#<i>   journal of a large save (zlib JSON of its entries), until applied
    o#<ver>               the outbox messages of the save that made <ver> (one item per save,
                          ids and bodies packed): ver, d | ref+n, gone (SS: ids removed since)
    o#<ver>#<i>           message i of a started run's outbox (``create_started_run``): one
                          item per message, so the save committing its job deletes it whole
    r#<record key>        a record: ver, d | ref+n
    t#<attempt>           an attempt: owner, lease, outcome | outcome_ref+outcome_n
    z#<sha256>#<i>        chunk i of a large value (zlib), content-addressed, immutable

The header sorts first, so one ``Query`` (``sk < "t"``) reads a run's state header first: an
item with a ``ver`` above the header's was written by a save that committed during the read,
and the load reads again (DynamoDB queries are read-committed per item, not snapshots).
Outbox items sort by the version that wrote them, so the outbox is in the order its messages
were saved (a message saved again keeps its first place).
Context deletions are tombstones (``del``) with the deleting version, for the same reason: a
deleted item that simply vanished could not be told from one never written.

Values up to :data:`INLINE` bytes are stored in the item (``d``, binary); larger ones as
zlib-compressed chunks of at most :data:`CHUNK` bytes under ``z#<sha256>#<i>``, written before
the transaction that references them (``ref``, ``n``): content-addressed, so a retry or a
refused save leaves at most an unreferenced copy, never a wrong one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowcraft.core import ports

__all__ = [
    "CHUNK",
    "HEADER",
    "INLINE",
    "Blobs",
    "Ref",
    "attempt_key",
    "blob_items",
    "context_key",
    "outbox_entry",
    "outbox_key",
    "pack_outbox",
    "record_key",
    "unpack_outbox",
]

#: Values up to this many bytes live in their item; larger ones in content-addressed chunks.
INLINE = 32_000
#: Bytes of one chunk of a large value, and of one journal item (DynamoDB items: 400 KB).
CHUNK = 350_000
#: Sort key of the header item.
HEADER = "!h"
#: Upper bound (exclusive) of a state query's sort keys: header, context, journal, outbox, records.
STATE_END = "t"

Item = dict[str, Any]


def record_key(key: str) -> str:
    """Sort key of record ``key``."""
    return f"r#{key}"


def context_key(key: str) -> str:
    """Sort key of context value ``key``."""
    return f"c#{key}"


def outbox_entry(version: int, index: int | None = None) -> str:
    """The key of the outbox item of the save that made ``version`` (sorts by version).

    ``index``: the key of that save's ``index``-th message alone (a started run's, which
    sort after the version's own item and before the next version's, in order).
    """
    return f"{version:012d}" if index is None else f"{version:012d}#{index:06d}"


def outbox_key(entry: str) -> str:
    """Sort key of an outbox item (``entry``: :func:`outbox_entry`)."""
    return f"o#{entry}"


def attempt_key(attempt: str) -> str:
    """Sort key of an attempt."""
    return f"t#{attempt}"


def journal_prefix(version: int, nonce: str) -> str:
    """Sort-key prefix of the journal items of the save that made ``version``."""
    return f"j#{version:012d}#{nonce}#"


@dataclass(frozen=True, slots=True)
class Ref:
    """A large value stored as chunks: its sha256 and chunk count."""

    sha: str
    chunks: int


@dataclass(slots=True)
class Blobs:
    """Large values of one write, to be stored as chunks before the write that names them."""

    chunks: dict[str, bytes] = field(default_factory=dict)  # sort key -> chunk

    def store(self, data: bytes) -> bytes | Ref:
        """``data`` itself if it is small, else a :class:`Ref` to chunks kept for writing."""
        if len(data) <= INLINE:
            return data
        sha = hashlib.sha256(data).hexdigest()
        packed = zlib.compress(data, 1)
        parts = [packed[i : i + CHUNK] for i in range(0, len(packed), CHUNK)] or [b""]
        for index, part in enumerate(parts):
            self.chunks[f"z#{sha}#{index:04d}"] = part
        return Ref(sha=sha, chunks=len(parts))

    def value(self, name: str, data: bytes) -> Item:
        """Attributes holding ``data`` under ``name``: inline, or a reference to chunks."""
        return stored_attributes(name, self.store(data))


def stored_attributes(name: str, stored: bytes | Ref) -> Item:
    """The attributes of a stored value: ``name`` (bytes) or ``name_ref`` and ``name_n``."""
    if isinstance(stored, Ref):
        return {f"{name}_ref": {"S": stored.sha}, f"{name}_n": {"N": str(stored.chunks)}}
    return {name: {"B": stored}}


def blob_items(run_id: str, blobs: Blobs) -> list[Item]:
    """The chunk items of ``blobs`` in the run's partition."""
    return [
        {"runId": {"S": run_id}, "sk": {"S": sk}, "d": {"B": part}}
        for sk, part in blobs.chunks.items()
    ]


def stored_value(item: Mapping[str, Any], name: str) -> bytes | Ref | None:
    """The value under ``name``: its bytes, a :class:`Ref` to resolve, or None if absent."""
    if name in item:
        return bytes(item[name]["B"])
    if f"{name}_ref" in item:
        return Ref(sha=item[f"{name}_ref"]["S"], chunks=int(item[f"{name}_n"]["N"]))
    return None


def chunk_keys(ref: Ref) -> list[str]:
    """Sort keys of a reference's chunks."""
    return [f"z#{ref.sha}#{index:04d}" for index in range(ref.chunks)]


def assemble(ref: Ref, chunks: Mapping[str, bytes]) -> bytes:
    """The value of ``ref`` from its chunks (``ValueError`` if one is missing or corrupt)."""
    try:
        data = zlib.decompress(b"".join(chunks[key] for key in chunk_keys(ref)))
    except (KeyError, zlib.error) as exc:
        raise ValueError(f"large value {ref.sha} is missing or corrupt: {exc}") from None
    if hashlib.sha256(data).hexdigest() != ref.sha:
        raise ValueError(f"large value {ref.sha} does not match its hash")
    return data


def dumps(value: object) -> bytes:
    """Compact JSON bytes of a JSON-ready value."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes) -> object:
    """The JSON value of ``data``."""
    return json.loads(data)


def item_size(item: Mapping[str, Any]) -> int:
    """An upper estimate of an item's size as DynamoDB counts it (names plus values)."""
    total = 0
    for name, value in item.items():
        total += len(name) + 8
        for kind, payload in value.items():
            if kind in ("S", "N"):
                total += len(str(payload).encode())
            elif kind == "B":
                total += len(payload)
            else:
                total += len(json.dumps(payload, default=str))
    return total


# --------------------------------------------------------------------------- journal


@dataclass(frozen=True, slots=True)
class Entry:
    """One write of a large save, journalled: what ``apply`` turns into an item."""

    kind: str  # "r" record, "c" context, "o" a save's outbox (:func:`pack_outbox`)
    key: str
    value: bytes | Ref | None  # None: a context deletion


def pack_journal(entries: Sequence[Entry]) -> list[bytes]:
    """The journal items' payloads (zlib JSON, each under :data:`CHUNK` bytes)."""
    payloads: list[bytes] = []
    batch: list[list[object]] = []
    size = 0
    for entry in entries:
        row: list[object] = [entry.kind, entry.key, _text(entry.value)]
        row_size = len(entry.key) + (len(entry.value) if isinstance(entry.value, bytes) else 64)
        if batch and size + row_size > 4 * CHUNK:  # zlib shrinks JSON; checked below
            payloads.extend(_compress(batch))
            batch, size = [], 0
        batch.append(row)
        size += row_size
    if batch:
        payloads.extend(_compress(batch))
    return payloads


def _text(value: bytes | Ref | None) -> object:
    if isinstance(value, Ref):
        return {"ref": value.sha, "n": value.chunks}
    return None if value is None else value.decode("utf-8", errors="surrogateescape")


def _compress(rows: list[list[object]]) -> list[bytes]:
    packed = zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 1)
    if len(packed) <= CHUNK or len(rows) == 1:
        return [packed]
    middle = len(rows) // 2
    return _compress(rows[:middle]) + _compress(rows[middle:])


def unpack_journal(payloads: Iterable[bytes]) -> list[Entry]:
    """The entries of journal payloads, in order."""
    entries: list[Entry] = []
    for payload in payloads:
        for kind, key, text in json.loads(zlib.decompress(payload)):
            value: bytes | Ref | None = None
            if isinstance(text, dict):
                value = Ref(sha=str(text["ref"]), chunks=int(text["n"]))
            elif text is not None:
                value = str(text).encode("utf-8", errors="surrogateescape")
            entries.append(Entry(kind=str(kind), key=str(key), value=value))
    return entries


# --------------------------------------------------------------------------- run records


TERMINAL = frozenset({"completed", "failed", "cancelled"})
STATUSES = ("pending", "running", "awaiting", "completed", "failed", "cancelled")
ACTIVE = ("pending", "running", "awaiting")


def created_key(created_at: float, run_id: str) -> str:
    """The ``created`` sort key: newest-first order by time, then by id."""
    return f"{created_at:017.6f}#{run_id}"


def encode_cursor(created: str) -> str:
    """A ``list_runs`` cursor: the ``created`` key of the last run of a page."""
    return base64.urlsafe_b64encode(created.encode()).decode()


def decode_cursor(cursor: str) -> str:
    """The ``created`` key in a cursor (``ValueError`` naming the cursor if it is not one)."""
    try:
        created = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        created = ""
    if not _CREATED.match(created):
        raise ValueError(f"not a cursor of this store: {cursor!r}")
    return created


_CREATED = re.compile(r"^\d{10}\.\d{6}#.+", re.DOTALL)


def status_item(record: ports.RunRecord, blobs: Blobs) -> Item:
    """The statuses-table item of a new run."""
    item: Item = {
        "runId": {"S": record.run_id},
        "blueprint_id": {"S": record.blueprint_id},
        "blueprint_version": {"S": record.blueprint_version},
        "blueprint_digest": {"S": record.blueprint_digest},
        "status": {"S": record.status},
        "created": {"S": created_key(record.created_at, record.run_id)},
        "created_at": {"N": repr(record.created_at)},
        "updated": {"N": repr(record.updated_at)},
    }
    if record.status not in TERMINAL:
        item["active"] = {"S": record.status}
    if record.parent is not None:
        item["parent"] = {"S": json.dumps(list(record.parent))}
    if record.idempotency_key is not None:
        item["idempotency_key"] = {"S": record.idempotency_key}
    item |= blobs.value("input", dumps(record.input))
    item |= blobs.value("output", dumps(record.output))
    item |= blobs.value("errors", dumps(list(record.errors)))
    return item


def run_record(item: Mapping[str, Any], values: Mapping[str, bytes]) -> ports.RunRecord:
    """The run record of a statuses-table item; ``values`` holds its resolved large values."""
    parent = json.loads(item["parent"]["S"]) if "parent" in item else None
    errors = loads(values["errors"])
    return ports.RunRecord(
        run_id=item["runId"]["S"],
        blueprint_id=item["blueprint_id"]["S"],
        blueprint_version=item["blueprint_version"]["S"],
        blueprint_digest=item["blueprint_digest"]["S"],
        status=item["status"]["S"],
        input=loads(values["input"]),
        output=loads(values["output"]),
        errors=tuple(errors) if isinstance(errors, list) else (),
        parent=(str(parent[0]), str(parent[1]), str(parent[2]), int(parent[3])) if parent else None,
        idempotency_key=item["idempotency_key"]["S"] if "idempotency_key" in item else None,
        created_at=float(item["created_at"]["N"]),
        updated_at=float(item["updated"]["N"]),
    )


def pack_outbox(messages: Sequence[ports.Message]) -> bytes:
    """One save's outbox messages as one value: a JSON ``[[id, size], ...]`` then the bodies."""
    head = dumps([[m.id, len(m.body)] for m in messages])
    return len(head).to_bytes(4, "big") + head + b"".join(m.body for m in messages)


def unpack_outbox(data: bytes) -> list[ports.Message]:
    """The messages of :func:`pack_outbox`'s value (``ValueError`` if it is not one)."""
    size = int.from_bytes(data[:4], "big")
    try:
        head = json.loads(data[4 : 4 + size])
    except ValueError:
        head = None
    if not isinstance(head, list) or len(data) != 4 + size + sum(n for _, n in head):
        raise ValueError("an outbox item is corrupt (its sizes do not add up)")
    messages, position = [], 4 + size
    for message_id, length in head:
        messages.append(ports.Message(id=str(message_id), body=data[position : position + length]))
        position += length
    return messages
