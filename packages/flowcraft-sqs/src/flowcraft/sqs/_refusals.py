"""What a refused write of the run store does next: a refused create, a refused save.

A create refused by its conditions (the run id, or the idempotency key, exists) answers the
run that exists (:meth:`Refusals.existing`), reading it again while a concurrent create has
not yet become readable. :meth:`Refusals.transact` sends a save's transaction (built by
``DynamoDbContext.save_state``: the header's compare-and-set ``ver = expected AND
attribute_not_exists(pending)``) and, refused, reads the header from the cancellation reason
(``ALL_OLD``; else one read): the save's own nonce there means botocore retried a transaction
that had committed (saved); a journal a dead writer left pending at the expected version is
rolled forward and the save sent again; failed claims alone make it go again without them; a
lost race with a cancelled transaction is retried; anything else is a refusal (False).
"""

from __future__ import annotations

import asyncio

from flowcraft.core import ports
from flowcraft.core.errors import TransientBackendError
from flowcraft.sqs import _items as it
from flowcraft.sqs import _writes as w
from flowcraft.sqs._dynamo import READ_RETRIES, Item, Tables
from flowcraft.sqs._errors import Refused
from flowcraft.sqs._journal import Journal, pending_of
from flowcraft.sqs._reads import Reads

__all__ = ["Refusals"]


class Refusals:
    """Refused creates and saves of one store, and what they do next."""

    def __init__(self, tables: Tables, journal: Journal, reads: Reads) -> None:
        self._tables, self._journal, self._reads = tables, journal, reads

    # ------------------------------------------------------------------ create

    async def existing(self, record: ports.RunRecord, refused: Refused) -> ports.RunRecord | None:
        """The run a refused create found (same id, or same idempotency key); None: retry.

        The refusal's answer holds the items that failed their conditions (``ALL_OLD``): the
        run's status item (part 1) is its record, the idempotency key's item (part 2) names
        the run that holds it; without them (an emulator's answer), they are read.
        """
        status = refused.current(1) if refused.failed(1) else None
        if status is not None and "runId" in status:
            return await self._reads.record_of(dict(status))
        held = refused.current(2) if refused.failed(2) and not refused.failed(1) else None
        if held is not None and "run" in held:  # only the key exists: its run's record
            found = await self._reads.get_run(held["run"]["S"])
            if found is not None:
                return found
        for _ in range(READ_RETRIES):
            found = await self._reads.get_run(record.run_id)
            if found is None and record.idempotency_key is not None and refused.failed(2):
                idem = await self._tables.get(f"idem#{record.idempotency_key}", "!i")
                if idem is not None:
                    found = await self._reads.get_run(idem["run"]["S"])
            if found is not None:
                return found
            if refused.conflict:
                return None
            await asyncio.sleep(0.01)
        raise TransientBackendError(f"run {record.run_id}: created elsewhere but not readable")

    # ------------------------------------------------------------------ save

    async def transact(
        self, run_id: str, expected_version: int, nonce: str, transaction: list[Item]
    ) -> bool:
        """Run a save's transaction: True if it stands, False if it was refused."""
        for _ in range(3):
            try:
                await self._tables.transact(transaction)
            except Refused as refused:
                retry = await self._after_refusal(
                    run_id, expected_version, nonce, refused, transaction
                )
                if not isinstance(retry, list):
                    return retry is True
                transaction = retry
            else:
                return True
        return False

    async def _after_refusal(
        self,
        run_id: str,
        expected_version: int,
        nonce: str,
        refused: Refused,
        transaction: list[Item],
    ) -> list[Item] | bool | None:
        """What a refused save does next: a new transaction, True (it landed), None (refused)."""
        if refused.code != "TransactionCanceledException":
            return None
        if not (refused.failed(0) or refused.conflict):
            return w.without_failed_claims(refused, transaction)
        head = refused.current(0) if refused.failed(0) else None  # the answer's, or read
        head = head or await self._tables.get(run_id, it.HEADER) or {"ver": {"N": "-1"}}
        if head.get("w", {}).get("S") == nonce:
            return True  # a retry of a transaction that had committed
        pending = pending_of(head)
        if int(head["ver"]["N"]) == expected_version and pending is not None:
            await self._journal.roll_forward(run_id, pending)
            return transaction
        if not (refused.conflict and int(head["ver"]["N"]) == expected_version):
            return None
        await asyncio.sleep(0.005)  # lost a race with a transaction that was cancelled
        return transaction
