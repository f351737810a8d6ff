"""How a run's state becomes Cosmos DB items, and back: pure functions, no I/O.

One run is one logical partition (``runId``) of the contexts container::

    r:<sha256(run id)>  the run item: record fields (status, active, created, updated, input,
                        out, err, ...), ``ver``, ``h`` (header), ``log`` (the changes of the
                        saves since the snapshot, one entry per version), ``snap`` (the
                        snapshot it builds on), ``sent`` (outbox messages known enqueued)
    s:<V>:<nonce>:<i>   snapshot part i: every record, context value and outbox message as of
                        version V (immutable; written before the run item points at it)
    j:<V>:<nonce>:<i>   journal part i of a save too big for the run item (immutable; the
                        log entry of version V points at it)
    t:<sha256>          an attempt: owner hash, lease, outcome
    z:<sha256>:<i>      chunk i of a large value (zlib, base64), content-addressed, immutable

A value (JSON text, or base64 of a body or an outcome) over :data:`VALUE_BYTES` is stored as
chunk items of at most :data:`CHUNK_CHARS` characters each, written before the write that
names them; in its place stands a reference ``~z:<sha256>:<count>`` (``~`` starts neither
JSON text nor base64). Chunks of a value are never rewritten with other content (the id is
the value's hash), so a reader that finds a reference finds its chunks, or reads again.

A change is a row ``[kind, key, json text, version]``: kind ``r`` (record), ``c`` (context
value), ``d`` (context key deleted), ``o`` (outbox message, text = base64 body), ``x`` (outbox
message sent). Values are kept as JSON *text* so numbers keep their precision (Cosmos DB
stores JSON numbers as doubles). The run item is the commit point: a save is ONE conditional
patch of it (``ver`` checked by a filter predicate) that adds the save's log entry; parts it
refers to exist before it does, so a reader that sees the run item finds all it needs, or
reads again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from flowcraft.core import ports

__all__ = [
    "CHUNK_CHARS",
    "PART_BYTES",
    "RECORD_TEXTS",
    "TERMINAL",
    "VALUE_BYTES",
    "Blobs",
    "Folded",
    "MissingChunkError",
    "attempt_id",
    "decode_cursor",
    "delta_rows",
    "encode_cursor",
    "fold",
    "log_key",
    "owner_hash",
    "pack_rows",
    "refs",
    "resolve",
    "run_item_id",
    "run_record",
    "sent_key",
    "stored_size",
]

#: Bytes of rows one part item holds (Cosmos DB takes 2 MB; aiohttp warns above 1 MiB).
PART_BYTES = 800_000
#: Values whose stored JSON string takes more bytes than this live in chunk items.
VALUE_BYTES = 64_000
#: Characters (ASCII) of one chunk item's data (requests stay under 1 MiB).
CHUNK_CHARS = 700_000
TERMINAL = frozenset({"completed", "failed", "cancelled"})
Row = list[object]
_REF = "~z:"


#: ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)`` made once: ``json.dumps``
#: with other than its default options builds a new encoder on every call (a save measures
#: and writes a dozen strings). An encoder keeps no state between calls.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
#: What that encoder makes of one string (quoted, escaped): the C function when there is one.
_QUOTED = json.encoder.encode_basestring


def stored_size(text: str) -> int:
    """The bytes ``text`` takes as a JSON string in an item (quotes and escapes included)."""
    return len(_QUOTED(text).encode("utf-8", "surrogatepass"))


class MissingChunkError(LookupError):
    """A chunk a reference names was not among those read (written after the read passed)."""


@dataclass(slots=True)
class Blobs:
    """Large values of one write, kept as chunks to be written before the write names them."""

    chunks: dict[str, str] = field(default_factory=dict)  # item id -> data

    def put(self, text: str) -> str:
        """``text`` itself if it is small, else a reference to its chunks (kept for writing)."""
        if stored_size(text) <= VALUE_BYTES:
            return text
        raw = text.encode("utf-8", "surrogatepass")
        sha = hashlib.sha256(raw).hexdigest()
        packed = base64.b64encode(zlib.compress(raw, 6)).decode("ascii")
        pieces = [packed[i : i + CHUNK_CHARS] for i in range(0, len(packed), CHUNK_CHARS)]
        for index, piece in enumerate(pieces):
            self.chunks[f"z:{sha}:{index}"] = piece
        return f"{_REF}{sha}:{len(pieces)}"

    def rows(self, rows: Iterable[Row]) -> list[Row]:
        """``rows`` with their large texts replaced by references."""
        return [[kind, key, self.put(str(text)), version] for kind, key, text, version in rows]


def refs(text: str) -> list[str]:
    """The chunk ids a stored text refers to (none for a text stored whole)."""
    if not text.startswith(_REF):
        return []
    sha, count = text[len(_REF) :].split(":")
    return [f"z:{sha}:{index}" for index in range(int(count))]


def resolve(text: str, chunks: Mapping[str, str]) -> str:
    """The value of a stored text, its chunks taken from ``chunks`` (by item id).

    Raises:
        MissingChunkError: a chunk is not in ``chunks``.
    """
    ids = refs(text)
    if not ids:
        return text
    try:
        packed = "".join(chunks[i] for i in ids)
    except KeyError as missing:
        raise MissingChunkError(str(missing)) from None
    return zlib.decompress(base64.b64decode(packed)).decode("utf-8", "surrogatepass")


def log_key(version: int) -> str:
    """The log entry's name of ``version`` (a patch path segment)."""
    return f"v{version:012d}"


