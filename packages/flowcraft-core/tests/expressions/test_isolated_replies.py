"""An evaluator's answer is read with a restricted unpickler: plain values and datetimes only."""

from __future__ import annotations

import datetime as dt
import io
import pickle

import pytest
from flowcraft.core._expressions._isolated import _Replies


class _Calls:
    """A pickle that would call a function when loaded."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("called",))


def _load(value: object) -> object:
    return _Replies(io.BytesIO(pickle.dumps(value))).load()


def test_plain_values_and_datetimes_are_read() -> None:
    when = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    answer = ("ok", [1, 2.5, "s", None, True, b"b", {"at": when, "for": dt.timedelta(days=3)}])
    assert _load(answer) == answer


def test_anything_that_names_another_class_is_refused() -> None:
    with pytest.raises(pickle.UnpicklingError, match=r"builtins\.print"):
        _load(("ok", _Calls()))
