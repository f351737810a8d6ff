"""Attempts of a run: claims, lease extensions and first-writer-wins outcomes.

An attempt is one item of the contexts table (``t#<attempt>``: owner, lease, outcome).
:meth:`Attempts.claim` takes its lease by a conditional update; the claims of one event-loop
turn (a fan-out's jobs received together, ``flowcraft.core.aio.TurnBatch``) go out as one
``TransactWriteItems``, and the ones whose condition refused it are answered from the items
the cancellation returns (``ALL_OLD``: BUSY, or DONE with the outcome; claimed again alone
where it returned none), the others go together again. :meth:`Attempts.commit` writes an
outcome unless one stands and answers the standing one; outcomes known to stand (the last
10,000 this process committed or read) are answered without a call, as they never change.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowcraft.core import ports
from flowcraft.core.aio import TurnBatch
from flowcraft.core.errors import TransientBackendError
from flowcraft.sqs import _items as it
from flowcraft.sqs._dynamo import ALL_OLD, READ_RETRIES, Item, Tables, n, s
from flowcraft.sqs._errors import Refused
from flowcraft.sqs._writes import MAX_ITEMS, NO_OUTCOME, outcome_update

__all__ = ["Attempts"]


@dataclass(frozen=True, slots=True, eq=False)
class _Claim:
    run_id: str
    attempt: str
    owner: str
    lease: float


class Attempts:
    """Claims and outcomes of attempts, with the outcomes this process knows to stand."""

    def __init__(self, tables: Tables) -> None:
        self._tables = tables
        self._outcomes: OrderedDict[tuple[str, str], bytes] = OrderedDict()  # known to stand
        self._claims: TurnBatch[_Claim, ports.AttemptClaim] = TurnBatch(
            self._claim_many, limit=MAX_ITEMS, spawn=tables.spawn
        )

    # ------------------------------------------------------------------ claims

    async def claim(
        self, run_id: str, attempt: str, owner: str, lease: float
    ) -> ports.AttemptClaim:
        """Take the lease, with the other claims of this loop turn."""
        return await self._claims.submit(_Claim(run_id, attempt, owner, lease))

    async def _claim_many(self, claims: list[_Claim]) -> list[ports.AttemptClaim | BaseException]:
        """Claims in one ``TransactWriteItems``; refused ones alone, the others together again."""
        firsts = {(c.run_id, c.attempt): c for c in reversed(claims)}  # one write per item
        together = [c for c in claims if firsts[(c.run_id, c.attempt)] is c]
        if len(together) < 2:
            return await _each(self._claim_one, claims)
        now = time.time()
        try:
            await self._tables.aws.dynamodb(
                "transact_write_items", ClientRequestToken=uuid.uuid4().hex,
                TransactItems=[
                    {"Update": self._claim_update(c, now) | ALL_OLD} for c in together
                ],
            )  # fmt: skip
        except Refused as refused:
            return await self._after_refusal(claims, together, refused)
        claimed = {
            c: ports.AttemptClaim(status=ports.ClaimStatus.CLAIMED, lease_until=now + c.lease)
            for c in together
        }
        return [claimed.get(c) or await self._claim_one(c) for c in claims]

    async def _after_refusal(
        self, claims: list[_Claim], together: list[_Claim], refused: Refused
    ) -> list[ports.AttemptClaim | BaseException]:
        """Answer a refused turn: refused claims from their items, the fine ones again."""
        reasons = list(refused.reasons)
        fine = [c for i, c in enumerate(together) if reasons[i : i + 1] == ["None"]]
        if len(fine) == len(together):
            fine = []  # no reason given: every claim alone
        current = {c: refused.current(i) for i, c in enumerate(together) if refused.failed(i)}
        answers: dict[_Claim, ports.AttemptClaim | BaseException] = {}
        for claim, item in current.items():
            if item is not None:
                answers[claim] = await self._refused_claim(claim, dict(item))
        alone = [c for c in claims if c not in fine and c not in answers]
        answers |= zip(alone, await _each(self._claim_one, alone), strict=True)
        answers |= zip(fine, await self._claim_many(fine), strict=True)
        return [answers[c] for c in claims]

    async def _refused_claim(self, claim: _Claim, item: Item) -> ports.AttemptClaim:
        """The answer to a claim refused by the attempt's current ``item``: DONE or BUSY."""
        outcome = await self._outcome_of(claim.run_id, item)
        if outcome is not None:
            self.stands(claim.run_id, claim.attempt, outcome)
            return ports.AttemptClaim(status=ports.ClaimStatus.DONE, outcome=outcome)
        return ports.AttemptClaim(status=ports.ClaimStatus.BUSY,
                                  lease_until=float(item["lease"]["N"]))  # fmt: skip

    def _claim_update(self, claim: _Claim, now: float) -> Item:
        """The conditional update that takes a claim's lease."""
        return {
            "TableName": self._tables.context_table,
            "Key": {"runId": s(claim.run_id), "sk": s(it.attempt_key(claim.attempt))},
            "UpdateExpression": "SET #o = :o, lease = :l",
            "ConditionExpression": (
                "attribute_not_exists(outcome) AND attribute_not_exists(outcome_ref) AND "
                "(attribute_not_exists(lease) OR #o = :o OR lease <= :now)"
            ),
            "ExpressionAttributeNames": {"#o": "owner"},
            "ExpressionAttributeValues": {
                ":o": s(claim.owner), ":l": n(now + claim.lease), ":now": n(now)
            },
        }  # fmt: skip

    async def _claim_one(self, claim: _Claim) -> ports.AttemptClaim:
        """Take the lease: one conditional ``UpdateItem`` (the current item if refused)."""
        run_id, attempt = claim.run_id, claim.attempt
        now = time.time()
        try:
            await self._tables.aws.dynamodb(
                "update_item", ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **self._claim_update(claim, now),
            )  # fmt: skip
        except Refused as refused:
            item = dict(refused.item) if refused.item else await self._attempt(run_id, attempt)
            if item is None:
                return await self._claim_one(claim)
            return await self._refused_claim(claim, item)
        return ports.AttemptClaim(status=ports.ClaimStatus.CLAIMED, lease_until=now + claim.lease)

    async def _attempt(self, run_id: str, attempt: str) -> Item | None:
        return await self._tables.get(run_id, it.attempt_key(attempt))

    async def _outcome_of(self, run_id: str, item: Mapping[str, Any]) -> bytes | None:
        stored = it.stored_value(item, "outcome")
        if stored is None or isinstance(stored, bytes):
            return stored
        return (await self._tables.resolve({(run_id, stored)}))[(run_id, stored.sha)]

    async def extend(self, run_id: str, attempt: str, owner: str, lease: float) -> bool:
        """Extend the owner's lease: one conditional ``UpdateItem``."""
        try:
            await self._tables.aws.dynamodb(
                "update_item", TableName=self._tables.context_table,
                Key={"runId": s(run_id), "sk": s(it.attempt_key(attempt))},
                UpdateExpression="SET lease = :l",
                ConditionExpression=f"#o = :o AND {NO_OUTCOME}",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":o": s(owner), ":l": n(time.time() + lease)},
            )  # fmt: skip
        except Refused:
            return False
        return True

    # ------------------------------------------------------------------ outcomes

    async def commit(self, run_id: str, attempt: str, outcome: bytes) -> bytes:
        """First writer wins; the standing outcome back (known ones without a call)."""
        known = self._outcomes.get((run_id, attempt))
        if known is not None:
            return known
        standing = await self._commit(run_id, attempt, outcome)
        self.stands(run_id, attempt, standing)
        return standing

    def stands(self, run_id: str, attempt: str, outcome: bytes) -> None:
        """Note an outcome known to be the committed one (the last 10,000)."""
        self._outcomes[(run_id, attempt)] = outcome
        self._outcomes.move_to_end((run_id, attempt))
        while len(self._outcomes) > 10_000:
            self._outcomes.popitem(last=False)

    async def _commit(self, run_id: str, attempt: str, outcome: bytes) -> bytes:
        blobs = it.Blobs()
        table = self._tables.context_table
        update = outcome_update(table, run_id, attempt, outcome, blobs)["Update"]
        await self._tables.write_blobs(run_id, blobs)
        for _ in range(READ_RETRIES):
            try:
                await self._tables.aws.dynamodb(
                    "update_item", ReturnValuesOnConditionCheckFailure="ALL_OLD", **update
                )
            except Refused as refused:
                item = dict(refused.item) if refused.item else await self._attempt(run_id, attempt)
                standing = await self._outcome_of(run_id, item) if item else None
                if standing is not None:
                    return standing
                continue
            except TransientBackendError:
                await asyncio.sleep(0.01)
                continue
            return outcome
        raise TransientBackendError(f"run {run_id}: could not commit attempt {attempt}")

    async def commit_all(self, run_id: str, outcomes: Sequence[tuple[str, bytes]]) -> bool:
        """Commit each outcome on its own; True if every one of them is the one that stands."""
        standing = await asyncio.gather(*(self.commit(run_id, a, o) for a, o in outcomes))
        return all(got == o for got, (_, o) in zip(standing, outcomes, strict=True))


async def _each(
    claim: Callable[[_Claim], Awaitable[ports.AttemptClaim]], claims: Sequence[_Claim]
) -> list[ports.AttemptClaim | BaseException]:
    """Each claim on its own, concurrently; its answer or its error."""
    return await asyncio.gather(*(claim(c) for c in claims), return_exceptions=True)
