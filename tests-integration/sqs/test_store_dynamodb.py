"""DynamoDbContext against DynamoDB (moto): what the port-contract tests do not look at.

The journal of large saves and its roll-forward after its writer died, large values stored as
chunks, loads that never mix two versions, tombstones, status writes only when they change,
a transaction retried after it committed, and throttling retried with backoff.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from flowcraft.core import ports
from flowcraft.core.errors import TransientBackendError
from flowcraft.sqs import DynamoDbContext
from flowcraft.sqs import _store as store_module
from flowcraft.sqs._aws import Aws
from flowcraft.sqs._errors import Refused
from flowcraft.sqs._items import item_size
from flowcraft.sqs._schema import Names, drop_tables, ensure_tables


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


def _store(aws: Aws, names: Names) -> DynamoDbContext:
    return DynamoDbContext(context_table_name=names.contexts, status_table_name=names.statuses,
                           aws=aws)  # fmt: skip


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


async def _save(store: DynamoDbContext, version: int, **parts: Any) -> bool:
    fields: dict[str, Any] = {"header": {"v": version + 1}, "records": {}, "context_writes": {},
                              "outbox": (), "status": "running"}  # fmt: skip
    return await store.save_state("r1", expected_version=version, **(fields | parts))


async def test_a_large_save_goes_through_a_journal_that_is_applied_and_removed(
    aws: Aws, names: Names
) -> None:
    store = _store(aws, names)
    await store.create_run(_record("r1"), {"v": 1})
    records = {f'["n","",{i}]': {"status": "running", "i": i} for i in range(600)}
    outbox = tuple(ports.Message(id=f"m{i}", body=b"job %d" % i) for i in range(150))
    assert await _save(store, 1, records=records, outbox=outbox, context_writes={"c": 1})
    items = await _items(aws, names, "r1")
    kinds = {item["sk"]["S"][:2] for item in items}
    assert "j#" not in kinds or await _eventually_no_journal(aws, names)
    assert sum(1 for i in items if i["sk"]["S"].startswith("r#")) == 600
    state = await store.load_state("r1")
    assert state is not None
    assert (state.version, dict(state.records), state.outbox) == (2, records, outbox)
    assert state.context == {"c": 1}
    delta = await store.load_state("r1", since=1)
    assert delta is not None
    assert dict(delta.records) == records
    await store.close()


async def _eventually_no_journal(aws: Aws, names: Names) -> bool:
    for _ in range(100):
        if not any(i["sk"]["S"].startswith("j#") for i in await _items(aws, names, "r1")):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_journal_whose_writer_died_is_read_and_then_rolled_forward(
    aws: Aws, names: Names, monkeypatch: pytest.MonkeyPatch
) -> None:
    dying = _store(aws, names)
    await dying.create_run(_record("r1"), {"v": 1}, {"kept": 0})

    async def die(*_: object) -> None:
        raise ConnectionResetError("the writer died after its transaction")

    monkeypatch.setattr(dying._journal, "apply", die)
    records = {f"k{i}": i for i in range(500)}
    with pytest.raises(ConnectionResetError):
        await _save(dying, 1, records=records, context_writes={"gone": ports.DELETE, "x": 1})
    head = next(i for i in await _items(aws, names, "r1") if i["sk"]["S"] == "!h")
    assert "pending" in head  # committed, not applied
    other = _store(aws, names)
    state = await other.load_state("r1")
    assert state is not None
    assert (state.version, dict(state.records)) == (2, {"kept": 0, **records})
    assert state.context == {"x": 1}
    delta = await other.load_state("r1", since=1, keys=["kept"])
    assert delta is not None
    assert dict(delta.records) == {"kept": 0, **records}
    assert not await _save(other, 1)  # stale: refused, nothing rolled back
    assert await _save(other, 2, records={"k0": "new"})  # rolls the journal forward first
    head = next(i for i in await _items(aws, names, "r1") if i["sk"]["S"] == "!h")
    assert "pending" not in head
    final = await other.load_state("r1")
    assert final is not None
    assert final.version == 3
    assert final.records == {"kept": 0, **records, "k0": "new"}
    await other.close()


async def test_large_values_are_chunks_and_no_item_nears_the_limit(aws: Aws, names: Names) -> None:
    store = _store(aws, names)
    big = "".join(f"{i:x}" for i in range(400_000))  # ~2 MB of JSON, not very compressible
    blob = bytes(range(256)) * 4_000
    await store.create_run(_record("r1", input={"big": big}), {"v": 1})
    assert await _save(store, 1, records={"r": big}, context_writes={"c": big},
                       outbox=(ports.Message(id="m", body=blob),), status="completed",
                       output=big, outcomes=(("a#1", blob),))  # fmt: skip
    items = await _items(aws, names, "r1")
    assert max(item_size(i) for i in items) < 400_000
    assert any(i["sk"]["S"].startswith("z#") for i in items)
    state = await store.load_state("r1")
    run = await store.get_run("r1")
    assert state is not None
    assert run is not None
    assert (state.records["r"], state.context["c"], state.outbox[0].body) == (big, big, blob)
    assert (run.input, run.output) == ({"big": big}, big)
    assert await store.commit_attempt("r1", "a#1", b"other") == blob
    claim = await store.claim_attempt("r1", "a#1", "w", 5)
    assert (claim.status, claim.outcome) == (ports.ClaimStatus.DONE, blob)
    listed = await store.list_runs(status="completed")
    assert [r.output for r in listed.runs] == [big]
    await store.close()


async def test_a_load_never_mixes_two_versions(aws: Aws, names: Names) -> None:
    """Saves keep rewriting two records and a context key together; no load sees them apart."""
    store = _store(aws, names)
    await store.create_run(_record("r1"), {"v": 1}, {"a": 1, "b": 1})
    stop = asyncio.Event()

    saved = [1]
    checks = [0]

    async def writer() -> None:
        version = 1
        while not stop.is_set():
            n = version + 1
            assert await _save(store, version, header={"v": n}, records={"a": n, "b": n},
                               context_writes={"c": n})  # fmt: skip
            version = saved[0] = n
            await asyncio.sleep(0.005)  # a hot run: a save every few milliseconds

    async def reader() -> int:
        checked = 0
        while not stop.is_set():
            try:
                state = await store.load_state("r1")
            except TransientBackendError:  # saves kept landing under the read: it gave up,
                continue  # which is allowed; a torn read never is (checked below)
            assert state is not None
            v = state.header["v"]
            assert (state.records["a"], state.records["b"], state.version) == (v, v, v)
            assert state.context.get("c", 1) == v
            try:
                since = await store.load_state("r1", since=max(1, int(v) - 1), keys=["a"])  # type: ignore[call-overload]
            except TransientBackendError:
                continue
            assert since is not None
            assert since.records["a"] == since.header["v"] == since.version
            checked += 1
            checks[0] += 1
        return checked

    tasks = [asyncio.create_task(writer()), *(asyncio.create_task(reader()) for _ in range(3))]
    # Enough loads under enough saves, however slow the machine (not a fixed time).
    deadline = time.monotonic() + 60
    while checks[0] <= 10 or saved[0] <= 10:
        assert time.monotonic() < deadline, (checks, saved)
        assert not any(task.done() for task in tasks), [t for t in tasks if t.done()]
        await asyncio.sleep(0.05)
    stop.set()
    results = await asyncio.gather(*tasks)
    assert sum(r for r in results if isinstance(r, int)) > 10
    await store.close()


async def test_context_deletions_are_tombstones(aws: Aws, names: Names) -> None:
    store = _store(aws, names)
    await store.create_run(_record("r1"), {"v": 1})
    assert await _save(store, 1, context_writes={"a": 1, "b": 2})
    assert await _save(store, 2, context_writes={"a": ports.DELETE})
    tomb = [i for i in await _items(aws, names, "r1") if i["sk"]["S"] == "c#a"]
    assert len(tomb) == 1
    assert tomb[0]["ver"] == {"N": "3"}
    assert "del" in tomb[0]
    state = await store.load_state("r1")
    assert state is not None
    assert state.context == {"b": 2}
    assert await _save(store, 3, context_writes={"a": "back"})
    again = await store.load_state("r1")
    assert again is not None
    assert again.context == {"a": "back", "b": 2}
    await store.close()


async def test_the_status_item_is_written_only_when_it_changes_or_ages(
    aws: Aws, names: Names, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()  # the store's clock: the granularity is judged on it, not on load
    monkeypatch.setattr(store_module, "time", clock)
    store = _store(aws, names)
    await store.create_run(_record("r1"), {"v": 1})

    async def status_item() -> dict[str, Any]:
        got = await aws.dynamodb("get_item", TableName=names.statuses,
                                 Key={"runId": {"S": "r1"}}, ConsistentRead=True)  # fmt: skip
        item: dict[str, Any] = got["Item"]
        return item

    assert await _save(store, 1)
    first = await status_item()
    clock.now += 0.9
    assert await _save(store, 2)
    assert await status_item() == first  # same status, within the granularity: untouched
    clock.now += 0.2
    assert await _save(store, 3)
    aged = await status_item()
    assert float(aged["updated"]["N"]) > float(first["updated"]["N"])
    assert await _save(store, 4, status="completed", output=7)
    done = await status_item()
    assert (done["status"]["S"], "active" in done) == ("completed", False)
    other = _store(aws, names)  # knows nothing of what was written: writes it
    assert await _save(other, 5, status="completed", output=7)
    assert float((await status_item())["updated"]["N"]) >= float(done["updated"]["N"])
    await store.close()
    await other.close()


class _Clock:
    """``time`` for the store module: ``time()`` moves only when the test says."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now


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


