"""Every exception class of the drivers is translated at the edge (``_errors``)."""

from __future__ import annotations

import inspect
from typing import Any, cast

import aiohttp
import pytest
from azure.core import exceptions as core_exc
from azure.cosmos import exceptions as cosmos_exc
from azure.storage.queue import StorageErrorCode
from flowcraft.azure._errors import Refused, classify, edge, refusal
from flowcraft.core.errors import PermanentBackendError, TransientBackendError


def _classes(module: object) -> list[type[BaseException]]:
    return [
        cls for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == getattr(module, "__name__", "")
    ]  # fmt: skip


def _instance(cls: type[BaseException]) -> BaseException:
    if issubclass(cls, cosmos_exc.CosmosHttpResponseError):
        return cls(status_code=400, message="bad")
    if cls is cosmos_exc.CosmosBatchOperationError:
        return cls(  # type: ignore[no-untyped-call]
            error_index=0, headers={}, status_code=400, message="bad", operation_responses=[]
        )
    if cls is core_exc.ODataV4Error:
        return core_exc.HttpResponseError(message="bad")
    if cls in (core_exc.StreamConsumedError, core_exc.StreamClosedError,
               core_exc.ResponseNotReadError):  # fmt: skip
        return cls(cast(Any, _Response()))
    return cls("boom")


class _Response:
    """What the stream errors read from their response."""

    request = "GET /"


@pytest.mark.parametrize("cls", _classes(core_exc) + _classes(cosmos_exc), ids=lambda c: c.__name__)
def test_every_driver_exception_class_is_mapped(cls: type[BaseException]) -> None:
    exc = _instance(cls)
    assert classify(exc) in (TransientBackendError, PermanentBackendError)
    with pytest.raises((TransientBackendError, PermanentBackendError, Refused)), edge("op"):
        raise exc


def _http(status: int, code: str | None = None) -> core_exc.HttpResponseError:
    exc = core_exc.HttpResponseError(message=f"status {status}")
    exc.status_code = status
    setattr(exc, "error_code", code)  # noqa: B010 (not declared on the class)
    return exc


@pytest.mark.parametrize("status", [408, 429, 449, 500, 502, 503, 504])
def test_throttling_timeouts_and_server_errors_are_transient(status: int) -> None:
    assert classify(_http(status)) is TransientBackendError


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413])
def test_client_errors_are_permanent(status: int) -> None:
    assert classify(_http(status)) is PermanentBackendError


@pytest.mark.parametrize(
    "exc",
    [
        core_exc.ServiceRequestError("refused"),
        core_exc.ServiceResponseError("reset"),
        aiohttp.ClientConnectionError("gone"),
        ConnectionResetError("reset"),
        TimeoutError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_connection_errors_are_transient(exc: BaseException) -> None:
    assert classify(exc) is TransientBackendError


@pytest.mark.parametrize(("status", "what"), [(404, "missing"), (409, "exists"), (412, "changed")])
def test_cosmos_conditional_answers_are_refusals(status: int, what: str) -> None:
    exc = cosmos_exc.CosmosHttpResponseError(status_code=status, message="m")  # type: ignore[no-untyped-call]
    answer = refusal(exc)
    assert answer is not None
    assert answer.what == what


@pytest.mark.parametrize("code", ["MessageNotFound", "PopReceiptMismatch"])
def test_stale_pop_receipts_are_refusals(code: str) -> None:
    answer = refusal(_http(404 if code == "MessageNotFound" else 400, code))
    assert answer is not None
    assert answer.what == "stale"


@pytest.mark.parametrize(
    "code", [StorageErrorCode.MESSAGE_NOT_FOUND, StorageErrorCode.POP_RECEIPT_MISMATCH]
)
def test_stale_pop_receipts_given_as_the_sdk_enum_are_refusals(code: StorageErrorCode) -> None:
    """The SDK sets ``error_code`` to an enum member whose ``str()`` is not its value."""
    answer = refusal(_http(400, cast(Any, code)))
    assert answer is not None
    assert (answer.what, answer.detail) == ("stale", code.value)


def test_a_missing_queue_is_an_error_not_a_refusal() -> None:
    with pytest.raises(PermanentBackendError, match="QueueNotFound"), edge("send"):
        raise _http(404, "QueueNotFound")
