"""The write requests of a save, built without I/O: transaction parts and their limits.

Each function returns one part of a ``TransactWriteItems`` (``{"Put": ...}``,
``{"Update": ...}``, ``{"Delete": ...}``) for the contexts or statuses table: the header's
compare-and-set put, one update per changed record, context key or outbox (an
:class:`~flowcraft.sqs._items.Entry`), first-writer-wins outcome updates, claim puts, and
the status item's update, which :class:`StatusBook` leaves out when this process wrote the
same lately (:data:`UPDATED_GRANULARITY`). :func:`journal_needed` says when a save outgrows
one transaction (:data:`MAX_ITEMS`, :data:`MAX_BYTES`) and goes through the journal
(``_journal.py``); :func:`without_failed_claims` is a refused save's second chance.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowcraft.core import ports
from flowcraft.sqs import _items as it
from flowcraft.sqs._dynamo import Item, Stored, n, s
from flowcraft.sqs._errors import Refused

__all__ = [
    "MAX_BYTES",
    "MAX_ITEMS",
    "NO_OUTCOME",
    "SMALL_PARTS",
    "UPDATED_GRANULARITY",
    "StatusBook",
    "claim_put",
    "delete",
    "entries",
    "entry_update",
    "header_item",
    "journal_needed",
    "outcome_update",
    "without_failed_claims",
]

#: Items one ``TransactWriteItems`` may hold (DynamoDB's limit is 100).
MAX_ITEMS = 100
#: Bytes one transaction may carry before a save goes through the journal (limit: 4 MB).
MAX_BYTES = 3_500_000
#: A run's status item is rewritten by saves that change nothing of it at most this often.
UPDATED_GRANULARITY = 1.0
#: Outcomes and claims a journalled save keeps in its transaction (the rest: before / after).
SMALL_PARTS = 40
#: An attempt without a committed outcome.
NO_OUTCOME = "attribute_not_exists(outcome) AND attribute_not_exists(outcome_ref)"

#: What a save wrote to a run's status item: status, output, errors (JSON), updated.
Written = tuple[str, bytes, bytes, float]


def header_item(run_id: str, version: int, header: Mapping[str, object], nonce: str) -> Item:
    """The run's header item at ``version`` (``nonce`` names the save that writes it)."""
    data = it.dumps(header)
    if len(data) > it.CHUNK:
        raise ValueError(f"run {run_id}: a header of {len(data)} bytes (at most {it.CHUNK})")
    return {"runId": s(run_id), "sk": s(it.HEADER), "ver": n(version),
            "h": {"B": data}, "w": s(nonce)}  # fmt: skip


def entries(
    records: Mapping[str, object],
    context_writes: Mapping[str, object],
    outbox: Sequence[ports.Message],
    version: int,
    blobs: it.Blobs,
    *,
    per_message: bool = False,
) -> list[it.Entry]:
    """A save's writes as journal entries (large values stored in ``blobs``).

    The outbox is one entry (item) holding all its messages, or with ``per_message`` one
    entry per message (a started run's: ``_items.outbox_entry``).
    """
    found = [it.Entry("r", key, blobs.store(it.dumps(v))) for key, v in records.items()]
    for key, value in context_writes.items():
        stored = None if value == ports.DELETE else blobs.store(it.dumps(value))
        found.append(it.Entry("c", key, stored))
    if outbox:
        unique = list({m.id: m for m in reversed(outbox)}.values())[::-1]
        if per_message:
            for index, message in enumerate(unique):
                packed = it.pack_outbox([message])
                key = it.outbox_entry(version, index)
                found.append(it.Entry("o", key, blobs.store(packed)))
        else:
            packed = it.pack_outbox(unique)
            found.append(it.Entry("o", it.outbox_entry(version), blobs.store(packed)))
    return found


def entry_update(
    table: str, run_id: str, entry: it.Entry, version: int, *, conditional: bool
) -> Item:
    """The ``Update`` that writes one journal entry as its item at ``version``."""
    sk = {"r": it.record_key, "c": it.context_key, "o": it.outbox_key}[entry.kind](entry.key)
    values: Item = {":v": n(version)}
    sets = ["ver = :v"]
    removes: list[str] = []
    if entry.value is None:
        sets.append("del = :t")
        values[":t"] = {"BOOL": True}
        removes += ["d", "d_ref", "d_n"]
    elif isinstance(entry.value, it.Ref):
        sets += ["d_ref = :ref", "d_n = :n"]
        values |= {":ref": s(entry.value.sha), ":n": n(entry.value.chunks)}
        removes += ["d", "del"]
    else:
        sets.append("d = :d")
        values[":d"] = {"B": entry.value}
        removes += ["d_ref", "d_n", "del"]
    update: Item = {
        "TableName": table,
        "Key": {"runId": s(run_id), "sk": s(sk)},
        "UpdateExpression": f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
        "ExpressionAttributeValues": values,
    }
    if conditional:
        update["ConditionExpression"] = "attribute_not_exists(ver) OR ver < :v"
    return {"Update": update}


