"""A run's store journal: the entries a World run store appends, and their fold (pure).

The World has no conditional write but its entity guards, and no key-value storage, so the
run store keeps the part of a flowcraft run that is not a World entity (the decision state's
header and records, the context, the outbox, attempt leases and outcomes) as a **shared
log**: one append-only stream per run (``JOURNAL``), one JSON chunk per write. Streams are
totally ordered and append-atomic; every entry's effect is a deterministic function of the
entries before it, so every reader folds the same state and every writer learns whether its
own entry took effect by folding up to it:

* ``save``: its carried outcomes are committed first (first writer wins, in log order, and
  they stand even if the save does not); the save applies only if the folded version is
  its ``expected`` version and every carried outcome is the one that stands (the
  compare-and-set). A later entry with the same ``expected`` version finds the version moved.
* ``claim`` / ``extend``: leases are compared with the entry's own time ``at`` (the writer's
  clock), so the answer does not depend on when a reader folds it.
* ``commit``: the first commit of an attempt in log order is its outcome.
* ``remove``: drops outbox messages.

Version 1 of a run is the state its World ``run_created`` event carried (see ``initial``).
Nothing here does I/O or reads a clock: entries carry their time.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from flowcraft.core.ports import DELETE, AttemptClaim, ClaimStatus, Message, RunRecord
from pydantic import JsonValue

#: The name of a run's journal stream.
JOURNAL = "flowcraft.journal"

Entry = dict[str, Any]


@dataclass(slots=True)
class Attempt:
    """A node attempt's lease and outcome, as folded."""

    owner: str
    lease_until: float
    outcome: bytes | None = None


@dataclass(slots=True)
class Trace:
    """What the history needs of a node instance beyond its current record.

    Attributes:
        slept: The instance was seen sleeping (a sleep node: a World wait, not a step).
        errors: The error of each failed attempt (the ``step_retrying`` of a catch-up).
    """

    slept: bool = False
    errors: dict[int, JsonValue] = field(default_factory=dict)


@dataclass(slots=True)
class Fold:
    """A run's store state as of ``position`` journal entries.

    Attributes:
        record: The run's record (status, output, errors, ``updated_at``).
        version: The state's version (1: as created).
        records: Record key -> (version that wrote it, value).
        changed: Record keys written by saves folded since the projector last cleared it.
    """

    record: RunRecord
    version: int
    header: Mapping[str, object]
    records: dict[str, tuple[int, object]] = field(default_factory=dict)
    context: dict[str, object] = field(default_factory=dict)
    outbox: dict[str, Message] = field(default_factory=dict)
    attempts: dict[str, Attempt] = field(default_factory=dict)
    position: int = 0
    changed: set[str] = field(default_factory=set)
    traces: dict[str, Trace] = field(default_factory=dict)

    def write(self, key: str, value: object) -> None:
        """Write one record at the current version, noting what the history needs."""
        self.records[key] = (self.version, value)
        self.changed.add(key)
        if key.startswith(NODE_PREFIX) and isinstance(value, dict):
            trace = self.traces.setdefault(key, Trace())
            trace.slept = trace.slept or value.get("status") == "sleeping"
            if value.get("error") is not None:
                trace.errors[int(value.get("attempt") or 0)] = value["error"]


#: Stored keys of node-instance records start with this (``["n", frame, node]``).
NODE_PREFIX = '["n",'


# --------------------------------------------------------------------------- creation


def creation(
    record: RunRecord, header: Mapping[str, object], records: Mapping[str, object]
) -> dict[str, Any]:
    """What a run's ``run_created`` event carries (its ``execution_context``)."""
    return {
        "flowcraft": 1,
        "record": record_to_json(record),
        "header": dict(header),
        "records": dict(records),
    }


def initial(context: Mapping[str, Any]) -> Fold:
    """The fold of a run as created (version 1), from its ``run_created`` context."""
    fold = Fold(
        record=record_from_json(context["record"]),
        version=1,
        header=dict(context.get("header") or {}),
    )
    for key, value in dict(context.get("records") or {}).items():
        fold.write(key, value)
    return fold


def is_creation(context: Mapping[str, Any] | None) -> bool:
    """Whether a World run's ``execution_context`` is one of ours."""
    return context is not None and context.get("flowcraft") == 1 and "record" in context


