"""NotifyingRunStore without a server: forwarding, transparency, errors of an unreachable Redis.

Its pub/sub behaviour (wakes across processes, refused saves, broken subscriptions) is in
tests-integration/redis/test_redis_notify.py, against the real Redis.
"""

from __future__ import annotations

import inspect
import logging
import socket
from typing import Any

import pytest
from flowcraft.core.errors import TransientBackendError
from flowcraft.core.ports import RunNotifier, RunRecord, RunStarter, RunStore
from flowcraft.core.redis import NotifyingRunStore


def _closed_port_url() -> str:
    """A Redis URL nobody listens on (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


class _Recorder:
    """A run store that records the calls it gets and answers ``save_state`` with ``saved``."""

    def __init__(self, saved: bool = True) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.saved = saved
        self.closed = False
        self.container = "the inner store's own attribute"

    def __getattr__(self, name: str) -> Any:
        if name not in _port_methods():
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            if name == "remove_outbox":
                return None
            return self.saved if name == "save_state" else f"{name} result"

        return call

    async def close(self) -> None:
        self.closed = True


def _port_methods() -> list[str]:
    return [name for name, _ in inspect.getmembers(RunStore, inspect.isfunction)
            if not name.startswith("_")]  # fmt: skip


def _arguments(name: str) -> dict[str, Any]:
    parameters = inspect.signature(getattr(RunStore, name)).parameters
    return {p: f"<{p}>" for p in list(parameters)[1:] if parameters[p].default is inspect._empty}


@pytest.mark.parametrize("name", _port_methods())
async def test_every_run_store_method_is_forwarded(name: str) -> None:
    inner = _Recorder()
    store = NotifyingRunStore(inner, _closed_port_url(), prefix="ns")
    arguments = _arguments(name)
    if name == "save_state":
        arguments["status"] = "running"  # no notification: nothing reaches Redis
    result = await getattr(store, name)(**arguments)
    assert inner.calls[0][0] == name
    passed = {**dict(zip(_arguments(name), inner.calls[0][1], strict=False)), **inner.calls[0][2]}
    assert {k: passed[k] for k in arguments} == arguments
    expected = {"save_state": True, "remove_outbox": None}.get(name, f"{name} result")
    assert result == expected
    assert name in NotifyingRunStore.__dict__, "forwarded only through __getattr__"
    await store.close()


async def test_the_wrapper_is_a_notifier_and_reaches_the_inner_store() -> None:
    inner = _Recorder()
    store = NotifyingRunStore(inner, _closed_port_url(), prefix="ns")
    assert isinstance(store, RunNotifier)
    assert store.inner is inner
    assert store.container == "the inner store's own attribute"
    assert store.channel == "ns:runs-ended"
    await store.close()
    assert inner.closed
    with pytest.raises(AttributeError):
        store.missing_attribute  # noqa: B018


async def test_a_failed_publish_is_logged_and_the_save_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = NotifyingRunStore(_Recorder(), _closed_port_url(), prefix="ns")
    with caplog.at_level(logging.WARNING, logger="flowcraft.redis"):
        assert await store.save_state("r1", expected_version=1, header={}, records={},
                                      context_writes={}, outbox=(), status="completed")  # fmt: skip
    assert "run r1 ended, but its notification was not sent" in caplog.text
    assert "publish ns:runs-ended" in caplog.text
    await store.close()


@pytest.mark.parametrize(("saved", "status"), [(False, "completed"), (True, "running")])
async def test_refused_and_unfinished_saves_publish_nothing(
    caplog: pytest.LogCaptureFixture, saved: bool, status: str
) -> None:
    store = NotifyingRunStore(_Recorder(saved), _closed_port_url(), prefix="ns")
    with caplog.at_level(logging.WARNING, logger="flowcraft.redis"):
        result = await store.save_state("r1", expected_version=1, header={}, records={},
                                        context_writes={}, outbox=(), status=status)  # fmt: skip
    assert result is saved
    assert caplog.text == "", "a publish was attempted"
    await store.close()


async def test_a_watch_on_an_unreachable_redis_raises_a_transient_error() -> None:
    store = NotifyingRunStore(_Recorder(), _closed_port_url(), prefix="ns")
    with pytest.raises(TransientBackendError, match="subscribe ns:runs-ended"):
        async with store.watch("r1"):
            pass
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        async with store.watch("r1"):
            pass


def test_an_empty_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="prefix"):
        NotifyingRunStore(_Recorder(), _closed_port_url(), prefix="")


class _Starter(_Recorder):
    """A recording store that is also a ``RunStarter`` (it creates when ``new``)."""

    def __init__(self, new: bool = True) -> None:
        super().__init__()
        self.new = new

    async def create_started_run(
        self, record: RunRecord, *, status: str, **state: Any
    ) -> tuple[RunRecord, bool]:
        self.calls.append(("create_started_run", (record,), {"status": status, **state}))
        return record, self.new


def _started(store: Any, status: str) -> Any:
    record = RunRecord(run_id="r1", blueprint_id="b", blueprint_version="1", blueprint_digest="d")
    return store.create_started_run(record, header={}, records={}, context={}, outbox=(),
                                    status=status)  # fmt: skip


async def test_the_wrapper_is_a_starter_only_where_its_store_is() -> None:
    plain = NotifyingRunStore(_Recorder(), _closed_port_url(), prefix="ns")
    assert not isinstance(plain, RunStarter)
    inner = _Starter()
    starting = NotifyingRunStore(inner, _closed_port_url(), prefix="ns")
    assert isinstance(starting, RunStarter)
    record, new = await _started(starting, "running")
    assert (record.run_id, new) == ("r1", True)
    assert inner.calls[0][0] == "create_started_run"
    assert inner.calls[0][2]["header"] == {}
    await plain.close()
    await starting.close()


@pytest.mark.parametrize(("new", "status", "published"),
                         [(True, "completed", True), (False, "completed", False),
                          (True, "running", False)])  # fmt: skip
async def test_a_run_created_terminal_publishes(
    caplog: pytest.LogCaptureFixture, new: bool, status: str, published: bool
) -> None:
    store = NotifyingRunStore(_Starter(new), _closed_port_url(), prefix="ns")
    with caplog.at_level(logging.WARNING, logger="flowcraft.redis"):
        assert (await _started(store, status))[1] is new
    assert ("run r1 ended, but its notification was not sent" in caplog.text) is published
    await store.close()
