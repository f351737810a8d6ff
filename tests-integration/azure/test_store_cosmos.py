"""CosmosDbContext beyond the port contract, on the Cosmos server: values larger than an item,
and the run item's 2 MB guarded by the item itself (not by any process's memory)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from flowcraft.azure import AzureBackend, CosmosDbContext, _store
from flowcraft.azure._clients import cosmos_client
from flowcraft.core import NodeContext, RunStatus, parse_blueprint, ports
from flowcraft.core.testing.harness import Harness

pytestmark = pytest.mark.service("cosmos")

#: Cosmos DB's item size limit.
ITEM_LIMIT = 2 * 1024 * 1024


@pytest.fixture
async def stores(cosmos_endpoint: dict[str, str]) -> AsyncIterator[list[CosmosDbContext]]:
    """Two stores on one database, each with a client of its own (two workers' views)."""
    database = f"t{uuid.uuid4().hex[:10]}"
    clients = [
        cosmos_client(url=cosmos_endpoint["url"], key=cosmos_endpoint["key"],
                      ca_file=cosmos_endpoint["ca_file"])
        for _ in range(2)
    ]  # fmt: skip
    made = [CosmosDbContext(cosmos_client=c, cosmos_database_name=database) for c in clients]
    await made[0].ensure_schema()
    try:
        yield made
    finally:
        for store in made:
            await store.close()
        await clients[0].delete_database(database)
        for client in clients:
            await client.close()


def record(run_id: str, value: object = None) -> ports.RunRecord:
    return ports.RunRecord(run_id=run_id, blueprint_id="bp", blueprint_version="1",
                           blueprint_digest="d", status="running", input=value)  # fmt: skip


def big(megabytes: float, seed: str) -> dict[str, object]:
    """A JSON value of about ``megabytes`` that compresses poorly (random hex)."""
    text = os.urandom(int(megabytes * 1_000_000) // 2).hex()
    return {"seed": seed, "blob": text, "n": 12345678901234567890}


async def raw_items(store: CosmosDbContext, run_id: str) -> list[dict[str, Any]]:
    return await store._query(
        store.container, "SELECT * FROM c WHERE c.runId = @r", {"@r": run_id}, run_id
    )


async def test_a_5_mb_value_saves_and_loads_everywhere_a_value_goes(
    stores: list[CosmosDbContext],
) -> None:
    """Input, records, context values, outbox bodies, output and outcomes of 5 MB each."""
    store = stores[0]
    run_id = f"big-{uuid.uuid4().hex[:8]}"
    value_in, value_rec, value_ctx, value_out = (big(5, s) for s in "ircx")
    body = os.urandom(3_000_000)
    outcome = os.urandom(5_000_000)
    await store.create_run(record(run_id, value_in), {"h": 1}, {"first": value_rec})
    assert await store.commit_attempt(run_id, "a1", outcome) == outcome
    assert await store.commit_attempt(run_id, "a1", b"late") == outcome  # first writer wins
    saved = await store.save_state(
        run_id, expected_version=1, header={"h": 2}, records={"second": value_rec},
        context_writes={"ctx": value_ctx}, outbox=[ports.Message(id="m1", body=body)],
        status="completed", output=value_out,
    )  # fmt: skip
    assert saved
    for reader in stores:  # the writer, and a store that never saw the values
        state = await reader.load_state(run_id)
        assert state is not None
        assert state.version == 2
        assert state.records == {"first": value_rec, "second": value_rec}
        assert state.context == {"ctx": value_ctx}
        assert [(m.id, m.body) for m in state.outbox] == [("m1", body)]
        assert state.record is not None
        assert state.record.input == value_in
        assert state.record.output == value_out
        claim = await reader.claim_attempt(run_id, "a1", "w2", 30.0)
        assert claim.status == ports.ClaimStatus.DONE
        assert claim.outcome == outcome
    got = await stores[1].get_run(run_id)
    assert got is not None
    assert got.output == value_out
    listed = await stores[1].list_runs(status="completed")
    assert [r.output for r in listed.runs if r.run_id == run_id] == [value_out]
    for item in await raw_items(store, run_id):
        assert len(json.dumps(item).encode()) < ITEM_LIMIT, item["id"]


async def test_large_values_survive_compaction_and_since_loads(
    stores: list[CosmosDbContext],
) -> None:
    """A snapshot keeps references to chunks; ``since`` loads resolve only what they return."""
    store = stores[0]
    run_id = f"big-{uuid.uuid4().hex[:8]}"
    first = big(1, "1")
    await store.create_run(record(run_id), {}, {"a": first})
    await store._compact(run_id)
    second = big(1, "2")
    assert await store.save_state(run_id, expected_version=1, header={}, records={"b": second},
                                  context_writes={}, outbox=(), status="running")  # fmt: skip
    state = await stores[1].load_state(run_id)
    assert state is not None
    assert state.records == {"a": first, "b": second}
    since = await stores[1].load_state(run_id, since=1)
    assert since is not None
    assert since.records == {"b": second}


async def test_two_stores_filling_one_run_never_pass_the_item_limit(
    stores: list[CosmosDbContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saves of ~200 kB alternate between two stores with background compaction off: the
    log-size counter in the run item (checked by each save's filter predicate) makes the save
    that would overflow compact first, whichever store it comes from."""
    monkeypatch.setattr(_store, "COMPACT_BYTES", 10**12)  # only the guard compacts
    run_id = f"fill-{uuid.uuid4().hex[:8]}"
    await stores[0].create_run(record(run_id), {})
    expected: dict[str, object] = {}
    sizes: list[int] = []
    for version in range(1, 21):
        store = stores[version % 2]
        rows = {f"k{version}-{i}": os.urandom(12_000).hex() for i in range(8)}  # ~200 kB
        expected |= rows
        started = time.monotonic()
        assert await store.save_state(
            run_id, expected_version=version, header={"v": version}, records=rows,
            context_writes={}, outbox=(), status="running",
        ), version  # fmt: skip
        assert time.monotonic() - started < 30
        run = next(i for i in await raw_items(store, run_id) if i["kind"] == "run")
        sizes.append(len(json.dumps(run).encode()))
        assert sizes[-1] < ITEM_LIMIT, f"run item {sizes[-1]} bytes after save {version}"
        assert run["lsz"] <= _store.LOG_LIMIT
    assert max(sizes) > _store.LOG_LIMIT * 0.8  # the log did fill up before each compaction
    assert any(b < a for a, b in itertools.pairwise(sizes))  # and was compacted
    state = await stores[1].load_state(run_id)
    assert state is not None
    assert state.version == 21
    assert state.records == expected


async def test_a_stale_save_is_refused_even_when_the_log_is_full(
    stores: list[CosmosDbContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusal because the log is full compacts; one because the version moved returns
    False (no compaction loop), from either store."""
    monkeypatch.setattr(_store, "LOG_LIMIT", 300_000)
    monkeypatch.setattr(_store, "COMPACT_BYTES", 10**12)
    run_id = f"stale-{uuid.uuid4().hex[:8]}"
    await stores[0].create_run(record(run_id), {})
    rows = {"k": os.urandom(100_000).hex()}
    assert await stores[0].save_state(run_id, expected_version=1, header={}, records=rows,
                                      context_writes={}, outbox=(), status="running")  # fmt: skip
    results = await asyncio.gather(*(
        store.save_state(run_id, expected_version=2, header={}, records={f"s{i}": rows["k"]},
                         context_writes={}, outbox=(), status="running")
        for i, store in enumerate(stores)
    ))  # fmt: skip
    assert sorted(results) == [False, True]
    stale = await stores[1].save_state(run_id, expected_version=2, header={}, records={},
                                       context_writes={}, outbox=(), status="running")  # fmt: skip
    assert stale is False
    state = await stores[0].load_state(run_id)
    assert state is not None
    assert state.version == 3
    assert len(state.records) == 2


# ------------------------------------------------------------------ outbox removals


class PatchCounter:
    """Counts the ``patch_item`` requests of one store's container (the rest unchanged)."""

    def __init__(self, store: CosmosDbContext) -> None:
        self.calls = 0
        self._original = store.container.patch_item
        store.container.patch_item = self._patch

    async def _patch(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return await self._original(*args, **kwargs)


def message(run_id: str, name: str) -> ports.Message:
    return ports.Message(id=f"{run_id}:{name}", body=name.encode())


async def test_removing_messages_a_save_marked_sent_costs_no_request(
    stores: list[CosmosDbContext],
) -> None:
    """A save's ``sent`` (or an earlier removal) marked them: nothing to write again; the
    other store (which saw no such save) still writes, and the outbox ends up empty."""
    run_id = f"marked-{uuid.uuid4().hex[:8]}"
    store = stores[0]
    await store.create_run(record(run_id), {})
    a, b, c = (message(run_id, n) for n in "abc")
    assert await store.save_state(run_id, expected_version=1, header={}, records={},
                                  context_writes={}, outbox=[a, b, c],
                                  status="running")  # fmt: skip
    assert await store.save_state(run_id, expected_version=2, header={}, records={},
                                  context_writes={}, outbox=(), status="running",
                                  sent=[a.id, b.id])  # fmt: skip
    patches = PatchCounter(store)
    await store.remove_outbox({run_id: [a.id, b.id]})
    assert patches.calls == 0
    await store.remove_outbox({run_id: [a.id, c.id]})  # c was not marked: one patch
    assert patches.calls == 1
    await store.remove_outbox({run_id: [c.id]})
    assert patches.calls == 1
    other = PatchCounter(stores[1])
    await stores[1].remove_outbox({run_id: [a.id]})
    assert other.calls == 1
    state = await store.load_state(run_id)
    assert state is not None
    assert state.outbox == ()


async def test_a_message_put_back_in_the_outbox_is_removed_again(
    stores: list[CosmosDbContext],
) -> None:
    """A save that carries a message id in its outbox forgets that the id was marked."""
    run_id = f"again-{uuid.uuid4().hex[:8]}"
    store = stores[0]
    await store.create_run(record(run_id), {})
    a = message(run_id, "a")
    assert await store.save_state(run_id, expected_version=1, header={}, records={},
                                  context_writes={}, outbox=[a], status="running")  # fmt: skip
    await store.remove_outbox({run_id: [a.id]})
    assert await store.save_state(run_id, expected_version=2, header={}, records={},
                                  context_writes={}, outbox=[a], status="running")  # fmt: skip
    patches = PatchCounter(store)
    await store.remove_outbox({run_id: [a.id]})
    assert patches.calls == 1


async def test_a_removal_waits_for_a_save_in_flight_that_marks_the_same_messages(
    stores: list[CosmosDbContext],
) -> None:
    """The removal started while the save is in flight: it writes nothing if the save
    committed, and writes its markers if the save was refused."""
    run_id = f"inflight-{uuid.uuid4().hex[:8]}"
    store = stores[0]
    await store.create_run(record(run_id), {})
    a, b = message(run_id, "a"), message(run_id, "b")
    assert await store.save_state(run_id, expected_version=1, header={}, records={},
                                  context_writes={}, outbox=[a, b], status="running")  # fmt: skip
    patches = PatchCounter(store)
    saving = asyncio.ensure_future(store.save_state(
        run_id, expected_version=2, header={}, records={}, context_writes={}, outbox=(),
        status="running", sent=[a.id],
    ))  # fmt: skip
    await asyncio.sleep(0)  # the save is in flight
    await store.remove_outbox({run_id: [a.id]})
    assert saving.done()
    assert saving.result() is True
    assert patches.calls == 1  # the save's patch only
    refused = asyncio.ensure_future(store.save_state(
        run_id, expected_version=2, header={}, records={}, context_writes={}, outbox=(),
        status="running", sent=[b.id],
    ))  # fmt: skip
    await asyncio.sleep(0)
    await store.remove_outbox({run_id: [b.id]})
    assert refused.done()
    assert refused.result() is False
    state = await stores[1].load_state(run_id)
    assert state is not None
    assert state.outbox == ()


# ------------------------------------------------------------------ end to end


async def blob(ctx: NodeContext) -> str:
    """A string of ``params.size`` random hex characters (it does not compress)."""
    return os.urandom(int(ctx.params["size"]) // 2).hex()


async def measure(ctx: NodeContext) -> dict[str, object]:
    """What the node received: its length and a digest."""
    text = str(ctx.input)
    ctx.context.set("seen", text)
    return {"length": len(text), "sha": hashlib.sha256(text.encode()).hexdigest()}


async def test_a_5_mb_node_output_flows_through_workers(
    azure_queue_connection_string: str, cosmos_endpoint: dict[str, str], redis_url: str
) -> None:
    """A node returns 5 MB: committed as its outcome, saved as a record, carried to the next
    node and kept in the context (another 5 MB); the run's result holds them all."""
    registry: dict[str, object] = {"t.blob": blob, "t.measure": measure}
    blueprint = parse_blueprint(
        {"id": "large", "version": "1",
         "nodes": [{"id": "b", "uses": "t.blob", "params": {"size": 5_000_000}},
                   {"id": "m", "uses": "t.measure"}],
         "edges": [{"source": "b", "target": "m"}]},
        registry=registry,
    )  # fmt: skip
    factory = AzureBackend(
        queue_connection_string=azure_queue_connection_string, cosmos_url=cosmos_endpoint["url"],
        cosmos_key=cosmos_endpoint["key"], cosmos_ca_file=cosmos_endpoint["ca_file"],
        redis_url=redis_url, visibility_timeout=30, max_poll_interval=0.25,
    )  # fmt: skip
    async with Harness(factory).session(blueprint, workers=2, registry=registry) as s:
        result = await s.run("large", None, timeout=120)
    assert result.status is RunStatus.COMPLETED, result
    produced = result.outputs["b"]
    assert isinstance(produced, str)
    assert len(produced) == 5_000_000
    assert result.output == {
        "length": 5_000_000,
        "sha": hashlib.sha256(produced.encode()).hexdigest(),
    }
    assert result.context["seen"] == produced


async def test_ensure_schema_from_many_processes_at_once(cosmos_endpoint: dict[str, str]) -> None:
    """Workers starting together all create the same database and containers: none fails."""
    database = f"t{uuid.uuid4().hex[:10]}"
    clients = [
        cosmos_client(url=cosmos_endpoint["url"], key=cosmos_endpoint["key"],
                      ca_file=cosmos_endpoint["ca_file"])
        for _ in range(6)
    ]  # fmt: skip
    made = [CosmosDbContext(cosmos_client=c, cosmos_database_name=database) for c in clients]
    try:
        await asyncio.gather(*(store.ensure_schema() for store in made))
        await made[0].create_run(record("r1"), {"v": 1})
        assert await made[-1].get_run("r1") is not None
    finally:
        for store in made:
            await store.close()
        await clients[0].delete_database(database)
        for client in clients:
            await client.close()
