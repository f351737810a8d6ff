"""``_claims``: a turn's claims as one batch per run, refusals read from each operation's status.

The container here is a stand-in of one module's collaborator: it applies a batch either
atomically (real Cosmos DB: nothing written, 409 at the refusing operation, 424 elsewhere) or
not (the local Cosmos server: 201 before the refusal, 424 after), so both semantics are
exercised; the integration tests run the same code against the local server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
from azure.cosmos import exceptions as cosmos_exc
from flowcraft.azure import _items as it
from flowcraft.azure._claims import Claim, ClaimBatches, create_new
from flowcraft.core import ports
from flowcraft.core.errors import TransientBackendError

CLAIMED = ports.ClaimStatus.CLAIMED


def _id(attempt: str) -> str:
    return it.attempt_id("r1", attempt)


class _Container:
    """Items by id; ``execute_item_batch`` of creates, atomic or not."""

    def __init__(self, *, atomic: bool, existing: tuple[str, ...] = ()) -> None:
        self.atomic = atomic
        self.items: dict[str, dict[str, Any]] = {i: {"id": i} for i in existing}
        self.batches: list[list[str]] = []
        self.creates: list[str] = []
        self.down = False

    async def execute_item_batch(self, operations: list[Any], partition_key: str) -> list[Any]:
        ids = [op[1][0]["id"] for op in operations]
        self.batches.append(ids)
        if self.down:
            raise cosmos_exc.CosmosHttpResponseError(status_code=503, message="down")  # type: ignore[no-untyped-call]
        refused = next((i for i, item_id in enumerate(ids) if item_id in self.items), None)
        if refused is None:
            self.items |= {op[1][0]["id"]: op[1][0] for op in operations}
            return []
        if self.atomic:
            statuses = [409 if i == refused else 424 for i in range(len(ids))]
        else:
            for op in operations[:refused]:
                self.items[op[1][0]["id"]] = op[1][0]
            statuses = [201] * refused + [409] + [424] * (len(ids) - refused - 1)
        raise cosmos_exc.CosmosBatchOperationError(  # type: ignore[no-untyped-call]
            error_index=refused, headers={}, status_code=409, message="conflict",
            operation_responses=[{"statusCode": s} for s in statuses],
        )  # fmt: skip

    async def create_item(self, item: dict[str, Any]) -> None:
        self.creates.append(item["id"])
        if item["id"] in self.items:
            raise cosmos_exc.CosmosResourceExistsError(status_code=409, message="x")  # type: ignore[no-untyped-call]
        self.items[item["id"]] = item


class _Store:
    """The ``alone`` path: a claim whose attempt exists is BUSY (no patch here)."""

    def __init__(self, container: _Container) -> None:
        self.container = container
        self.alone: list[tuple[str, bool]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def claim_alone(self, claim: Claim, exists: bool) -> ports.AttemptClaim:
        self.alone.append((claim.attempt, exists))
        if not exists:
            try:
                await self.container.create_item({"id": _id(claim.attempt)})
            except cosmos_exc.CosmosResourceExistsError:
                exists = True
        if exists:
            return ports.AttemptClaim(status=ports.ClaimStatus.BUSY, lease_until=1.0)
        return ports.AttemptClaim(status=CLAIMED, lease_until=1.0)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def _batches(container: _Container) -> tuple[ClaimBatches, _Store]:
    store = _Store(container)
    return ClaimBatches(container, alone=store.claim_alone, spawn=store.spawn), store


async def _turn(batches: ClaimBatches, *claims: tuple[str, str]) -> list[ports.AttemptClaim]:
    return await asyncio.gather(*(batches.claim(Claim(run, a, "w1", 30.0)) for run, a in claims))


async def test_one_turn_of_one_run_is_one_batch() -> None:
    container = _Container(atomic=True)
    batches, store = _batches(container)
    answers = await _turn(batches, *(("r1", f"a{i}") for i in range(8)))
    assert [a.status for a in answers] == [CLAIMED] * 8
    assert len(container.batches) == 1
    assert len(container.batches[0]) == 8
    assert container.creates == []
    assert store.alone == []


@pytest.mark.parametrize("atomic", [True, False], ids=["cosmos-atomic", "local-not-atomic"])
async def test_an_existing_attempt_is_answered_alone_and_the_others_are_claimed(
    atomic: bool,
) -> None:
    """a2 exists: it goes on past its create; a0, a1, a3, a4 end up claimed, each written once."""
    container = _Container(atomic=atomic, existing=(_id("a2"),))
    batches, store = _batches(container)
    answers = await _turn(batches, *(("r1", f"a{i}") for i in range(5)))
    statuses = [a.status for a in answers]
    assert statuses == [CLAIMED, CLAIMED, ports.ClaimStatus.BUSY, CLAIMED, CLAIMED]
    assert ("a2", True) in store.alone
    assert set(container.items) == {_id(f"a{i}") for i in range(5)}
    assert container.creates == []
    if atomic:  # nothing applied: all four again in one batch
        assert container.batches[1] == [_id(a) for a in ("a0", "a1", "a3", "a4")]
    else:  # a0, a1 applied by the first batch: only a3, a4 again
        assert container.batches[1] == [_id("a3"), _id("a4")]


async def test_claims_of_two_runs_are_two_batches_and_a_lone_claim_is_a_create() -> None:
    container = _Container(atomic=True)
    batches, store = _batches(container)
    answers = await _turn(batches, ("r1", "a"), ("r2", "b"), ("r2", "c"), ("r1", "d"), ("r3", "e"))
    assert [a.status for a in answers] == [CLAIMED] * 5
    assert sorted(len(b) for b in container.batches) == [2, 2]
    assert store.alone == [("e", False)]


async def test_a_second_claim_of_one_attempt_in_a_turn_goes_alone() -> None:
    container = _Container(atomic=True)
    batches, store = _batches(container)
    answers = await _turn(batches, ("r1", "a"), ("r1", "b"), ("r1", "a"))
    assert [a.status for a in answers] == [CLAIMED, CLAIMED, ports.ClaimStatus.BUSY]
    assert container.batches == [[_id("a"), _id("b")]]
    assert store.alone == [("a", False)]


async def test_a_batch_that_fails_as_a_whole_fails_each_claim() -> None:
    container = _Container(atomic=True)
    container.down = True
    batches, _ = _batches(container)
    answers = await asyncio.gather(
        *(batches.claim(Claim("r1", a, "w1", 30.0)) for a in "ab"), return_exceptions=True
    )
    assert all(isinstance(a, TransientBackendError) for a in answers)


@pytest.mark.parametrize("atomic", [True, False], ids=["cosmos-atomic", "local-not-atomic"])
async def test_a_save_s_claims_are_created_except_over_existing_attempts(atomic: bool) -> None:
    container = _Container(atomic=atomic)
    container.items = {"b": {"id": "b", "mine": False}}
    await create_new(container, "r1", [{"id": i, "attempt": i} for i in "abcd"])
    assert set(container.items) == set("abcd")
    assert container.items["b"] == {"id": "b", "mine": False}
