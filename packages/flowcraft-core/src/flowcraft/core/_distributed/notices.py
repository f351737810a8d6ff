"""Notices: a settled run's result carried by the notification of its last save.

A ``ports.ResultNotifier`` store sends the ``notice`` its terminal save was given with that
save's notification; the waiting client builds the result from it instead of reading it
(``ports.ResultReader``). A notice is JSON text of what ``read_result`` would read: the
version the save made, the header, the context and the records of ``result_keys`` the run
has. Core writes and reads it; stores carry it as it is.

Only a settled run's save gets one: once settled, no later save changes its result, so a
notice a waiter holds stays true (``RunWatch.notice`` keeps it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flowcraft.core._engine.records import result_records
from flowcraft.core._engine.state import RunState
from flowcraft.core.ports import StoredResult

__all__ = ["notice_of", "read_notice"]


def notice_of(state: RunState, header: Mapping[str, object], version: int) -> str | None:
    """The notice of ``state`` saved as ``version`` with ``header``; None if not settled.

    None too for a state that is not JSON (the store's save would refuse it anyway).
    """
    if not state.settled:
        return None
    try:
        return json.dumps(
            {
                "version": version,
                "header": header,
                "records": result_records(state),
                "context": state.context,
            },
            separators=(",", ":"),
            allow_nan=False,
        )
    except (TypeError, ValueError):
        return None


def read_notice(notice: str) -> StoredResult | None:
    """What a notice says, as ``read_result`` would answer; None if it is not a notice."""
    try:
        data: Any = json.loads(notice)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    version, header = data.get("version"), data.get("header")
    records, context = data.get("records"), data.get("context")
    if not (
        isinstance(version, int)
        and isinstance(header, dict)
        and isinstance(records, dict)
        and isinstance(context, dict)
    ):
        return None
    return StoredResult(version=version, header=header, records=records, context=context)
