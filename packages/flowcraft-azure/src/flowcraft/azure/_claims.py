"""Attempt claims of one event-loop turn as one transactional batch of creates per run.

A worker that receives a fan-out's jobs together claims their attempts in the same loop turn.
:class:`ClaimBatches` gathers those claims (``flowcraft.core.aio.TurnBatch``) and writes the
new attempt items of each run as ONE ``execute_item_batch`` of creates in the run's partition
(at most 100 operations, Cosmos DB's cap) instead of one ``create_item`` each.

Each claim is still its own first-writer-wins create; what a refused batch means is read
from each operation's status (``Refused.statuses``), which is right on both servers:

* real Cosmos DB applies a batch atomically: the refusing operation answers 409 (its attempt
  exists) and every other one 424 (not applied);
* the local Cosmos server does not roll a batch back: the operations before the refusing one
  answer 201 (applied), the ones after it 424.

So 201 is a claim taken, 409 a claim that goes on alone past its create (``alone(claim,
True)``: the patch admitted for the same owner or an expired lease, else BUSY/DONE from the
item), and 424 (or anything else) a claim sent again with the other unapplied ones, in a
smaller batch: every round settles at least the refusing claim, so the rounds end. A run with
one claim in the turn, and a second claim of the same attempt in one turn, go alone
(``alone(claim, False)``: a create first). An error of the whole batch is each claim's.

:func:`create_new` writes the attempts a save starts (``save_state(claims=...)``) the same
way: one batch of creates, never over an existing attempt (409s are dropped, the unapplied
ones go again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from flowcraft.azure import _items as it
from flowcraft.azure._errors import Refused, edge
from flowcraft.core import ports
from flowcraft.core.aio import TurnBatch

__all__ = ["MAX_BATCH", "Claim", "ClaimBatches", "attempt_item", "create_new"]

#: Operations in one transactional batch (Cosmos DB's cap).
MAX_BATCH = 100
#: Per-operation statuses of a batch: created, exists.
_CREATED, _EXISTS = 201, 409

Item = dict[str, Any]
Answer = ports.AttemptClaim | BaseException


@dataclass(frozen=True, slots=True, eq=False)
class Claim:
    """One ``claim_attempt`` call."""

    run_id: str
    attempt: str
    owner: str
    lease: float


def attempt_item(run_id: str, attempt: str, owner: str, until: float) -> Item:
    """A new attempt item: leased to ``owner`` until ``until``, no outcome."""
    return {"id": it.attempt_id(run_id, attempt), "runId": run_id, "kind": "attempt",
            "attempt": attempt, "oh": it.owner_hash(owner), "lease": until,
            "outcome": None}  # fmt: skip


async def create_batch(runs: Any, run_id: str, items: Sequence[Item]) -> list[int]:  # noqa: ANN401
    """Create ``items`` of one run in one transactional batch; each operation's status.

    All 201 when the batch was applied; a refused batch's statuses otherwise (see the
    module). Errors other than a refusal leave as backend errors.
    """
    operations = [("create", (item,)) for item in items]
    try:
        with edge(f"run {run_id}: create {len(items)} attempts"):
            await runs.execute_item_batch(operations, partition_key=run_id)
    except Refused as refused:
        statuses = list(refused.statuses)
        return statuses if len(statuses) == len(items) else [0] * len(items)
    return [_CREATED] * len(items)


async def create_new(runs: Any, run_id: str, items: Sequence[Item]) -> None:  # noqa: ANN401
    """Create those of ``items`` (one run's attempts) that do not exist, batched by 100."""
    pending = list(items)
    while pending:
        part, pending = pending[:MAX_BATCH], pending[MAX_BATCH:]
        if len(part) == 1:
            await _create_one(runs, run_id, part[0])
            continue
        statuses = await create_batch(runs, run_id, part)
        again = [i for i, s in zip(part, statuses, strict=True) if s not in {_CREATED, _EXISTS}]
        if len(again) == len(part):  # no reason given: each alone
            await asyncio.gather(*(_create_one(runs, run_id, i) for i in again))
        else:
            pending = again + pending


async def _create_one(runs: Any, run_id: str, item: Item) -> None:  # noqa: ANN401
    try:
        with edge(f"run {run_id}: lease {item['attempt']}"):
            await runs.create_item(item)
    except Refused:
        pass  # never over an existing attempt


class ClaimBatches:
    """Claims of one loop turn: one batch of creates per run (see the module).

    Args:
        runs: The contexts container (``azure.cosmos.aio.ContainerProxy``).
        alone: Claims one attempt on its own; ``True`` as second argument when its create
            was already refused (the attempt exists).
        spawn: Runs a coroutine in a task the store waits for on close.
    """

    def __init__(
        self,
        runs: Any,  # noqa: ANN401 (an aio ContainerProxy)
        *,
        alone: Callable[[Claim, bool], Awaitable[ports.AttemptClaim]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._runs = runs
        self._alone = alone
        self._turn: TurnBatch[Claim, ports.AttemptClaim] = TurnBatch(
            self._claim_many, limit=MAX_BATCH, spawn=spawn
        )

    async def claim(self, claim: Claim) -> ports.AttemptClaim:
        """Take ``claim``'s lease, together with the other claims of this loop turn."""
        return await self._turn.submit(claim)

    async def _claim_many(self, claims: list[Claim]) -> list[Answer]:
        """One batch per run of the first claim of each attempt; the rest alone."""
        firsts = {(c.run_id, c.attempt): c for c in reversed(claims)}
        runs: dict[str, list[Claim]] = {}
        for claim in claims:
            if firsts[(claim.run_id, claim.attempt)] is claim:
                runs.setdefault(claim.run_id, []).append(claim)
        answers: dict[Claim, Answer] = {}
        for found in await asyncio.gather(*(self._run_batch(g) for g in runs.values())):
            answers |= found
        rest = [c for c in claims if c not in answers]
        answers |= zip(rest, await self._each(rest, exists=False), strict=True)
        return [answers[c] for c in claims]

    async def _run_batch(self, claims: list[Claim]) -> dict[Claim, Answer]:
        """Claims of one run (distinct attempts) in one batch, refusals answered as above."""
        if len(claims) < 2:
            return dict(zip(claims, await self._each(claims, exists=False), strict=True))
        now = time.time()
        items = [attempt_item(c.run_id, c.attempt, c.owner, now + c.lease) for c in claims]
        try:
            statuses = await create_batch(self._runs, claims[0].run_id, items)
        except Exception as exc:  # the batch failed as a whole: so did each claim
            return dict.fromkeys(claims, exc)
        answers: dict[Claim, Answer] = {
            c: ports.AttemptClaim(status=ports.ClaimStatus.CLAIMED, lease_until=now + c.lease)
            for c, s in zip(claims, statuses, strict=True)
            if s == _CREATED
        }
        exist = [c for c, s in zip(claims, statuses, strict=True) if s == _EXISTS]
        again = [c for c in claims if c not in answers and c not in exist]
        if again and not exist:  # refused, but no operation said why: each alone
            return answers | dict(zip(again, await self._each(again, exists=False), strict=True))
        settled, retried = await asyncio.gather(
            self._each(exist, exists=True), self._run_batch(again)
        )
        answers |= zip(exist, settled, strict=True)
        return answers | retried

    async def _each(self, claims: Sequence[Claim], *, exists: bool) -> list[Answer]:
        """Each claim on its own, concurrently; its answer or its error."""
        return await asyncio.gather(*(self._alone(c, exists) for c in claims),
                                    return_exceptions=True)  # fmt: skip
