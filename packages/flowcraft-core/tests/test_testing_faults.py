"""``flowcraft.core.testing.faults``: pure parts, and I/O parts on loopback and in memory."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from flowcraft.core import RunResult, RunStatus
from flowcraft.core.ports import Message, StoredState
from flowcraft.core.testing import faults
from flowcraft.core.testing.faults import (
    JOURNAL_ENV,
    Journal,
    TcpProxy,
    WorkerProcesses,
    chain,
    check_run,
    describe_state,
    note,
    parse_journal,
    surfaced_errors,
    until,
    worker_command,
)
from flowcraft.core.testing.harness import Harness
from flowcraft.core.testing.memory import MemoryBackendFactory
from flowcraft.core.testing.nodes import registry as suite_registry

_T = TypeVar("_T")


def test_the_public_names() -> None:
    assert sorted(faults.__all__) == sorted([
        "JOURNAL_ENV", "REGISTRY", "REGISTRY_SPEC", "Describe", "Journal", "TcpProxy",
        "WorkerProcesses", "chain", "check_run", "describe_state", "exited", "note",
        "parse_journal", "process_session", "results", "step", "surfaced_errors", "until",
        "worker_command",
    ])  # fmt: skip
    assert faults.REGISTRY["fault.step"] is faults.step
    assert set(faults.REGISTRY) == {*suite_registry(), "fault.step"}


# ------------------------------------------------------------------ the journal


def test_parse_journal_reads_whole_lines_only() -> None:
    text = '{"a": 1}\n\n{"b": 2}\n{"c": 3'  # the last line is still being written
    assert parse_journal(text) == [{"a": 1}, {"b": 2}]
    assert parse_journal("") == []


def test_parse_journal_refuses_a_line_that_is_no_object() -> None:
    with pytest.raises(ValueError, match="journal line 2 is not a JSON object"):
        parse_journal('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match="Expecting"):
        parse_journal("{not json\n")


def test_note_appends_lines_with_pid_and_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    assert journal.entries() == []  # no file yet
    monkeypatch.setenv(JOURNAL_ENV, str(journal.path))
    note({"run": "r1", "node": "s0", "ticket": "t1", "phase": "started"})
    note({"run": "r1", "node": "s0", "ticket": "t1", "phase": "finished"})
    note({"run": "r2", "node": "s0", "ticket": "t2", "phase": "started"})
    note({"throttled": "ReceiveMessage"})
    entries = journal.entries()
    assert len(entries) == 4
    assert all(isinstance(e["pid"], int) and isinstance(e["at"], float) for e in entries)
    assert [e["ticket"] for e in journal.steps("r1", "s0")] == ["t1"]
    assert [e["ticket"] for e in journal.steps("r1", "s0", "finished")] == ["t1"]
    assert journal.steps("r1", "s1") == []
    assert journal.finished() == 1


def test_note_without_a_journal_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(JOURNAL_ENV, raising=False)
    with pytest.raises(KeyError, match=JOURNAL_ENV):
        note({"x": 1})


# ------------------------------------------------------------------ chain and check_run


def test_chain_is_a_line_of_fault_steps() -> None:
    blueprint = chain("c", 0.1, 0.2, 0.3)
    assert [(n.id, n.uses, n.params["seconds"]) for n in blueprint.nodes] == [
        ("s0", "fault.step", 0.1), ("s1", "fault.step", 0.2), ("s2", "fault.step", 0.3),
    ]  # fmt: skip
    assert [(e.source, e.target) for e in blueprint.edges] == [("s0", "s1"), ("s1", "s2")]


def _fabricated(tmp_path: Path) -> tuple[RunResult, Journal]:
    """A run of ``chain(c, 0, 0)`` as it should look, and its journal (s0 ran twice)."""
    lines = [
        {"run": "r", "node": "s0", "ticket": "s0/1/1/aa", "phase": "started"},  # died
        {"run": "r", "node": "s0", "ticket": "s0/2/2/bb", "phase": "started"},
        {"run": "r", "node": "s0", "ticket": "s0/2/2/bb", "phase": "finished"},
        {"run": "r", "node": "s1", "ticket": "s1/2/1/cc", "phase": "started"},
        {"run": "r", "node": "s1", "ticket": "s1/2/1/cc", "phase": "finished"},
    ]
    path = tmp_path / "journal.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    s0 = {"ticket": "s0/2/2/bb", "after": "in"}
    s1 = {"ticket": "s1/2/1/cc", "after": "s0/2/2/bb"}
    result = RunResult(run_id="r", status=RunStatus.COMPLETED, output=s1,
                       context={"t_s0": "s0/2/2/bb", "t_s1": "s1/2/1/cc"},
                       outputs={"s0": s0, "s1": s1})  # fmt: skip
    return result, Journal(path)


def test_check_run_passes_a_run_committed_once(tmp_path: Path) -> None:
    result, journal = _fabricated(tmp_path)
    check_run(result, chain("c", 0, 0), journal, "in")


_CHANGES: list[tuple[Callable[[RunResult], RunResult], str]] = [
    # s0's output from an execution that never finished
    (lambda r: replace(r, outputs={**r.outputs, "s0": {**r.outputs["s0"], "ticket": "s0/1/1/aa"}}),
     "s0"),
    # s1 saw another execution of s0 than the committed one
    (lambda r: replace(r, outputs={**r.outputs, "s1": {**r.outputs["s1"], "after": "s0/1/1/aa"}}),
     "s1"),
    (lambda r: replace(r, context={**r.context, "t_s1": "s1/9/9/zz"}), "t_s1"),  # another write
    (lambda r: replace(r, outputs={"s0": r.outputs["s0"]}), "s1"),  # a node missing
    (lambda r: replace(r, output=None), "s1"),  # not the last node's output
    (lambda r: replace(r, status=RunStatus.FAILED), "FAILED"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "says"), _CHANGES)
def test_check_run_fails_on_any_sign_of_a_second_commit(
    tmp_path: Path, change: Callable[[RunResult], RunResult], says: str
) -> None:
    result, journal = _fabricated(tmp_path)
    with pytest.raises(AssertionError, match=says):
        check_run(change(result), chain("c", 0, 0), journal, "in")


def test_check_run_wants_the_run_input_first(tmp_path: Path) -> None:
    result, journal = _fabricated(tmp_path)
    with pytest.raises(AssertionError, match="s0"):
        check_run(result, chain("c", 0, 0), journal, "other input")


# ------------------------------------------------------------------ diagnostics


def test_describe_state_names_each_node_and_the_outbox() -> None:
    state = StoredState(
        version=7,
        header={},
        records={
            '["n","","s0"]': {"status": "completed", "attempt": 1},
            '["n","","s1"]': {"status": "running", "attempt": 2},
            '["x","other"]': {"status": "ignored"},
        },
        context={},
        outbox=(Message(id="m1", body=b""),),
    )
    assert describe_state("r", state) == (
        "run r: v7, nodes {'s0': ('completed', 1), 's1': ('running', 2)}, outbox ['m1']"
    )
    assert describe_state("r", None) == "run r: no stored state"


def test_surfaced_errors_counts_backend_errors_by_kind_operation_and_cause() -> None:
    log = (
        "flowcraft.core.errors.TransientBackendError: dynamodb update_item: "
        "EndpointConnectionError: Could not connect\n"
        "flowcraft.core.errors.TransientBackendError: dynamodb update_item: "
        "EndpointConnectionError: again\n"
        "flowcraft.core.errors.PermanentBackendError: receive: AccessDenied: no\n"
        "ValueError: not a backend error\n"
    )
    assert surfaced_errors(log) == {
        "TransientBackendError: dynamodb update_item: EndpointConnectionError": 2,
        "PermanentBackendError: receive: AccessDenied": 1,
    }


def test_worker_command_passes_every_option(tmp_path: Path) -> None:
    command = worker_command("sqs", {"endpoint_url": "http://x", "visibility_timeout": 2},
                             namespace="ns", registry="m:R", blueprint=tmp_path / "b.yaml",
                             lease=2.0)  # fmt: skip
    assert command == [
        sys.executable, "-m", "flowcraft.core", "worker", "--backend", "sqs",
        "--option", "endpoint_url=http://x", "--option", "visibility_timeout=2",
        "--namespace", "ns", "--registry", "m:R", "--blueprint", str(tmp_path / "b.yaml"),
        "--lease", "2.0",
    ]  # fmt: skip


# ------------------------------------------------------------------ waiting


async def test_until_awaits_async_predicates_and_times_out() -> None:
    calls = []

    async def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    await until("the third call", 5, third_time)
    assert len(calls) == 3
    with pytest.raises(AssertionError, match="timed out waiting for: never"):
        await until("never", 0.1, lambda: False)


async def test_results_in_order_or_a_diagnosis_of_the_unfinished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    monkeypatch.setenv(JOURNAL_ENV, str(journal.path))  # fault.step runs in this process here
    blueprint = chain("c", 0, 0)
    harness = Harness(MemoryBackendFactory())
    async with harness.session(blueprint, workers=0, registry=faults.REGISTRY) as s:
        handles = [await s.start("c", i) for i in range(2)]

        async def queues() -> list[str]:
            return ["jobs queue: 2 messages"]

        with pytest.raises(AssertionError) as failed:
            await faults.results(handles, 0.2, store=s.backend.store, describe=queues)
        lines = str(failed.value).splitlines()
        assert lines[0] == "2 of 2 runs unfinished after 0.2 s"
        assert lines[1].startswith(f"run {handles[0].run_id}: v")
        assert lines[2].startswith(f"run {handles[1].run_id}: v")
        assert lines[3:] == ["jobs queue: 2 messages"]
        await s.start_workers(1)
        done = await faults.results(handles, 10)
    assert [r.run_id for r in done] == [h.run_id for h in handles]
    for first, result in enumerate(done):
        check_run(result, blueprint, journal, first)


# ------------------------------------------------------------------ the proxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def test_the_proxy_passes_bytes_cuts_everything_and_resumes() -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with TcpProxy.to(f"http://127.0.0.1:{port}") as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            assert await proxy.cut() == 1
            assert await asyncio.wait_for(reader.read(), 5) == b""  # gone, no data
            with pytest.raises(ConnectionRefusedError):  # refused while cut
                await asyncio.open_connection("127.0.0.1", proxy.port)
            await proxy.resume()
            reader2, writer2 = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer2.write(b"pong")
            assert await reader2.readexactly(4) == b"pong"
            assert (proxy.accepted, proxy.aborted) == (2, 1)
            assert proxy.url == f"http://127.0.0.1:{proxy.port}"
            writer.close()
            writer2.close()
    finally:
        server.close()
        await server.wait_closed()


@contextlib.contextmanager
def _upstream_that_never_answers() -> Iterator[int]:
    """A port whose connects hang: its backlog of one is taken and it never accepts (Linux
    drops the SYNs of a full backlog, so a connect waits for good)."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        yield port


