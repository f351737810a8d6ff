"""Driver errors translated at the port edge: azure-core / azure-cosmos / aiohttp in, flowcraft out.

Every call into the Azure SDKs runs inside :func:`edge`, which re-raises the driver's exception
as ``flowcraft.core.errors.TransientBackendError`` (a retry may help) or
``PermanentBackendError`` (configuration, permissions, bad requests), chained with ``from exc``
and with the service's message kept. A few answers are not errors and reach the caller as
:class:`Refused` (the store, the coordination of pop receipts and the offload act on them):

* Cosmos DB: 409 Conflict (an item with that id exists: a create lost a race, first writer
  wins), 412 Precondition Failed (an etag or a patch's filter predicate did not match: a
  compare-and-set lost) and 404 Not Found of an item (never relied on for reads: the local
  Cosmos server answers 500 to a ``read_item`` of a missing id, so reads go through queries).
  A transactional batch refused by one of these carries each operation's status
  (``Refused.statuses``: the refusing one's, 424 for the operations not applied, and on the
  local Cosmos server, which does not roll batches back, 201 for those applied before it).
* Queue Storage: ``MessageNotFound`` (404) and ``PopReceiptMismatch`` (400): the message was
  deleted or delivered again with another pop receipt (a stale delivery).

Class tree of what leaves this module::

    azure.core.exceptions.AzureError
    ├── ServiceRequestError, ServiceResponseError (+ their timeouts)   -> Transient (connection)
    ├── HttpResponseError
    │   ├── 408, 429 (throttled; the SDKs already retried), 449, 5xx   -> Transient
    │   ├── 401/403 ClientAuthenticationError                           -> Permanent
    │   ├── 404/409/412 of an item (or of a batch's operation),
    │   │   MessageNotFound, PopReceiptMismatch                         -> Refused (an answer)
    │   └── everything else (400 bad request, a missing queue/container) -> Permanent
    ├── CosmosClientTimeoutError, StreamConsumedError, StreamClosedError,
    │   ResponseNotReadError                                            -> Transient
    └── anything else of azure-core                                     -> Permanent
    aiohttp.ClientError, OSError, TimeoutError                          -> Transient
    SerializationError, DeserializationError, other exceptions          -> Permanent

Credentials never appear in messages: the SDKs redact them and this module adds only the
operation's name.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
from flowcraft.core.errors import BackendError, PermanentBackendError, TransientBackendError

from azure.core import exceptions as core_exc
from azure.cosmos import exceptions as cosmos_exc

__all__ = ["Refused", "classify", "edge", "refusal", "translate"]

#: HTTP statuses after which a retry may succeed.
TRANSIENT_STATUSES = frozenset({408, 429, 449, 500, 502, 503, 504})
#: Queue Storage error codes of a stale delivery.
STALE_CODES = frozenset({"MessageNotFound", "PopReceiptMismatch"})
#: Cosmos DB item statuses that are answers.
_ANSWERS = {404: "missing", 409: "exists", 412: "changed"}

_TRANSIENT_CLASSES: tuple[type[BaseException], ...] = (
    core_exc.ServiceRequestError,
    core_exc.ServiceResponseError,
    core_exc.StreamConsumedError,
    core_exc.StreamClosedError,
    core_exc.ResponseNotReadError,
    cosmos_exc.CosmosClientTimeoutError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
    asyncio.TimeoutError,
)


@dataclass(eq=False)
class Refused(Exception):  # noqa: N818 (an answer, not an error)
    """A conditional request was refused: ``what`` is missing, exists, changed or stale.

    ``statuses``: of a refused transactional batch, each operation's HTTP status in order.
    """

    what: str
    detail: str = ""
    statuses: tuple[int, ...] = ()

    def __str__(self) -> str:
        """The kind of refusal and the service's words."""
        return f"{self.what}: {self.detail}" if self.detail else self.what


def status_of(exc: BaseException) -> int:
    """The HTTP status of an ``HttpResponseError`` (0 for other exceptions)."""
    if isinstance(exc, core_exc.HttpResponseError):
        return int(exc.status_code or 0)
    return 0


def error_code(exc: BaseException) -> str:
    """The service's error code of an ``HttpResponseError`` ("" if none).

    Queue Storage gives a ``StorageErrorCode`` enum member, whose ``str()`` is its qualified
    name (``StorageErrorCode.POP_RECEIPT_MISMATCH``), not its value: the value is taken.
    """
    if not isinstance(exc, core_exc.HttpResponseError):
        return ""
    code = getattr(exc, "error_code", None) or ""
    return str(getattr(code, "value", code))


def refusal(exc: BaseException) -> Refused | None:
    """The exception as a :class:`Refused` answer, or None if it is an error."""
    if error_code(exc) in STALE_CODES:
        return Refused("stale", error_code(exc))
    if isinstance(exc, cosmos_exc.CosmosHttpResponseError) and status_of(exc) in _ANSWERS:
        return Refused(_ANSWERS[status_of(exc)], _first_line(exc))
    if isinstance(exc, cosmos_exc.CosmosBatchOperationError) and status_of(exc) in _ANSWERS:
        answers = exc.operation_responses or ()
        statuses = tuple(int(answer.get("statusCode") or 0) for answer in answers)
        return Refused(_ANSWERS[status_of(exc)], _first_line(exc), statuses)
    return None


def classify(exc: BaseException) -> type[BackendError]:
    """Which backend error a driver (or socket) exception becomes."""
    if isinstance(exc, core_exc.ClientAuthenticationError):
        return PermanentBackendError
    if isinstance(exc, core_exc.HttpResponseError):
        if isinstance(exc, core_exc.DecodeError) and status_of(exc) in (0, 200):
            return TransientBackendError  # a body cut off mid-response
        status = status_of(exc)
        return TransientBackendError if status in TRANSIENT_STATUSES else PermanentBackendError
    if isinstance(exc, _TRANSIENT_CLASSES):
        return TransientBackendError
    return PermanentBackendError


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate(exc: BaseException, what: str) -> BackendError:
    """``exc`` as a flowcraft backend error whose message names ``what`` (the operation)."""
    kind = classify(exc)
    status = status_of(exc)
    code = error_code(exc)
    where = f" (HTTP {status}{' ' + code if code else ''})" if status else ""
    return kind(f"{what}: {type(exc).__name__}{where}: {_first_line(exc)}")


@contextlib.contextmanager
def edge(what: str) -> Iterator[None]:
    """Translate what the body raises: answers as :class:`Refused`, errors as backend errors."""
    try:
        yield
    except (BackendError, Refused, asyncio.CancelledError):
        raise
    except Exception as exc:
        answer = refusal(exc)
        if answer is not None:
            raise answer from exc
        raise translate(exc, what) from exc
