"""DynamoDbCoordinationStore on moto: what only DynamoDB shows (stored items, TTL, the run index).

The coordination port's contract itself is in the conformance suite (test_ports_coordination),
which the SQS backend runs. moto never deletes items whose TTL passed (neither does DynamoDB
for up to days), so these tests read the raw items to show that expired ones stay stored and
are still absent to the store.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import pytest
from flowcraft.sqs._aws import Aws
from flowcraft.sqs._coordination import DynamoDbCoordinationStore
from flowcraft.sqs._schema import Names, drop_tables, ensure_tables


class CountingAws(Aws):
    """An ``Aws`` that notes every DynamoDB operation it sends."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls: list[str] = []

    async def dynamodb(self, operation: str, **params: Any) -> dict[str, Any]:
        self.calls.append(operation)
        return await super().dynamodb(operation, **params)

    def take(self) -> list[str]:
        """The operations since the last call, forgotten."""
        calls, self.calls = self.calls, []
        return calls


@dataclass
class Table:
    """A fresh coordination table and the ``Aws`` that made it."""

    aws: CountingAws
    name: str

    def store(self, prefix: str = "") -> DynamoDbCoordinationStore:
        return DynamoDbCoordinationStore(table_name=self.name, prefix=prefix, aws=self.aws)

    async def raw(self, stored_key: str) -> dict[str, Any] | None:
        """The item as stored (whatever its expiry), or None."""
        response = await self.aws.dynamodb(
            "get_item",
            TableName=self.name,
            Key={"coordinationKey": {"S": stored_key}},
            ConsistentRead=True,
        )
        item: dict[str, Any] | None = response.get("Item")
        return item


@pytest.fixture
async def table(aws_endpoint_url: str) -> AsyncIterator[Table]:
    aws = CountingAws(endpoint_url=aws_endpoint_url)
    names = Names.of("t" + uuid4().hex[:12])
    await ensure_tables(aws, names)
    aws.take()
    yield Table(aws, names.coordination)
    await drop_tables(aws, names)
    aws.close()


def number(item: dict[str, Any], name: str) -> float:
    return float(item[name]["N"])


# ------------------------------------------------------------------ expiry


async def test_expired_items_stay_stored_but_are_absent(table: Table) -> None:
    store = table.store()
    assert await store.compare_and_set("k", None, "old", ttl=0.3)
    assert await store.set_add("s", "old", ttl=0.3)
    await asyncio.sleep(0.5)

    value, members = await table.raw("k"), await table.raw("s")
    assert value is not None
    assert value["value"] == {"S": "old"}
    assert members is not None
    assert members["members"] == {"SS": ["old"]}
    assert number(value, "expires_at") <= time.time()

    assert await store.get("k") is None
    assert await store.compare_and_set("k", "old", "x") is False  # not "old" any more
    assert await store.compare_and_set("k", None, "new") is True  # absent
    assert await store.get("k") == "new"
    assert await store.set_add("s", "new") is True
    replaced = await table.raw("s")
    assert replaced is not None
    assert replaced["members"] == {"SS": ["new"]}
    assert "expires_at" not in replaced
    assert "ttl" not in replaced


async def test_ttl_is_whole_epoch_seconds_and_expires_at_is_exact(table: Table) -> None:
    described = await table.aws.dynamodb("describe_time_to_live", TableName=table.name)
    assert described["TimeToLiveDescription"]["AttributeName"] == "ttl"
    store = table.store()
    before = time.time()
    assert await store.compare_and_set("k", None, "v", ttl=30.25)
    item = await table.raw("k")
    assert item is not None
    expires_at = number(item, "expires_at")
    assert before + 30.25 <= expires_at <= time.time() + 30.25
    assert item["ttl"]["N"].isdigit()  # an integer for DynamoDB's TTL
    assert int(item["ttl"]["N"]) == math.ceil(expires_at)

    assert await store.compare_and_set("k", "v", "w")  # ttl=None: no expiry any more
    item = await table.raw("k")
    assert item is not None
    assert "ttl" not in item
    assert "expires_at" not in item