async def _tasks_of_the_proxy() -> set[asyncio.Task[object]]:
    await asyncio.sleep(0)
    return {t for t in asyncio.all_tasks() if "_accept" in repr(t.get_coro())}


async def test_a_cut_ends_connections_still_connecting_upstream() -> None:
    with _upstream_that_never_answers() as port:
        async with TcpProxy.to(f"http://127.0.0.1:{port}") as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            await asyncio.sleep(0.2)  # the proxy accepted and is connecting upstream
            assert len(await _tasks_of_the_proxy()) == 1
            assert await proxy.cut() == 0  # none was relaying yet
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert await _tasks_of_the_proxy() == set()
            writer.close()


async def test_closing_leaves_no_task_and_no_transport_open() -> None:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with _upstream_that_never_answers() as hung:
            proxy = TcpProxy.to(f"http://127.0.0.1:{port}")
            stuck = TcpProxy.to(f"http://127.0.0.1:{hung}")
            await proxy.start()
            await stuck.start()
            clients = [await asyncio.open_connection("127.0.0.1", p.port)
                       for p in (proxy, proxy, stuck)]  # fmt: skip
            await asyncio.sleep(0.2)
            assert len(await _tasks_of_the_proxy()) == 3
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                await proxy.close()
                await stuck.close()
                assert await _tasks_of_the_proxy() == set()
                for reader, writer in clients:
                    assert await asyncio.wait_for(reader.read(), 5) == b""
                    writer.close()
                gc.collect()
            assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    finally:
        server.close()
        await server.wait_closed()


