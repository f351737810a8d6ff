"""Start moto's server with DynamoDB transactions isolated and atomic, as AWS makes them.

Two defects of moto 5.2 matter to a store built on ``TransactWriteItems``:

* Its transactions are made atomic by deep-copying every table they touch and restoring that
  copy when one condition fails. Requests run on threads, so a failed transaction also undid
  the writes other requests made meanwhile (seen here: a refused compare-and-set wiping the
  winner's records); and every transaction costs a copy of whole tables, which grows with
  the table.
* Every model object it ever creates (items, the deep copies too) is appended to a class-level
  list for ``/moto-api/reset``, so memory only grows (23 GB after twenty minutes of tests).

This launcher serialises DynamoDB requests (one lock around moto's DynamoDB handler), checks
every condition of a transaction before writing anything (so a refused one writes nothing and
copies nothing), and stops the instance tracking (``/moto-api/reset`` then only resets
state, which nothing here uses). SQS and S3 requests stay concurrent (SQS long polls really
wait). Run it with moto's own interpreter; the arguments are ``moto_server``'s.
"""

from __future__ import annotations

import copy
import functools
import threading
from typing import Any

from moto.core.common_models import BaseModel
from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_LOCK = threading.RLock()
_call_action = DynamoHandler.call_action


@functools.wraps(_call_action)
def _isolated(self: DynamoHandler) -> Any:  # noqa: ANN401 (moto's response tuple)
    with _LOCK:
        return _call_action(self)


def _untracked(cls: type, *args: object, **kwargs: object) -> Any:  # noqa: ANN401
    return object.__new__(cls)


def _key_of(backend: DynamoDBBackend, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    table = backend.get_table(op["TableName"])
    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = op["Item"][table.range_key_attr]
    return key


def _check(backend: DynamoDBBackend, items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
    """Each part's ``(code, message, item)`` with nothing written; ``(None, None, None)``: fine."""
    seen: set[tuple[str, str]] = set()
    errors: list[tuple[Any, Any, Any]] = []
    for part in items:
        if len(part) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(part.items()))
        key = _key_of(backend, op_type, op)
        target = (str(op["TableName"]), str(dict(sorted(key.items()))))
        if target in seen:
            raise MultipleTransactionsException
        seen.add(target)
        current = backend.get_item(op["TableName"], key)
        condition = op.get("ConditionExpression")
        if condition is None or get_filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        ).expr(current):
            errors.append((None, None, None))
            continue
        old = None
        if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
            old = current.to_json()["Attributes"]
        errors.append(("ConditionalCheckFailed", "The conditional request failed", old))
    return errors


def _transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    if len(transact_items) > 100:
        raise TooManyTransactionsException
    errors = _check(self, transact_items)
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)
    before = []
    for part in transact_items:  # what to restore if a write fails (a malformed update)
        op_type, op = next(iter(part.items()))
        key = _key_of(self, op_type, op)
        before.append((op["TableName"], key, copy.deepcopy(self.get_item(op["TableName"], key))))
    try:
        for part in transact_items:
            _write(self, *next(iter(part.items())))
    except Exception:
        for table, key, item in before:
            self.delete_item(table, key)
            if item is not None:
                self.put_item(table, item.to_json()["Attributes"])
        raise


def _write(backend: DynamoDBBackend, op_type: str, op: dict[str, Any]) -> None:
    names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
    if op_type == "Put":
        backend.put_item(op["TableName"], op["Item"], expression_attribute_names=names,
                         expression_attribute_values=values)  # fmt: skip
    elif op_type == "Delete":
        backend.delete_item(op["TableName"], op["Key"])
    elif op_type == "Update":
        backend.update_item(op["TableName"], op["Key"], update_expression=op["UpdateExpression"],
                            expression_attribute_names=names,
                            expression_attribute_values=values)  # fmt: skip


assert ConditionalCheckFailed is not None  # the code moto reports, named above by its string
DynamoHandler.call_action = _isolated
BaseModel.__new__ = _untracked
DynamoDBBackend.transact_write_items = _transact_write_items

if __name__ == "__main__":
    main()