async def test_set_add_keeps_or_refreshes_the_expiry_of_a_live_set(table: Table) -> None:
    store = table.store()
    assert await store.set_add("s", "a", ttl=60)
    first = await table.raw("s")
    assert await store.set_add("s", "b") is True  # no ttl: the set's expiry stays
    kept = await table.raw("s")
    assert first is not None
    assert kept is not None
    assert kept["expires_at"] == first["expires_at"]
    assert await store.set_add("s", "a", ttl=600) is False  # there already: expiry refreshed
    refreshed = await table.raw("s")
    assert refreshed is not None
    assert number(refreshed, "expires_at") > time.time() + 500


# ------------------------------------------------------------------ locks


async def test_tokens_keep_increasing_after_release_and_expiry(table: Table) -> None:
    store = table.store()
    first = await store.acquire_lock("run:r:decide", ttl=10)
    assert first is not None
    assert await store.release_lock("run:r:decide", first)
    item = await table.raw("lock:run:r:decide")
    assert item is not None  # released, not deleted: the counter stays
    assert number(item, "held_until") == 0
    assert number(item, "fence") == first

    second = await store.acquire_lock("run:r:decide", ttl=0.2)
    assert second is not None
    assert second > first
    await asyncio.sleep(0.4)  # the holder's time passes; nobody released
    third = await store.acquire_lock("run:r:decide", ttl=10)
    assert third is not None
    assert third > second
    assert await store.release_lock("run:r:decide", second) is False
    assert await store.release_lock("run:r:decide", third) is True
    assert await store.release_lock("run:r:decide", third) is False  # once


async def test_a_lock_whose_run_expired_is_free_and_keeps_counting(table: Table) -> None:
    store = table.store()
    held = await store.acquire_lock("run:r:decide", ttl=60)
    assert held is not None
    await store.expire_run("r", ttl=0.3)
    await asyncio.sleep(0.5)
    assert await table.raw("lock:run:r:decide") is not None  # still stored (moto)
    assert await store.release_lock("run:r:decide", held) is False  # expired with the run
    again = await store.acquire_lock("run:r:decide", ttl=60)
    assert again is not None
    assert again > held
    revived = await table.raw("lock:run:r:decide")
    assert revived is not None
    assert "expires_at" not in revived
    assert "ttl" not in revived
    assert await store.acquire_lock("run:r:decide", ttl=60) is None


# ------------------------------------------------------------------ runs


async def test_expire_run_touches_that_runs_keys_only(table: Table) -> None:
    store = table.store()
    await store.set_add("run:X:join:a", "x")
    await store.compare_and_set("run:X", None, "running")
    await store.compare_and_set("run:X:short", None, "v", ttl=5)
    token = await store.acquire_lock("run:X:decide", ttl=30)
    assert token is not None
    await store.set_add("run:X0:join:a", "x")  # another run, whose id starts alike
    await store.acquire_lock("run:X0:decide", ttl=30)
    await store.compare_and_set("global", None, "g")
    await store.acquire_lock("global-lock", ttl=30)

    before = time.time()
    await store.expire_run("X", ttl=60)
    for stored in ("run:X:join:a", "run:X", "lock:run:X:decide", "runkeys:X"):
        item = await table.raw(stored)
        assert item is not None, stored
        assert before + 60 <= number(item, "expires_at") <= time.time() + 60, stored
        assert int(item["ttl"]["N"]) == math.ceil(number(item, "expires_at")), stored
    short = await table.raw("run:X:short")
    assert short is not None
    assert number(short, "expires_at") < before + 6
    lock = await table.raw("lock:run:X:decide")
    assert lock is not None
    assert number(lock, "held_until") < before + 31
    for stored in ("run:X0:join:a", "lock:run:X0:decide", "global", "lock:global-lock"):
        item = await table.raw(stored)
        assert item is not None, stored
        assert "expires_at" not in item, stored
        assert "ttl" not in item, stored
    assert await store.acquire_lock("run:X:decide", ttl=30) is None  # still held
    assert await store.get("run:X") == "running"


