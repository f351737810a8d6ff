"""JSON in and out of Cassandra text columns, the run record's static fields, list cursors."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from flowcraft.core.ports import RunRecord

__all__ = ["decode_cursor", "dumps", "encode_cursor", "loads", "record_of", "record_static"]

_CURSOR_TAG = "kc1:"


def dumps(value: object) -> str:
    """Compact JSON (what every stored value is)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | None) -> Any:  # noqa: ANN401 - JSON
    """The JSON value of ``text`` (None for None)."""
    return None if text is None else json.loads(text)


def record_static(record: RunRecord) -> str:
    """The fields of a record that never change after creation, as JSON."""
    return dumps({
        "blueprint_id": record.blueprint_id, "blueprint_version": record.blueprint_version,
        "blueprint_digest": record.blueprint_digest, "input": record.input,
        "parent": list(record.parent) if record.parent is not None else None,
        "idempotency_key": record.idempotency_key, "created_at": record.created_at,
    })  # fmt: skip


def record_of(run_id: str, row: Any) -> RunRecord | None:  # noqa: ANN401 - a driver row
    """The record from a row's static columns (None: no run)."""
    if row is None or row.record is None:
        return None
    fixed: Mapping[str, Any] = json.loads(row.record)
    parent = fixed["parent"]
    return RunRecord(
        run_id=run_id, blueprint_id=fixed["blueprint_id"],
        blueprint_version=fixed["blueprint_version"], blueprint_digest=fixed["blueprint_digest"],
        status=row.status, input=fixed["input"], output=loads(row.output),
        errors=tuple(loads(row.errors) or ()),
        parent=(parent[0], parent[1], parent[2], int(parent[3])) if parent else None,
        idempotency_key=fixed["idempotency_key"], created_at=fixed["created_at"],
        updated_at=row.updated_at,
    )  # fmt: skip


def encode_cursor(day: int, created_at: float, run_id: str) -> str:
    """An opaque cursor after ``(day, created_at, run_id)``."""
    raw = dumps([day, created_at, run_id]).encode()
    return _CURSOR_TAG + base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[int, float, str]:
    """The position of a cursor of :func:`encode_cursor` (``ValueError`` for any other)."""
    if not cursor.startswith(_CURSOR_TAG):
        raise ValueError(f"not a cursor of this store: {cursor!r}")
    try:
        day, created_at, run_id = json.loads(base64.urlsafe_b64decode(cursor[len(_CURSOR_TAG) :]))
        return int(day), float(created_at), str(run_id)
    except (ValueError, TypeError, binascii.Error):
        raise ValueError(f"not a cursor of this store: {cursor!r}") from None
