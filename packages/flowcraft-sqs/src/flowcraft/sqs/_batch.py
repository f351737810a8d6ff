"""Batched SQS calls: entries of one event-loop turn go out together, each caller answered alone.

``batcher`` gathers the entries submitted in one turn of the event loop (core's
``flowcraft.core.aio.TurnBatch``: the first ``submit`` schedules the flush with ``call_soon``),
packs them into requests (at most 10 entries and a total size limit, see ``_codec.pack``),
sends each request in a task of its own and hands each caller its own entry's outcome.
``entry_errors`` turns a batch answer (``Successful`` / ``Failed``) into those outcomes:
``PermanentBackendError`` when SQS says the sender is at fault, ``TransientBackendError``
otherwise, nothing for a stale receipt handle where that is fine (the message was delivered
again meanwhile).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from flowcraft.core.aio import TurnBatch
from flowcraft.core.errors import BackendError, PermanentBackendError, TransientBackendError
from flowcraft.sqs._codec import pack
from flowcraft.sqs._errors import error_code

__all__ = ["Errors", "batcher", "entry_errors", "stale", "stale_error"]

_log = logging.getLogger("flowcraft.sqs")
_E = TypeVar("_E")
#: One outcome per entry of a batch: None (done) or the entry's error.
Errors = list[BaseException | None]

#: Error codes of a receipt handle that is no longer valid (the message moved on).
_STALE_CODES = frozenset(
    {
        "ReceiptHandleIsInvalid",
        "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
    }
)


def stale(code: str, message: str) -> bool:
    """Whether an error says the receipt handle is stale (expired, or the message is gone)."""
    if code in _STALE_CODES:
        return True
    return code == "InvalidParameterValue" and "receipt handle" in message.lower()


def stale_error(exc: BackendError) -> bool:
    """Whether a translated error says the receipt handle is stale."""
    return stale(error_code(exc.__cause__ or exc), str(exc))


def entry_errors(answer: dict[str, Any], count: int, what: str, *, stale_ok: bool) -> Errors:
    """Per-entry outcome of a batch call (entries have ids ``"0"``, ``"1"``, ...)."""
    errors: Errors = [TransientBackendError(f"{what}: no answer for the entry")] * count
    for entry in answer.get("Successful", []):
        errors[int(entry["Id"])] = None
    for entry in answer.get("Failed", []):
        code, message = str(entry.get("Code", "")), str(entry.get("Message", ""))
        index = int(entry["Id"])
        if stale_ok and stale(code, message):
            _log.debug("%s: stale receipt handle (already redelivered): %s", what, message)
            errors[index] = None
            continue
        kind = PermanentBackendError if entry.get("SenderFault") else TransientBackendError
        errors[index] = kind(f"{what}: {code}: {message}")
    return errors


def batcher(
    send: Callable[[list[_E]], Awaitable[Errors]],
    *,
    size: Callable[[_E], int],
    limit: int,
    spawn: Callable[[Coroutine[Any, Any, None]], None],
) -> TurnBatch[_E, None]:
    """Entries submitted in one event-loop turn go out together, packed into batches.

    Core's ``TurnBatch``: the first ``submit`` of a turn schedules the flush (``call_soon``);
    the turn's entries are packed into batches of at most 10 entries and ``limit`` total
    ``size`` (``_codec.pack``), each sent in a task of its own by ``send``, which returns one
    error (or None) per entry; each caller waits for its own entry's answer.
    """
    return TurnBatch(send, split=lambda entries: pack(entries, size=size, limit=limit), spawn=spawn)
