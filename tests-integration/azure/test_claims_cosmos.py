"""Claims of one loop turn on the Cosmos server: one transactional batch of creates per run.

The local server does not roll a refused batch back (201 before the refusal, 424 after);
each claim must still end with the answer ``claim_attempt`` alone would give, and its item
written once, by the right owner.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from flowcraft.azure import CosmosDbContext
from flowcraft.azure import _items as it
from flowcraft.azure._clients import cosmos_client
from flowcraft.core import ports

pytestmark = pytest.mark.service("cosmos")

CLAIMED, BUSY, DONE = ports.ClaimStatus.CLAIMED, ports.ClaimStatus.BUSY, ports.ClaimStatus.DONE


@pytest.fixture
async def store(cosmos_endpoint: dict[str, str]) -> AsyncIterator[CosmosDbContext]:
    database = f"t{uuid.uuid4().hex[:10]}"
    client = cosmos_client(url=cosmos_endpoint["url"], key=cosmos_endpoint["key"],
                           ca_file=cosmos_endpoint["ca_file"])  # fmt: skip
    made = CosmosDbContext(cosmos_client=client, cosmos_database_name=database)
    await made.ensure_schema()
    try:
        yield made
    finally:
        await made.close()
        await client.delete_database(database)
        await client.close()


class Requests:
    """Counts the item requests of one store's container by method (the rest unchanged)."""

    def __init__(self, store: CosmosDbContext) -> None:
        self.calls: dict[str, int] = {}
        for name in ("create_item", "execute_item_batch", "patch_item", "query_items"):
            setattr(store.container, name, self._counted(name, getattr(store.container, name)))

    def _counted(self, name: str, original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return original(*args, **kwargs)

        return call


async def turn(
    store: CosmosDbContext, run_id: str, attempts: list[str], owner: str = "w1"
) -> list[ports.AttemptClaim]:
    return await asyncio.gather(*(store.claim_attempt(run_id, a, owner, 30.0) for a in attempts))


async def test_eight_claims_of_one_turn_are_one_request(store: CosmosDbContext) -> None:
    run_id = f"fan-{uuid.uuid4().hex[:8]}"
    requests = Requests(store)
    answers = await turn(store, run_id, [f"n{i}:1" for i in range(8)])
    assert [a.status for a in answers] == [CLAIMED] * 8
    assert requests.calls == {"execute_item_batch": 1}
    again = await turn(store, run_id, ["n0:1"], owner="w2")
    assert again[0].status is BUSY


async def test_a_turn_over_done_busy_and_own_attempts_answers_each_as_alone(
    store: CosmosDbContext,
) -> None:
    run_id = f"mix-{uuid.uuid4().hex[:8]}"
    assert (await store.claim_attempt(run_id, "busy", "w2", 30.0)).status is CLAIMED
    assert (await store.claim_attempt(run_id, "mine", "w1", 30.0)).status is CLAIMED
    assert await store.commit_attempt(run_id, "done", b"out") == b"out"
    names = ["new0", "busy", "new1", "done", "new2", "mine", "new3"]
    answers = dict(zip(names, await turn(store, run_id, names), strict=True))
    assert {n: a.status for n, a in answers.items()} == {
        "new0": CLAIMED, "busy": BUSY, "new1": CLAIMED, "done": DONE,
        "new2": CLAIMED, "mine": CLAIMED, "new3": CLAIMED,
    }  # fmt: skip
    assert answers["done"].outcome == b"out"
    for name in names:  # each item written once, leased to whom the answer says
        items = await store._query(
            store.container, "SELECT * FROM c WHERE c.runId = @r AND c.id = @id",
            {"@r": run_id, "@id": it.attempt_id(run_id, name)}, run_id,
        )  # fmt: skip
        assert len(items) == 1
        owner = "w2" if name == "busy" else "" if name == "done" else "w1"
        assert items[0]["oh"] == (it.owner_hash(owner) if owner else "")


async def test_claims_of_two_runs_in_one_turn_are_one_batch_each(store: CosmosDbContext) -> None:
    runs = [f"two-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    requests = Requests(store)
    answers = await asyncio.gather(*(
        store.claim_attempt(r, f"n{i}:1", "w1", 30.0) for r in runs for i in range(3)
    ))  # fmt: skip
    assert [a.status for a in answers] == [CLAIMED] * 6
    assert requests.calls == {"execute_item_batch": 2}


async def test_a_save_s_claims_are_one_batch_and_never_over_an_existing_attempt(
    store: CosmosDbContext,
) -> None:
    run_id = f"save-{uuid.uuid4().hex[:8]}"
    await store.create_run(
        ports.RunRecord(run_id=run_id, blueprint_id="bp", blueprint_version="1",
                        blueprint_digest="d", status="running"), {},
    )  # fmt: skip
    assert (await store.claim_attempt(run_id, "b", "w2", 30.0)).status is CLAIMED
    requests = Requests(store)
    saved = await store.save_state(
        run_id, expected_version=1, header={}, records={}, context_writes={}, outbox=(),
        status="running", claims=[(a, "w1", 30.0) for a in "abcd"],
    )  # fmt: skip
    assert saved
    assert requests.calls.get("create_item", 0) == 0
    assert (await store.claim_attempt(run_id, "b", "w3", 30.0)).status is BUSY
    for attempt in "acd":
        assert (await store.claim_attempt(run_id, attempt, "w1", 30.0)).status is CLAIMED
        assert (await store.claim_attempt(run_id, attempt, "w3", 30.0)).status is BUSY