async def test_a_save_whose_answer_was_lost_and_retried_is_reported_saved(
    aws: Aws, names: Names
) -> None:
    store = _store(aws, names)
    await store.create_run(_record("r1"), {"v": 1})
    replaying = DynamoDbContext(context_table_name=names.contexts,
                                status_table_name=names.statuses, aws=_Replaying(aws))  # type: ignore[arg-type]  # fmt: skip
    with pytest.raises(Refused):  # what the second send alone would say
        await _Replaying(aws).dynamodb("transact_write_items", TransactItems=[{"ConditionCheck": {
            "TableName": names.contexts, "Key": {"runId": {"S": "r1"}, "sk": {"S": "!h"}},
            "ConditionExpression": "attribute_not_exists(runId)"}}])  # fmt: skip
    assert await _save(replaying, 1, records={"k": 1}, outcomes=(("a#1", b"o"),))
    state = await store.load_state("r1")
    assert state is not None
    assert (state.version, state.records) == (2, {"k": 1})
    await store.close()


class _ThrottledBody:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: object) -> Iterator[bytes]:
        yield self.body


async def test_throttling_is_retried_with_backoff(aws_endpoint_url: str, names: Names) -> None:
    import botocore.awsrequest

    aws = Aws(endpoint_url=aws_endpoint_url)
    throttled: list[str] = []

    def throttle(request: Any, **_: object) -> Any:
        if len(throttled) >= 3:
            return None
        throttled.append(request.url)
        kind = "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
        body = json.dumps({"__type": kind, "message": "slow down"})
        headers = botocore.awsrequest.HTTPHeaders()
        headers["x-amzn-ErrorType"] = "ProvisionedThroughputExceededException"
        return botocore.awsrequest.AWSResponse(
            request.url, 400, headers, _ThrottledBody(body.encode())
        )

    aws.dynamodb_client.meta.events.register("before-send.dynamodb", throttle)
    store = _store(aws, names)
    created = await store.create_run(_record("r1"), {"v": 1})
    assert len(throttled) == 3
    assert await store.get_run("r1") == created
    await store.close()
    aws.close()


