"""botocore errors become flowcraft errors; refusals become ``Refused`` answers."""

from __future__ import annotations

import inspect

import botocore.exceptions as boto_exc
import pytest
from flowcraft.aws_world._errors import Refused, classify, refusal, translate
from flowcraft.core.errors import PermanentBackendError, TransientBackendError
from flowcraft.core.world import ThrottledError


def _client_error(code: str, status: int = 400, reasons: list[str] | None = None) -> Exception:
    response: dict[str, object] = {
        "Error": {"Code": code, "Message": "the service's message"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    if reasons is not None:
        response["CancellationReasons"] = [{"Code": r} for r in reasons]
    return boto_exc.ClientError(response, "TransactWriteItems")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ThrottlingException", 400, ThrottledError),
        ("ProvisionedThroughputExceededException", 400, ThrottledError),
        ("SlowDown", 503, ThrottledError),
        ("Anything", 429, ThrottledError),
        ("InternalServerError", 500, TransientBackendError),
        ("TransactionConflictException", 400, TransientBackendError),
        ("Mystery", 502, TransientBackendError),
        ("AccessDeniedException", 400, PermanentBackendError),
        ("ResourceNotFoundException", 400, PermanentBackendError),
        ("ValidationException", 400, PermanentBackendError),
    ],
)
def test_client_errors_by_code(code: str, status: int, expected: type[Exception]) -> None:
    exc = _client_error(code, status)
    assert classify(exc) is expected
    translated = translate(exc, "dynamodb put_item")
    assert type(translated) is expected
    assert "dynamodb put_item" in str(translated)
    assert "the service's message" in str(translated)


def test_every_botocore_exception_class_is_classified() -> None:
    classes = [
        cls
        for _, cls in inspect.getmembers(boto_exc, inspect.isclass)
        if issubclass(cls, boto_exc.BotoCoreError)
    ]
    assert classes
    for cls in classes:
        exc = cls.__new__(cls)
        about_the_connection = issubclass(
            cls,
            boto_exc.ConnectionError
            | boto_exc.HTTPClientError
            | boto_exc.ResponseStreamingError
            | boto_exc.IncompleteReadError,
        )
        expected = TransientBackendError if about_the_connection else PermanentBackendError
        assert classify(exc) is expected, cls


def test_connection_errors_are_transient_and_credentials_permanent() -> None:
    assert (
        classify(boto_exc.EndpointConnectionError(endpoint_url="http://x")) is TransientBackendError
    )
    assert classify(ConnectionResetError()) is TransientBackendError
    assert classify(boto_exc.NoCredentialsError()) is PermanentBackendError


def test_refusals_are_answers_with_their_reasons() -> None:
    assert refusal(_client_error("ValidationException")) is None
    failed = refusal(
        _client_error("TransactionCanceledException", reasons=["None", "ConditionalCheckFailed"])
    )
    assert isinstance(failed, Refused)
    assert failed.failed(1)
    assert not failed.failed(0)
    race = refusal(_client_error("TransactionCanceledException", reasons=["TransactionConflict"]))
    assert isinstance(race, Refused)
    assert race.code == "TransactionConflict"
    single = refusal(_client_error("ConditionalCheckFailedException"))
    assert isinstance(single, Refused)
    assert single.code == "ConditionalCheckFailedException"
