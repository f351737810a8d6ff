"""Driver errors translated at the port edge: botocore in, flowcraft errors out.

Every call into boto3 goes through :meth:`flowcraft.sqs._aws.Aws.call`, which re-raises the
driver's exception as ``flowcraft.core.errors.TransientBackendError`` (a retry may help) or
``PermanentBackendError`` (configuration, permissions, bad requests), chained with ``from exc``
and with the service's message kept. Two refusals are answers, not errors, and reach the
caller as :class:`Refused` (the store and the coordination store act on them): a failed
condition (``ConditionalCheckFailedException``) and a cancelled transaction
(``TransactionCanceledException``, with its per-item reasons).

Transient: throttling (``ThrottlingException``, ``ProvisionedThroughputExceededException``,
``RequestLimitExceeded``, ``RequestThrottled``, SQS's ``OverLimit``...), server-side failures
(``InternalServerError``, ``InternalFailure``, ``ServiceUnavailable``, HTTP 5xx), transaction
races (``TransactionInProgressException``, ``TransactionConflictException``), and every
connection-level error (refused, reset, timed out, closed mid-response). botocore's own retry
(``standard`` mode, with backoff and jitter) has already retried these when the error reaches
us. Permanent: everything else (access denied, validation, a missing queue or table, bad
credentials, invalid parameters). Credentials never appear in messages: botocore does not put
them there, and this module adds only the operation's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import botocore.exceptions as boto_exc
from flowcraft.core.errors import BackendError, PermanentBackendError, TransientBackendError

__all__ = ["TRANSIENT_CODES", "Refused", "classify", "translate"]

#: Error codes of SQS and DynamoDB after which a retry may succeed.
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "SlowDown",
        "OverLimit",
        "KmsThrottled",
        "KMS.ThrottlingException",
        "InternalServerError",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "TransactionInProgressException",
        "TransactionConflictException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)

#: Per-item reasons of a cancelled transaction after which the whole may be retried.
_TRANSIENT_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)

#: Refusals the caller handles itself.
_REFUSALS = frozenset({"ConditionalCheckFailedException", "TransactionCanceledException"})

#: botocore exceptions that are about the connection, not the request.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    boto_exc.ConnectionError,
    boto_exc.HTTPClientError,
    boto_exc.ReadTimeoutError,
    boto_exc.ConnectTimeoutError,
    boto_exc.ResponseStreamingError,
    boto_exc.IncompleteReadError,
    OSError,
    TimeoutError,
)


@dataclass(eq=False)
class Refused(Exception):  # noqa: N818 (an answer, not an error)
    """A conditional write or a transaction was refused (not an error: the caller decides).

    ``code`` is ``ConditionalCheckFailedException`` or ``TransactionCanceledException``;
    ``reasons`` are a cancelled transaction's per-item codes in request order (``"None"`` for
    an item that was fine); ``item`` is the current item when the request asked for it;
    ``items`` are a cancelled transaction's current items of the parts that asked for them
    (``ReturnValuesOnConditionCheckFailure``) and failed, in request order (None elsewhere).
    """

    code: str
    reasons: Sequence[str] = ()
    item: Mapping[str, Any] | None = None
    items: Sequence[Mapping[str, Any] | None] = ()

    @property
    def conflict(self) -> bool:
        """The transaction lost a race with another one (nothing failed its condition)."""
        return any(r in _TRANSIENT_REASONS for r in self.reasons) and (
            "ConditionalCheckFailed" not in self.reasons
        )

    def __str__(self) -> str:
        """The code and the per-item reasons."""
        return f"{self.code} {list(self.reasons)}" if self.reasons else self.code

    def failed(self, index: int) -> bool:
        """Item ``index`` of the transaction failed its condition."""
        return index < len(self.reasons) and self.reasons[index] == "ConditionalCheckFailed"

    def current(self, index: int) -> Mapping[str, Any] | None:
        """The current item of part ``index`` of the transaction, if the answer holds it."""
        return self.items[index] if index < len(self.items) else None


def error_code(exc: BaseException) -> str:
    """The service's error code of a ``ClientError`` ("" for other exceptions)."""
    if isinstance(exc, boto_exc.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def classify(exc: BaseException) -> type[BackendError]:
    """Which backend error a botocore (or socket) exception becomes."""
    if isinstance(exc, boto_exc.ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in TRANSIENT_CODES or status >= 500 or status == 429:
            return TransientBackendError
        if code == "TransactionCanceledException":
            return _cancelled(exc)
        return PermanentBackendError
    if isinstance(exc, boto_exc.NoCredentialsError | boto_exc.PartialCredentialsError):
        return PermanentBackendError
    if isinstance(exc, _CONNECTION_ERRORS):
        return TransientBackendError
    return PermanentBackendError


def _cancelled(exc: boto_exc.ClientError) -> type[BackendError]:
    reasons = {r.get("Code", "") for r in exc.response.get("CancellationReasons", [])}
    return TransientBackendError if reasons & _TRANSIENT_REASONS else PermanentBackendError


def refusal(exc: BaseException) -> Refused | None:
    """The exception as a :class:`Refused` answer, or None if it is an error."""
    code = error_code(exc)
    if code not in _REFUSALS:
        return None
    assert isinstance(exc, boto_exc.ClientError)
    answers = exc.response.get("CancellationReasons", [])
    reasons = tuple(str(r.get("Code", "")) for r in answers)
    items = tuple(_mapping(r.get("Item")) for r in answers)
    return Refused(code=code, reasons=reasons, item=_mapping(exc.response.get("Item")), items=items)


def _mapping(item: object) -> Mapping[str, Any] | None:
    return item if isinstance(item, Mapping) else None


def translate(exc: BaseException, what: str) -> BackendError:
    """``exc`` as a flowcraft backend error whose message names ``what`` (the operation)."""
    kind = classify(exc)
    return kind(f"{what}: {type(exc).__name__}: {exc}")