class _Calls:
    """DynamoDB calls of one client (botocore's ``before-parameter-build`` hook): operations
    and the items each write carries."""

    def __init__(self, aws: Aws) -> None:
        self.writes: list[tuple[str, int]] = []
        aws.dynamodb_client.meta.events.register("before-parameter-build.dynamodb.*", self._on)

    def _on(self, event_name: str, params: dict[str, Any], **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[1]
        items = len(params.get("TransactItems", ()))
        if operation == "BatchWriteItem":
            items = sum(len(r) for r in params["RequestItems"].values())
        self.writes.append((operation, items))


async def test_a_save_writes_its_outbox_as_one_item_and_removal_deletes_it_once(
    aws: Aws, names: Names
) -> None:
    store = _store(aws, names)
    await store.create_run(_record("r1"), {"v": 1})
    fan_out = tuple(ports.Message(id=f"m{i}", body=b"job %d" % i) for i in range(8))
    calls = _Calls(aws)
    assert await _save(store, 1, outbox=fan_out, records={"a": 1})
    assert calls.writes == [("TransactWriteItems", 4)]  # header, status, record, outbox
    outbox_items = [i for i in await _items(aws, names, "r1") if i["sk"]["S"].startswith("o#")]
    assert len(outbox_items) == 1
    del calls.writes[:]
    await store.remove_outbox({"r1": [m.id for m in fan_out]})
    assert calls.writes == [("BatchWriteItem", 1)]
    del calls.writes[:]
    # the next save naming them sent, and the one committing their attempts: nothing to delete
    assert await _save(store, 2, sent=("m0", "m1"), outcomes=(("a#0", b"o"),))
    assert calls.writes == [("TransactWriteItems", 2)]  # header, outcome (status: unchanged)
    await store.remove_outbox({"r1": ["m3"]})
    assert calls.writes[1:] == []
    state = await store.load_state("r1")
    assert state is not None
    assert state.outbox == ()


async def test_removal_by_another_process_reads_the_outbox_items_first(
    aws: Aws, names: Names
) -> None:
    writer, other = _store(aws, names), _store(aws, names)
    await writer.create_run(_record("r1"), {"v": 1})
    assert await _save(writer, 1, outbox=(ports.Message(id="m1", body=b"1"),
                                          ports.Message(id="m2", body=b"2")))  # fmt: skip
    assert await _save(writer, 2, outbox=(ports.Message(id="m3", body=b"3"),))
    await other.remove_outbox({"r1": ["m1", "m3", "nowhere"]})  # a trim and a delete
    state = await writer.load_state("r1")
    assert state is not None
    assert [m.id for m in state.outbox] == ["m2"]
    await writer.remove_outbox({"r1": ["m2"]})  # the load told the writer what is left
    assert [i["sk"]["S"] for i in await _items(aws, names, "r1") if i["sk"]["S"][:2] == "o#"] == []


async def test_a_large_outbox_is_one_item_of_chunks(aws: Aws, names: Names) -> None:
    store = _store(aws, names)
    await store.create_run(_record("r1"), {"v": 1})
    outbox = tuple(ports.Message(id=f"m{i}", body=uuid.uuid4().bytes * 200) for i in range(300))
    assert await _save(store, 1, outbox=outbox)
    state = await store.load_state("r1")
    assert state is not None
    assert state.outbox == outbox
    items = await _items(aws, names, "r1")
    assert len([i for i in items if i["sk"]["S"].startswith("o#")]) == 1
    assert max(item_size(i) for i in items) < 400_000


async def test_claims_of_one_turn_are_one_transaction_and_refused_ones_are_answered_alone(
    aws: Aws, names: Names
) -> None:
    store = _store(aws, names)
    await store.create_run(_record("r1"), {"v": 1})
    first = await store.claim_attempt("r1", "busy", "other", 30)
    assert first.status is ports.ClaimStatus.CLAIMED
    await store.commit_attempt("r1", "done", b"out")
    calls = _Calls(aws)
    attempts = ["a1", "busy", "a2", "done", "a3", "a1"]
    claims = await asyncio.gather(*(store.claim_attempt("r1", a, "me", 30) for a in attempts))
    statuses = [c.status.value for c in claims]
    assert statuses == ["claimed", "busy", "claimed", "done", "claimed", "claimed"]
    assert claims[3].outcome == b"out"
    assert calls.writes[0] == ("TransactWriteItems", 5)  # a1 once: one write per item
    # busy and done answered from the cancellation reasons' items; the fine ones together
    # again; the second a1 alone (the same owner claims again)
    assert sorted(calls.writes[1:]) == [("TransactWriteItems", 3), ("UpdateItem", 0)]
    again = await asyncio.gather(*(store.claim_attempt("r1", a, "you", 30) for a in ("a2", "a3")))
    assert [c.status for c in again] == [ports.ClaimStatus.BUSY] * 2


async def test_a_refused_save_reads_nothing_more_and_its_outcomes_are_known_to_stand(
    aws: Aws, names: Names
) -> None:
    winner, loser = _store(aws, names), _store(aws, names)
    await winner.create_run(_record("r1"), {"v": 1})
    assert await _save(winner, 1)
    calls = _Calls(aws)
    assert not await _save(loser, 1, outcomes=(("a#1", b"mine"),))
    # the header the refusal answered with tells the version moved on: no read of it
    assert [op for op, _ in calls.writes] == ["TransactWriteItems", "UpdateItem"]
    del calls.writes[:]
    assert await loser.commit_attempt("r1", "a#1", b"other") == b"mine"  # no call
    assert await winner.commit_attempt("r1", "a#1", b"other") == b"mine"  # one, refused
    assert [op for op, _ in calls.writes] == ["UpdateItem"]