def run_item_id(run_id: str) -> str:
    """The id of a run's run item: unique in the container, not only in the run's partition.

    Real Cosmos DB evaluates a patch's filter predicate on the one item the patch addresses
    (id and partition key). The local Cosmos server evaluates it as a query over the whole
    container by id alone, so an id shared by every run (``run``) would let one run's
    version satisfy another run's compare-and-set. An id of the run's own is right on both.
    """
    return "r:" + hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()


def attempt_id(run_id: str, attempt: str) -> str:
    """The item id of an attempt (any attempt string, made safe for an id).

    Unique in the container: the run id is part of it, for the reason :func:`run_item_id`
    gives.
    """
    key = f"{run_id}\x00{attempt}".encode("utf-8", "surrogatepass")
    return "t:" + hashlib.sha256(key).hexdigest()


def owner_hash(owner: str) -> str:
    """An owner as hex: what filter predicates compare (never the raw string)."""
    return hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()


def sent_key(message_id: str) -> str:
    """The name of a sent marker of ``message_id`` (a patch path segment)."""
    return "x" + hashlib.sha256(message_id.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def dumps(value: object) -> str:
    """Compact JSON text of a JSON-ready value."""
    return _COMPACT.encode(value)


def delta_rows(
    version: int,
    records: Mapping[str, object],
    context_writes: Mapping[str, object],
    outbox: Sequence[ports.Message],
    sent: Sequence[str],
) -> list[Row]:
    """The rows of one save (see the module)."""
    rows: list[Row] = [["r", key, dumps(value), version] for key, value in records.items()]
    for key, value in context_writes.items():
        rows.append(["d", key, "", version] if value == ports.DELETE
                    else ["c", key, dumps(value), version])  # fmt: skip
    seen: set[str] = set()
    for message in outbox:
        if message.id not in seen:
            seen.add(message.id)
            rows.append(["o", message.id, base64.b64encode(message.body).decode(), version])
    new = {m.id for m in outbox}
    rows += [["x", m, "", version] for m in dict.fromkeys(sent) if m not in new]
    return rows


def rows_size(rows: Iterable[Row]) -> int:
    """The rows' JSON size in an item, in bytes (an upper estimate)."""
    return sum(stored_size(str(r[1])) + stored_size(str(r[2])) + 24 for r in rows)


def pack_rows(rows: Sequence[Row]) -> list[list[Row]]:
    """``rows`` cut into parts of at most :data:`PART_BYTES` (ValueError if one row is bigger)."""
    parts: list[list[Row]] = []
    current: list[Row] = []
    size = 0
    for row in rows:
        weight = rows_size([row])
        if weight > PART_BYTES:
            raise ValueError(
                f"the value of {row[1]!r} takes {weight} bytes; Cosmos DB items hold 2 MB and "
                f"this store keeps each value under {PART_BYTES} bytes"
            )
        if current and size + weight > PART_BYTES:
            parts.append(current)
            current, size = [], 0
        current.append(row)
        size += weight
    if current or not parts:
        parts.append(current)
    return parts


@dataclass(slots=True)
class Folded:
    """A run's records, context and outbox as of ``version``."""

    version: int
    records: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (text, version)
    context: dict[str, str] = field(default_factory=dict)
    outbox: dict[str, str] = field(default_factory=dict)  # id -> base64 body, in order
    sent: set[str] = field(default_factory=set)

    def apply(self, rows: Iterable[Sequence[object]]) -> None:
        """Apply one save's (or a snapshot's) rows."""
        for kind, key, text, version in rows:
            name, value = str(key), str(text)
            if kind == "r":
                self.records[name] = (value, int(str(version)))
            elif kind == "c":
                self.context[name] = value
            elif kind == "d":
                self.context.pop(name, None)
            elif kind == "o":
                self.outbox.setdefault(name, value)
            elif kind == "x":
                self.sent.add(name)

    def snapshot_rows(self, sent_markers: Iterable[str]) -> list[Row]:
        """Every row of the state (sent messages left out of the outbox)."""
        markers = set(sent_markers)
        rows: list[Row] = [["r", k, t, v] for k, (t, v) in self.records.items()]
        rows += [["c", k, t, 0] for k, t in self.context.items()]
        rows += [["o", m, b, 0] for m, b in self.outbox.items()
                 if m not in self.sent and sent_key(m) not in markers]  # fmt: skip
        return rows

    def messages(
        self, sent_markers: Iterable[str], chunks: Mapping[str, str]
    ) -> tuple[ports.Message, ...]:
        """The outbox: messages not known to be sent (``MissingChunkError``: read again)."""
        markers = set(sent_markers)
        return tuple(
            ports.Message(id=m, body=base64.b64decode(resolve(b, chunks)))
            for m, b in self.outbox.items()
            if m not in self.sent and sent_key(m) not in markers
        )


def fold(
    run: Mapping[str, object],
    parts: Mapping[str, Sequence[Sequence[object]]],
) -> Folded | None:
    """The state of a run item, its snapshot and journal parts (by item id).

    None: a part is missing (the query passed it before it was written: read again).
    """
    folded = Folded(version=int(str(run["ver"])))
    snap = run.get("snap")
    if isinstance(snap, Mapping):
        for index in range(int(snap["n"])):
            rows = parts.get(f"s:{snap['ver']}:{snap['nonce']}:{index}")
            if rows is None:
                return None
            folded.apply(rows)
    log = run.get("log")
    for name in sorted(log) if isinstance(log, Mapping) else ():
        assert isinstance(log, Mapping)
        entry = log[name]
        if "rows" in entry:
            folded.apply(entry["rows"])
            continue
        for index in range(int(entry["n"])):
            rows = parts.get(f"j:{int(name[1:])}:{entry['nonce']}:{index}")
            if rows is None:
                return None
            folded.apply(rows)
    return folded


#: The run item's fields that may hold a reference to chunks.
RECORD_TEXTS = ("input", "out", "err")


def run_record(
    item: Mapping[str, object], chunks: Mapping[str, str] | None = None
) -> ports.RunRecord:
    """The run record of a run item.

    Raises:
        MissingChunkError: a chunk of a large field is not in ``chunks``.
    """
    parent = item.get("parent")

    def text(name: str, default: str) -> str:
        return resolve(str(item.get(name) or default), chunks or {})

    errors = json.loads(text("err", "[]"))
    return ports.RunRecord(
        run_id=str(item["runId"]),
        blueprint_id=str(item["blueprint_id"]),
        blueprint_version=str(item["blueprint_version"]),
        blueprint_digest=str(item["blueprint_digest"]),
        status=str(item["status"]),
        input=json.loads(text("input", "null")),
        output=json.loads(text("out", "null")),
        errors=tuple(errors) if isinstance(errors, list) else (),
        parent=(str(parent[0]), str(parent[1]), str(parent[2]), int(parent[3]))
        if isinstance(parent, list) else None,
        idempotency_key=str(item["idempotency_key"]) if item.get("idempotency_key") else None,
        created_at=float(str(item["created"])),
        updated_at=float(str(item["updated"])),
    )  # fmt: skip


def run_item(
    record: ports.RunRecord, header: Mapping[str, object], nonce: str, blobs: Blobs
) -> dict[str, object]:
    """The run item of a new run (version 1, an empty log; large fields put in ``blobs``)."""
    return {
        "id": run_item_id(record.run_id), "runId": record.run_id, "kind": "run", "ver": 1,
        "w": nonce, "lsz": 0,
        "h": blobs.put(dumps(header)), "log": {}, "sent": {}, "snap": None,
        "blueprint_id": record.blueprint_id, "blueprint_version": record.blueprint_version,
        "blueprint_digest": record.blueprint_digest, "status": record.status,
        "active": None if record.status in TERMINAL else record.status,
        "input": blobs.put(dumps(record.input)), "out": blobs.put(dumps(record.output)),
        "err": blobs.put(dumps(list(record.errors))),
        "parent": list(record.parent) if record.parent is not None else None,
        "idempotency_key": record.idempotency_key,
        "created": record.created_at, "updated": record.updated_at,
    }  # fmt: skip


_CURSOR = "fc1:"


def encode_cursor(created: float, run_id: str) -> str:
    """A ``list_runs`` cursor: the position of the last run of a page."""
    raw = json.dumps([created, run_id]).encode()
    return _CURSOR + base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The position in a cursor (``ValueError`` naming the cursor if it is not one of ours)."""
    try:
        if not cursor.startswith(_CURSOR):
            raise ValueError
        created, run_id = json.loads(base64.urlsafe_b64decode(cursor[len(_CURSOR) :]))
        return float(created), str(run_id)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ValueError(f"not a cursor of this store: {cursor!r}") from None