def outcome_update(table: str, run_id: str, attempt: str, outcome: bytes, blobs: it.Blobs) -> Item:
    """The first-writer-wins ``Update`` of an attempt's outcome."""
    sets, values = _outcome_sets(blobs.store(outcome))
    return {"Update": {
        "TableName": table,
        "Key": {"runId": s(run_id), "sk": s(it.attempt_key(attempt))},
        "UpdateExpression": "SET " + ", ".join(sets),
        "ConditionExpression": NO_OUTCOME,
        "ExpressionAttributeValues": values,
    }}  # fmt: skip


def _outcome_sets(stored: Stored) -> tuple[list[str], Item]:
    if isinstance(stored, it.Ref):
        return ["outcome_ref = :r", "outcome_n = :n"], {
            ":r": s(stored.sha),
            ":n": n(stored.chunks),
        }
    return ["outcome = :o"], {":o": {"B": stored}}


def claim_put(table: str, run_id: str, attempt: str, owner: str, until: float) -> Item:
    """The ``Put`` of a new attempt's claim (refused if the attempt exists)."""
    item = {"runId": s(run_id), "sk": s(it.attempt_key(attempt)),
            "owner": s(owner), "lease": n(until)}  # fmt: skip
    return {"Put": {"TableName": table, "Item": item,
                    "ConditionExpression": "attribute_not_exists(sk)"}}  # fmt: skip


def delete(table: str, run_id: str, sk: str) -> Item:
    """The ``Delete`` of one item of the run."""
    return {"Delete": {"TableName": table, "Key": {"runId": s(run_id), "sk": s(sk)}}}


def journal_needed(fixed: Sequence[Item], parts: Sequence[Item]) -> bool:
    """Whether these parts outgrow one transaction (count or bytes)."""
    if len(fixed) + len(parts) > MAX_ITEMS:
        return True
    return sum(_request_size(p) for p in (*fixed, *parts)) > MAX_BYTES


def _request_size(part: Mapping[str, Any]) -> int:
    request = next(iter(part.values()))
    size = 0
    for name in ("Item", "Key", "ExpressionAttributeValues"):
        if name in request:
            size += it.item_size(request[name])
    return size + 200


def without_failed_claims(refused: Refused, transaction: list[Item]) -> list[Item] | None:
    """The transaction without its claims, if failed claims are all that refused it."""
    failed = {
        index
        for index, part in enumerate(transaction)
        if refused.failed(index) and "Put" in part and _sort_key(part).startswith("t#")
    }
    others = {i for i, r in enumerate(refused.reasons) if r not in ("None", "")}
    if failed and others == failed:
        return [p for i, p in enumerate(transaction) if i not in failed]
    return None


def _sort_key(part: Mapping[str, Any]) -> str:
    """The sort key a transaction part writes ("" for parts of the statuses table)."""
    request = next(iter(part.values()))
    key = request.get("Item") or request.get("Key") or {}
    return str(key.get("sk", {}).get("S", ""))


@dataclass(slots=True)
class _Written:
    """What this process last wrote to a run's status item."""

    version: int
    status: str
    output: bytes
    errors: bytes
    updated: float


class StatusBook:
    """What this process last wrote to runs' status items (the last 10,000 runs)."""

    def __init__(self, table: str) -> None:
        self._table = table
        self._written: OrderedDict[str, _Written] = OrderedDict()

    def update(
        self,
        run_id: str,
        *,
        expected_version: int,
        status: str,
        output: object,
        errors: Sequence[Mapping[str, object]],
        now: float,
        blobs: it.Blobs,
    ) -> tuple[Item | None, Written | None]:
        """The status item's update, unless this process wrote the same lately."""
        out, errs = it.dumps(output), it.dumps(list(errors))
        known = self._written.get(run_id)
        if (
            known is not None
            and known.version == expected_version
            and (known.status, known.output, known.errors) == (status, out, errs)
            and now - known.updated < UPDATED_GRANULARITY
        ):
            return None, (status, out, errs, known.updated)
        values: Item = {":s": s(status), ":u": n(now)}
        sets = ["#s = :s", "updated = :u"]
        removes: list[str] = []
        for name, data in (("output", out), ("errors", errs)):
            stored = blobs.store(data)
            if isinstance(stored, it.Ref):
                sets += [f"{name}_ref = :{name}r", f"{name}_n = :{name}n"]
                values |= {f":{name}r": s(stored.sha), f":{name}n": n(stored.chunks)}
                removes.append(f"#{name}")
            else:
                sets.append(f"#{name} = :{name}")
                values[f":{name}"] = {"B": stored}
                removes += [f"{name}_ref", f"{name}_n"]
        if status in it.TERMINAL:
            removes.append("active")
        else:
            sets.append("active = :s")
        update = {
            "TableName": self._table,
            "Key": {"runId": s(run_id)},
            "UpdateExpression": f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            "ExpressionAttributeNames": {"#s": "status", "#output": "output", "#errors": "errors"},
            "ExpressionAttributeValues": values,
        }
        return {"Update": update}, (status, out, errs, now)

    def remember(self, run_id: str, version: int, written: Written) -> None:
        """Note what a save that committed wrote to the run's status item."""
        status, output, errors, updated = written
        self._written[run_id] = _Written(version, status, output, errors, updated)
        self._written.move_to_end(run_id)
        while len(self._written) > 10_000:
            self._written.popitem(last=False)