def test_cuts_lose_no_connection_accepted_just_before_them() -> None:
    """Clients connecting all the time while the proxy, on a loop of its own thread (as the
    AWS World's test runs it), is cut and resumed 100 times: no accepted connection is left
    without its transport (asyncio reports "Error on transport creation" and drops the socket
    unclosed when its server closes between the accept and the transport)."""
    loop = asyncio.new_event_loop()
    failures: list[str] = []
    loop.set_exception_handler(lambda _, context: failures.append(str(context["message"])))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def call(work: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(work, loop).result(10)

    server = call(asyncio.start_server(_echo, "127.0.0.1", 0))
    proxy = TcpProxy.to(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    call(proxy.start())
    stop = threading.Event()

    def connect_all_the_time() -> None:
        while not stop.is_set():
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", proxy.port), timeout=1),
            ):
                pass

    clients = [threading.Thread(target=connect_all_the_time) for _ in range(4)]
    for client in clients:
        client.start()
    try:
        for _ in range(100):
            time.sleep(0.003)
            call(proxy.cut())
            time.sleep(0.001)
            call(proxy.resume())
    finally:
        stop.set()
        for client in clients:
            client.join()
        call(proxy.close())
        server.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    assert proxy.connections > 0
    assert failures == []


# ------------------------------------------------------------------ worker processes


async def test_worker_processes_are_killed_and_stopped_with_their_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workers = WorkerProcesses(backend="memory", options={}, namespace="ns",
                              blueprint=tmp_path / "b.yaml", directory=tmp_path, lease=1.0,
                              journal=Journal(tmp_path / "journal.jsonl"))  # fmt: skip
    script = (
        "import os, time; print('up', os.environ['FLOWCRAFT_FAULT_JOURNAL'], flush=True); "
        "time.sleep(60)"
    )
    first = workers.start([sys.executable, "-c", script])
    second = workers.start([sys.executable, "-c", script])
    await until("both logged", 20, lambda: workers.log_lines("up ") == 2)
    assert workers.log_lines(str(tmp_path / "journal.jsonl")) == 2
    await workers.kill(first)
    await workers.stop()
    assert second.returncode == -signal.SIGTERM
    printed = capsys.readouterr().out
    assert "---- worker0.log" in printed
    assert "---- worker1.log" in printed
    assert workers.surfaced() == {}
