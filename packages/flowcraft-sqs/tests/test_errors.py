"""Driver errors are translated completely: every botocore exception class maps somewhere."""

from __future__ import annotations

import inspect
import re
from typing import Any

import botocore.exceptions as boto_exc
import pytest
from flowcraft.core.errors import BackendError, PermanentBackendError, TransientBackendError
from flowcraft.sqs._errors import TRANSIENT_CODES, classify, refusal, translate


def botocore_classes() -> list[type[BaseException]]:
    return sorted(
        (
            cls
            for _, cls in inspect.getmembers(boto_exc, inspect.isclass)
            if issubclass(cls, BaseException) and cls.__module__ == boto_exc.__name__
        ),
        key=lambda cls: cls.__name__,
    )


def instantiate(cls: type[BaseException]) -> BaseException:
    """An instance of a botocore exception (their constructors take keyword fields)."""
    if issubclass(cls, boto_exc.ClientError):
        return cls({"Error": {"Code": "Boom", "Message": "boom"}}, "Op")
    try:
        return cls()
    except (TypeError, KeyError):
        pass
    fields: dict[str, Any] = {}
    fmt = getattr(cls, "fmt", "")
    for name in re.findall(r"{(\w+)}", fmt):
        fields[name] = "x"
    try:
        return cls(**fields)
    except TypeError:
        pass
    try:
        return cls("boom")
    except TypeError:  # WaiterError(name, reason, last_response)
        return cls("boom", "reason", {})


def client_error(code: str, status: int = 400, **extra: object) -> boto_exc.ClientError:
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status},
        **extra,
    }
    return boto_exc.ClientError(response, "Op")  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", botocore_classes(), ids=lambda cls: cls.__name__)
def test_every_botocore_exception_is_translated(cls: type[BaseException]) -> None:
    exc = instantiate(cls)
    translated = translate(exc, "op")
    assert isinstance(translated, BackendError)
    assert str(translated).startswith("op: ")


@pytest.mark.parametrize(
    "exc",
    [
        boto_exc.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        boto_exc.ConnectTimeoutError(endpoint_url="http://x"),
        boto_exc.ReadTimeoutError(endpoint_url="http://x"),
        boto_exc.ConnectionClosedError(endpoint_url="http://x"),
        ConnectionResetError("reset"),
    ],
    ids=type,
)
def test_connection_errors_are_transient(exc: BaseException) -> None:
    assert classify(exc) is TransientBackendError


@pytest.mark.parametrize("code", sorted(TRANSIENT_CODES))
def test_throttling_and_server_codes_are_transient(code: str) -> None:
    assert classify(client_error(code)) is TransientBackendError


@pytest.mark.parametrize(
    "code",
    ["AccessDeniedException", "ValidationException", "ResourceNotFoundException",
     "AWS.SimpleQueueService.NonExistentQueue", "InvalidClientTokenId",
     "UnrecognizedClientException"],
)  # fmt: skip
def test_configuration_and_request_errors_are_permanent(code: str) -> None:
    assert classify(client_error(code)) is PermanentBackendError


def test_any_5xx_or_429_is_transient_whatever_its_code() -> None:
    assert classify(client_error("Whatever", 503)) is TransientBackendError
    assert classify(client_error("Whatever", 429)) is TransientBackendError


def test_credentials_missing_is_permanent() -> None:
    assert classify(boto_exc.NoCredentialsError()) is PermanentBackendError


def test_refusals_are_answers_with_their_reasons() -> None:
    reasons = [{"Code": "None"}, {"Code": "ConditionalCheckFailed", "Item": {"a": {"S": "b"}}}]
    refused = refusal(client_error("TransactionCanceledException", CancellationReasons=reasons))
    assert refused is not None
    assert refused.reasons == ("None", "ConditionalCheckFailed")
    assert (refused.failed(0), refused.failed(1), refused.failed(2)) == (False, True, False)
    assert not refused.conflict
    conflict = refusal(
        client_error("TransactionCanceledException",
                     CancellationReasons=[{"Code": "TransactionConflict"}, {"Code": "None"}])
    )  # fmt: skip
    assert conflict is not None
    assert conflict.conflict
    single = refusal(client_error("ConditionalCheckFailedException", Item={"k": {"S": "v"}}))
    assert single is not None
    assert single.item == {"k": {"S": "v"}}
    assert refusal(client_error("ValidationException")) is None


def test_a_cancelled_transaction_is_transient_only_for_races_and_throttling() -> None:
    def cancelled(*codes: str) -> boto_exc.ClientError:
        return client_error(
            "TransactionCanceledException", CancellationReasons=[{"Code": c} for c in codes]
        )

    assert classify(cancelled("None", "TransactionConflict")) is TransientBackendError
    assert classify(cancelled("ThrottlingError")) is TransientBackendError
    assert classify(cancelled("ValidationError")) is PermanentBackendError