async def test_a_run_key_first_written_after_expire_run_inherits_its_expiry(
    table: Table,
) -> None:
    await table.store().set_add("run:Y:join:a", "x")
    await table.store().expire_run("Y", ttl=60)
    late = table.store()  # another process: it never indexed a key of Y
    assert await late.compare_and_set("run:Y:late", None, "v")
    assert await late.acquire_lock("run:Y:decide", ttl=5) is not None
    index = await table.raw("runkeys:Y")
    assert index is not None
    for stored in ("run:Y:late", "lock:run:Y:decide"):
        item = await table.raw(stored)
        assert item is not None, stored
        assert item["expires_at"] == index["expires_at"], stored  # the run's, to the digit
    assert set(index["keys"]["SS"]) == {"run:Y:join:a", "run:Y:late", "lock:run:Y:decide"}


async def test_expire_run_of_a_run_without_keys_writes_only_its_index(table: Table) -> None:
    store = table.store()
    await store.expire_run("nothing", ttl=60)
    assert table.aws.take() == ["update_item"]
    index = await table.raw("runkeys:nothing")
    assert index is not None
    assert "keys" not in index


# ------------------------------------------------------------------ prefixes and keys


async def test_keys_of_two_prefixes_do_not_collide(table: Table) -> None:
    a, b = table.store("a"), table.store("b")
    assert await a.compare_and_set("run:r:v", None, "from a")
    assert await b.compare_and_set("run:r:v", None, "from b")
    assert await a.set_add("run:r:s", "m") is True
    assert await b.set_add("run:r:s", "m") is True
    assert await a.acquire_lock("run:r:decide", ttl=10) == 1
    assert await b.acquire_lock("run:r:decide", ttl=10) == 1
    await a.expire_run("r", ttl=60)

    assert await a.get("run:r:v") == "from a"
    assert await b.get("run:r:v") == "from b"
    stored_a = await table.raw("a:run:r:v")
    stored_b = await table.raw("b:run:r:v")
    assert stored_a is not None
    assert "expires_at" in stored_a
    assert stored_b is not None
    assert "expires_at" not in stored_b
    assert await table.raw("run:r:v") is None
    index = await table.raw("a:runkeys:r")
    assert index is not None
    assert set(index["keys"]["SS"]) == {"a:run:r:v", "a:run:r:s", "a:lock:run:r:decide"}


def test_reserved_keys_and_prefixes_are_refused() -> None:
    store = DynamoDbCoordinationStore(table_name="t", endpoint_url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="reserved"):
        store.key("lock:x")
    with pytest.raises(ValueError, match="reserved"):
        store.key("runkeys:r")
    with pytest.raises(ValueError, match="prefix"):
        DynamoDbCoordinationStore(table_name="t", prefix="a:b", endpoint_url="http://x")


# ------------------------------------------------------------------ cost


async def test_one_request_per_primitive_once_a_key_is_indexed(table: Table) -> None:
    store, calls = table.store(), table.aws.take
    assert await store.set_add("run:r:s", "a")
    assert calls() == ["update_item", "update_item"]  # the index first, then the set
    assert await store.set_add("run:r:s", "b")
    assert await store.set_add("run:r:s", "b") is False
    assert calls() == ["update_item", "update_item"]
    assert await store.compare_and_set("run:r:v", None, "x")
    assert calls() == ["update_item", "update_item"]  # a new key: indexed
    assert await store.compare_and_set("run:r:v", "x", "y")
    assert await store.get("run:r:v") == "y"
    assert calls() == ["update_item", "get_item"]
    token = await store.acquire_lock("run:r:decide", ttl=10)
    assert token is not None
    assert calls() == ["update_item", "update_item"]
    assert await store.acquire_lock("run:r:decide", ttl=10) is None
    assert await store.release_lock("run:r:decide", token)
    assert await store.set_add("global", "m")  # not a run key: no index
    assert calls() == ["update_item"] * 3
    await store.expire_run("r", ttl=60)
    assert calls() == ["update_item"] * 4  # the index, then its three keys


async def test_close_leaves_a_shared_aws_open(table: Table) -> None:
    store = table.store()
    await store.close()
    assert table.aws.closed is False
    owned = DynamoDbCoordinationStore(table_name=table.name, endpoint_url="http://127.0.0.1:1")
    await owned.close()
    assert owned._aws.closed is True
