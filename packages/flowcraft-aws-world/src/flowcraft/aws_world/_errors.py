"""botocore errors translated at the World's edge.

Class tree of what callers see (all from ``flowcraft.core``)::

    FlowcraftError
    ├── AwsWorldConfigError(ValueError)  a setting out of range (every problem named)
    ├── BackendError
    │   ├── TransientBackendError   connection errors, 5xx, transaction races (retry helps)
    │   └── PermanentBackendError   access denied, validation, a missing table/queue/bucket
    └── WorldError
        └── ThrottledError (429)    throttling codes, once botocore's own retries gave up

Two refusals are answers, not errors, and reach the World's code as :class:`Refused`: a
failed condition (``ConditionalCheckFailedException``) and a cancelled transaction
(``TransactionCanceledException`` with its per-item reasons). Messages keep the service's
text and add the operation's name; credentials never appear (botocore does not put them in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import botocore.exceptions as boto_exc
from flowcraft.core.errors import (
    BackendError,
    FlowcraftError,
    PermanentBackendError,
    TransientBackendError,
)
from flowcraft.core.world import ThrottledError

#: Codes after which the service asks the caller to slow down (429 to World callers).
THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "SlowDown",
        "OverLimit",
    }
)

#: Codes after which a retry may succeed.
TRANSIENT_CODES = frozenset(
    {
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

_REFUSALS = frozenset({"ConditionalCheckFailedException", "TransactionCanceledException"})
_RACE_REASONS = frozenset({"TransactionConflict", "ThrottlingError"})

#: botocore exceptions about the connection rather than the request.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    boto_exc.ConnectionError,
    boto_exc.HTTPClientError,
    boto_exc.ReadTimeoutError,
    boto_exc.ConnectTimeoutError,
    boto_exc.ResponseStreamingError,
    boto_exc.IncompleteReadError,
    OSError,
    TimeoutError,
)


class AwsWorldConfigError(FlowcraftError, ValueError):
    """The World's configuration is invalid; the message names every bad setting."""


@dataclass(eq=False)
class Refused(Exception):  # noqa: N818 (an answer, not an error)
    """A conditional write or a transaction was refused (the caller decides what it means).

    Attributes:
        code: ``ConditionalCheckFailedException`` or ``TransactionCanceledException``.
        reasons: A cancelled transaction's per-item codes, in request order.
    """

    code: str
    reasons: Sequence[str] = ()

    def failed(self, index: int) -> bool:
        """Item ``index`` of the transaction failed its condition."""
        return index < len(self.reasons) and self.reasons[index] == "ConditionalCheckFailed"

    def __str__(self) -> str:
        """The code and the reasons."""
        return f"{self.code} {list(self.reasons)}"


def error_code(exc: BaseException) -> str:
    """The service's error code of a ``ClientError`` (``""`` otherwise)."""
    if isinstance(exc, boto_exc.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def refusal(exc: BaseException) -> Refused | None:
    """``exc`` as a :class:`Refused` answer, or ``None`` if it is an error."""
    code = error_code(exc)
    if code not in _REFUSALS:
        return None
    assert isinstance(exc, boto_exc.ClientError)
    reasons = tuple(str(r.get("Code", "")) for r in exc.response.get("CancellationReasons", []))
    if set(reasons) & _RACE_REASONS and "ConditionalCheckFailed" not in reasons:
        return Refused(code="TransactionConflict", reasons=reasons)
    return Refused(code=code, reasons=reasons)


def classify(exc: BaseException) -> type[BackendError] | type[ThrottledError]:
    """Which error a botocore (or socket) exception becomes."""
    if isinstance(exc, boto_exc.ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in THROTTLING_CODES or status == 429:
            return ThrottledError
        if code in TRANSIENT_CODES or status >= 500:
            return TransientBackendError
        return PermanentBackendError
    if isinstance(exc, boto_exc.NoCredentialsError | boto_exc.PartialCredentialsError):
        return PermanentBackendError
    if isinstance(exc, CONNECTION_ERRORS):
        return TransientBackendError
    return PermanentBackendError


def translate(exc: BaseException, what: str) -> Exception:
    """``exc`` as a flowcraft error whose message names ``what`` (the operation)."""
    kind = classify(exc)
    message = f"{what}: {type(exc).__name__}: {exc}"
    if kind is ThrottledError:
        return ThrottledError(message)
    return kind(message)
