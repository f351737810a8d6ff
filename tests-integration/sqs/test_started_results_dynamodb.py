"""DynamoDbContext's started runs and result reads against DynamoDB (moto).

What the port-contract tests (``test_ports_started``, ``test_ports_results``) do not look at:
a start is ONE ``TransactWriteItems`` (its messages one outbox item each, so the save of each
message's job deletes it), a refused start answers from the refusal without reading, a start
beyond one transaction goes through the journal (atomic, read back while still pending), and a
result is one ``Query`` for a run under 1 MB of state (other records' large values never
fetched), reads on by key past a page for a larger one, and never mixes two versions.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from flowcraft.core import ports
from flowcraft.core.errors import TransientBackendError
from flowcraft.sqs import DynamoDbContext
from flowcraft.sqs._aws import Aws
from flowcraft.sqs._schema import Names, drop_tables, ensure_tables

_OUTBOX = (ports.Message(id="m1", body=b"one"), ports.Message(id="m2", body=b"\x00two"))


def _record(run_id: str, **fields: Any) -> ports.RunRecord:
    return ports.RunRecord(run_id=run_id, blueprint_id="bp", blueprint_version="1",
                           blueprint_digest="d", **fields)  # fmt: skip


@pytest.fixture
async def aws(aws_endpoint_url: str) -> AsyncIterator[Aws]:
    shared = Aws(endpoint_url=aws_endpoint_url)
    yield shared
    shared.close()


@pytest.fixture
async def names(aws: Aws) -> AsyncIterator[Names]:
    created = Names.of(f"t{uuid.uuid4().hex[:12]}")
    await ensure_tables(aws, created)
    yield created
    await drop_tables(aws, created)


def _store(aws: Any, names: Names) -> DynamoDbContext:
    return DynamoDbContext(context_table_name=names.contexts, status_table_name=names.statuses,
                           aws=aws)  # fmt: skip


class _Calls:
    """DynamoDB calls of one client, with the items each write carries (botocore's hook)."""

    def __init__(self, aws: Aws) -> None:
        self.calls: list[tuple[str, int]] = []
        aws.dynamodb_client.meta.events.register("before-parameter-build.dynamodb.*", self._on)

    def _on(self, event_name: str, params: dict[str, Any], **_: Any) -> None:
        self.calls.append((event_name.rsplit(".", 1)[1], len(params.get("TransactItems", ()))))

    def take(self) -> list[tuple[str, int]]:
        taken, self.calls = self.calls, []
        return taken


async def _items(aws: Aws, names: Names, run_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {
        "TableName": names.contexts, "ConsistentRead": True,
        "KeyConditionExpression": "runId = :r", "ExpressionAttributeValues": {":r": {"S": run_id}},
    }  # fmt: skip
    while True:
        page = await aws.dynamodb("query", **params)
        found += page["Items"]
        if "LastEvaluatedKey" not in page:
            return found
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def _start(
    store: DynamoDbContext,
    record: ports.RunRecord,
    *,
    records: Mapping[str, object] | None = None,
    context: Mapping[str, object] | None = None,
    outbox: Sequence[ports.Message] = _OUTBOX,
    status: str = "running",
) -> tuple[ports.RunRecord, bool]:
    return await store.create_started_run(
        record, header={"v": 2}, records={"a": 1, "b": [2]} if records is None else records,
        context={"k": "v"} if context is None else context, outbox=outbox, status=status,
    )  # fmt: skip


async def _save(store: DynamoDbContext, run_id: str, version: int, **parts: Any) -> bool:
    fields: dict[str, Any] = {"header": {"v": version + 1}, "records": {}, "context_writes": {},
                              "outbox": (), "status": "running"}  # fmt: skip
    return await store.save_state(run_id, expected_version=version, **(fields | parts))


# --------------------------------------------------------------------------- started runs


async def test_a_start_is_one_transaction_and_each_message_its_own_item(
    aws: Aws, names: Names
) -> None:
    store = _store(aws, names)
    calls = _Calls(aws)
    record, new = await _start(store, _record("r1", input={"x": 1}), status="running")
    # header, status, 2 records, 1 context key, 2 messages
    assert calls.take() == [("TransactWriteItems", 7)]
    assert new
    assert (record.status, record.input) == ("running", {"x": 1})
    outbox_keys = [i["sk"]["S"] for i in await _items(aws, names, "r1") if i["sk"]["S"][:2] == "o#"]
    assert outbox_keys == ["o#000000000002#000000", "o#000000000002#000001"]
    calls.take()
    # the save of m1's job deletes m1's item in its own transaction; m2 stays, in order
    assert await _save(store, "r1", 2, outbox=(ports.Message(id="m3", body=b"3"),), sent=["m1"])
    assert [op for op, _ in calls.take()] == ["TransactWriteItems"]
    state = await store.load_state("r1")
    assert state is not None
    assert [m.id for m in state.outbox] == ["m2", "m3"]
    assert (state.version, state.records, state.context) == (3, {"a": 1, "b": [2]}, {"k": "v"})
    await store.close()


async def test_a_terminal_start_is_not_active_and_keeps_its_output(aws: Aws, names: Names) -> None:
    store = _store(aws, names)
    record, new = await store.create_started_run(
        _record("r1"), header={"v": 2}, records={}, context={}, outbox=(), status="failed",
        output={"o": 1}, errors=[{"node_id": "A", "message": "boom"}],
    )  # fmt: skip
    assert new
    got = await store.get_run("r1")
    assert got == record
    assert (got.status, got.output, got.errors) == (
        "failed", {"o": 1}, ({"node_id": "A", "message": "boom"},),
    )  # fmt: skip
    assert await store.stalled_runs(updated_before=time.time() + 60) == []
    listed = await store.list_runs(status="failed")
    assert [r.run_id for r in listed.runs] == ["r1"]
    await store.close()


async def test_a_refused_start_answers_from_the_refusal(aws: Aws, names: Names) -> None:
    store = _store(aws, names)
    first, _ = await _start(store, _record("r1", idempotency_key="k1", input="first"))
    calls = _Calls(aws)
    again, new = await _start(store, _record("r1", input="other"))
    assert (again, new) == (first, False)
    assert calls.take() == [("TransactWriteItems", 7)]  # the record came with the refusal
    by_key, new = await _start(store, _record("r2", idempotency_key="k1"))
    assert (by_key, new) == (first, False)
    assert [op for op, _ in calls.take()] == ["TransactWriteItems", "GetItem"]  # r1's record
    assert await store.get_run("r2") is None
    assert await _items(aws, names, "r2") == []
    state = await store.load_state("r1")
    assert state is not None
    assert (state.version, state.outbox) == (2, _OUTBOX)
    await store.close()


class _Replaying:
    """An Aws whose transactions are sent twice, as botocore retries a request whose answer
    was lost: the first commits, the second is refused (moto keeps no idempotency token)."""

    def __init__(self, inner: Aws) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def dynamodb(self, operation: str, **params: Any) -> dict[str, Any]:
        if operation != "transact_write_items":
            return await self.inner.dynamodb(operation, **params)
        await self.inner.dynamodb(operation, **params)
        return await self.inner.dynamodb(operation, **params)


async def test_a_start_retried_by_botocore_after_it_committed_is_new(
    aws: Aws, names: Names
) -> None:
    replaying = _store(_Replaying(aws), names)
    record, new = await _start(replaying, _record("r1"))
    assert new, "the start's own header came back in the refusal: it is this start's"
    assert record.status == "running"
    await replaying.close()


async def test_a_large_start_commits_through_a_journal(aws: Aws, names: Names) -> None:
    store = _store(aws, names)
    records = {f'["n","",{i}]': {"status": "running", "i": i} for i in range(300)}
    outbox = tuple(ports.Message(id=f"m{i}", body=b"job %d" % i) for i in range(120))
    calls = _Calls(aws)
    _, new = await _start(store, _record("r1"), records=records, outbox=outbox)
    assert new
    transactions = [n for op, n in calls.take() if op == "TransactWriteItems"]
    assert transactions == [2]  # header (naming the journal) and status: the commit
    state = await store.load_state("r1")
    assert state is not None
    assert (state.version, dict(state.records), state.outbox) == (2, records, outbox)
    since = await store.load_state("r1", since=1)
    assert since is not None
    assert dict(since.records) == records
    head = next(i for i in await _items(aws, names, "r1") if i["sk"]["S"] == "!h")
    assert "pending" not in head  # applied
    assert await _save(store, "r1", 2, sent=[m.id for m in outbox])  # each item deleted
    after = await store.load_state("r1")
    assert after is not None
    assert after.outbox == ()
    await store.close()


async def test_a_large_start_whose_writer_died_is_read_from_its_journal(
    aws: Aws, names: Names, monkeypatch: pytest.MonkeyPatch
) -> None:
    dying = _store(aws, names)

    async def die(*_: object) -> None:
        raise ConnectionResetError("the writer died after its transaction")

    monkeypatch.setattr(dying._journal, "apply", die)
    records = {f"k{i}": i for i in range(200)}
    with pytest.raises(ConnectionResetError):
        await _start(dying, _record("r1"), records=records, context={"c": 1})
    other = _store(aws, names)
    state = await other.load_state("r1")
    assert state is not None
    assert (state.version, dict(state.records), state.outbox) == (2, records, _OUTBOX)
    result = await other.read_result("r1", ["k0", "k199", "none"])
    assert result is not None
    assert (result.version, result.records, result.context) == (
        2, {"k0": 0, "k199": 199}, {"c": 1},
    )  # fmt: skip
    assert await _save(other, "r1", 2, records={"k0": "new"})  # rolls the journal forward
    final = await other.load_state("r1")
    assert final is not None
    assert final.records == {**records, "k0": "new"}
    await other.close()


# --------------------------------------------------------------------------- result reads


async def test_a_result_is_one_query_and_other_large_values_are_not_fetched(
    aws: Aws, names: Names
) -> None:
    store = _store(aws, names)
    big = "".join(f"{i:x}" for i in range(20_000))  # ~80 KB: stored as chunks
    records = {"small": 1, "large": big, "other": big + "!"}
    await _start(store, _record("r1"), records=records, context={"k": "v", "c": big})
    assert await _save(store, "r1", 2, context_writes={"k": ports.DELETE, "j": 2})
    calls = _Calls(aws)
    got = await store.read_result("r1", ["small", "missing"])
    assert got is not None
    assert (got.version, got.header, got.records) == (3, {"v": 3}, {"small": 1})
    assert got.context == {"c": big, "j": 2}
    # one Query, and the chunks of the context's value: never the other records'
    assert [op for op, _ in calls.take()] == ["Query", "BatchGetItem"]
    with_large = await store.read_result("r1", ["large"])
    assert with_large is not None
    assert with_large.records == {"large": big}
    assert await store.read_result("nobody", ["small"]) is None
    await store.close()


async def test_a_result_of_a_state_over_one_page_reads_on_by_key(aws: Aws, names: Names) -> None:
    store = _store(aws, names)
    value = "x" * 30_000  # under the inline limit: every item about 30 KB
    records = {f"r{i:03d}": f"{i}{value}" for i in range(60)}  # ~1.8 MB of records
    context = {f"c{i:03d}": f"{i}{value}" for i in range(40)}  # ~1.2 MB of context
    await store.create_run(_record("r1"), {"v": 1})
    for version, part in enumerate((context, records), start=1):  # under 4 MB each
        assert await _save(store, "r1", version, **(
            {"context_writes": part} if part is context else {"records": part}
        ))  # fmt: skip
    calls = _Calls(aws)
    got = await store.read_result("r1", ["r000", "r059", "missing"])
    assert got is not None
    assert got.version == 3
    assert got.context == context
    assert got.records == {"r000": records["r000"], "r059": records["r059"]}
    ops = [op for op, _ in calls.take()]
    # the first page, the rest of the context, then the named records by key
    assert ops == ["Query", "Query", "BatchGetItem"]
    await store.close()


async def test_a_result_never_mixes_two_versions(aws: Aws, names: Names) -> None:
    """Saves keep rewriting two records and a context key together; no read sees them apart."""
    store = _store(aws, names)
    await _start(store, _record("r1"), records={"a": 2, "b": 2}, context={"c": 2})
    stop = asyncio.Event()
    saved, checks = [2], [0]

    async def writer() -> None:
        version = 2
        while not stop.is_set():
            n = version + 1
            assert await _save(store, "r1", version, header={"v": n}, records={"a": n, "b": n},
                               context_writes={"c": n})  # fmt: skip
            version = saved[0] = n
            await asyncio.sleep(0.005)

    async def reader() -> None:
        while not stop.is_set():
            try:
                got = await store.read_result("r1", ["a", "b"])
            except TransientBackendError:  # saves kept landing under the read: allowed
                continue
            assert got is not None
            v = got.header["v"]
            assert (got.records["a"], got.records["b"], got.context["c"], got.version) == (
                v, v, v, v,
            )  # fmt: skip
            checks[0] += 1

    tasks = [asyncio.create_task(writer()), *(asyncio.create_task(reader()) for _ in range(3))]
    deadline = time.monotonic() + 60
    while checks[0] <= 10 or saved[0] <= 10:
        assert time.monotonic() < deadline, (checks, saved)
        assert not any(task.done() for task in tasks), [t for t in tasks if t.done()]
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    await store.close()