def record_to_json(record: RunRecord) -> dict[str, Any]:
    """A run record as JSON."""
    return {
        "run_id": record.run_id,
        "blueprint_id": record.blueprint_id,
        "blueprint_version": record.blueprint_version,
        "blueprint_digest": record.blueprint_digest,
        "status": record.status,
        "input": record.input,
        "output": record.output,
        "errors": [dict(e) for e in record.errors],
        "parent": None if record.parent is None else list(record.parent),
        "idempotency_key": record.idempotency_key,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def record_from_json(data: Mapping[str, Any]) -> RunRecord:
    """A run record from :func:`record_to_json`."""
    parent = data.get("parent")
    return RunRecord(
        run_id=str(data["run_id"]),
        blueprint_id=str(data["blueprint_id"]),
        blueprint_version=str(data["blueprint_version"]),
        blueprint_digest=str(data["blueprint_digest"]),
        status=str(data["status"]),
        input=data.get("input"),
        output=data.get("output"),
        errors=tuple(data.get("errors") or ()),
        parent=None
        if parent is None
        else (str(parent[0]), str(parent[1]), str(parent[2]), int(parent[3])),
        idempotency_key=data.get("idempotency_key"),
        created_at=float(data["created_at"]),
        updated_at=float(data["updated_at"]),
    )


# --------------------------------------------------------------------------- entries


def encode(entry: Entry) -> bytes:
    """An entry as a journal chunk."""
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode()


def decode(chunk: bytes) -> Entry:
    """A journal chunk as an entry."""
    entry: Entry = json.loads(chunk)
    return entry


def b64(data: bytes) -> str:
    """Bytes as text in an entry."""
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    """Bytes from :func:`b64`."""
    return base64.b64decode(text)


def apply(fold: Fold, entry: Entry) -> object:
    """Fold one entry in; its result (what the operation answers its writer)."""
    fold.position += 1
    return _APPLY[str(entry["op"])](fold, entry)


def _commit(fold: Fold, attempt: str, outcome: bytes) -> bytes:
    current = fold.attempts.setdefault(attempt, Attempt(owner="", lease_until=0.0))
    if current.outcome is None:
        current.outcome = outcome
    return current.outcome


def _save(fold: Fold, entry: Entry) -> bool:
    standing = [_commit(fold, a, unb64(o)) == unb64(o) for a, o in entry.get("outcomes", ())]
    if fold.version != entry["expected"] or not all(standing):
        return False
    fold.version += 1
    fold.header = entry["header"]
    for key, value in entry["records"].items():
        fold.write(key, value)
    at = float(entry["at"])
    for attempt, owner, lease in entry.get("claims", ()):
        fold.attempts.setdefault(attempt, Attempt(owner=owner, lease_until=at + float(lease)))
    for key, value in entry["context"].items():
        if value == DELETE:
            fold.context.pop(key, None)
        else:
            fold.context[key] = value
    for message_id in entry.get("sent", ()):
        fold.outbox.pop(message_id, None)
    for message_id, body in entry.get("outbox", ()):
        fold.outbox[message_id] = Message(id=message_id, body=unb64(body))
    fold.record = replace(
        fold.record,
        status=str(entry["status"]),
        output=entry.get("output"),
        errors=tuple(entry.get("errors") or ()),
        updated_at=at,
    )
    return True


def _claim(fold: Fold, entry: Entry) -> AttemptClaim:
    at, owner, attempt = float(entry["at"]), str(entry["owner"]), str(entry["attempt"])
    current = fold.attempts.get(attempt)
    if current is not None and current.outcome is not None:
        return AttemptClaim(status=ClaimStatus.DONE, outcome=current.outcome)
    if current is not None and current.owner != owner and current.lease_until > at:
        return AttemptClaim(status=ClaimStatus.BUSY, lease_until=current.lease_until)
    until = at + float(entry["lease"])
    fold.attempts[attempt] = Attempt(owner=owner, lease_until=until)
    return AttemptClaim(status=ClaimStatus.CLAIMED, lease_until=until)


def _extend(fold: Fold, entry: Entry) -> bool:
    current = fold.attempts.get(str(entry["attempt"]))
    if current is None or current.owner != entry["owner"] or current.outcome is not None:
        return False
    current.lease_until = float(entry["at"]) + float(entry["lease"])
    return True


def _commit_entry(fold: Fold, entry: Entry) -> bytes:
    return _commit(fold, str(entry["attempt"]), unb64(entry["outcome"]))


def _remove(fold: Fold, entry: Entry) -> None:
    for message_id in entry["ids"]:
        fold.outbox.pop(message_id, None)


_APPLY: dict[str, Callable[[Fold, Entry], object]] = {
    "save": _save,
    "claim": _claim,
    "extend": _extend,
    "commit": _commit_entry,
    "remove": _remove,
}
