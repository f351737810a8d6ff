"""Deliberately broken variants of the in-memory backend (and of the reconciler).

Loaded as a pytest plugin (``-p flowcraft_mutants``) with ``FLOWCRAFT_MUTANT=<name>``: it
breaks one guarantee of ``flowcraft.core.ports`` (or the reconciler's one job) before the suite
runs. ``test_mutation.py`` runs the conformance suite on each and requires it to fail: a variant
the suite passes ("survives") is a blind spot that every adapter would inherit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest
from flowcraft.core._distributed import memory
from flowcraft.core._distributed.reconciler import Reconciler
from flowcraft.core.backends import Backend
from flowcraft.core.ports import AttemptClaim, ClaimStatus
from flowcraft.core.testing.memory import MemoryBackendFactory

MUTANT_ENV = "FLOWCRAFT_MUTANT"


def _reconciler_does_nothing() -> None:
    async def _reconcile(self: Reconciler, run_id: str) -> bool:
        del self, run_id
        return True

    Reconciler._reconcile = _reconcile  # type: ignore[method-assign]


def _delivery_extend_is_a_no_op() -> None:
    async def extend(self: memory.MemoryDelivery, seconds: float) -> None:
        del self, seconds

    memory.MemoryDelivery.extend = extend  # type: ignore[method-assign]


def _lease_extension_is_a_no_op() -> None:
    async def extend_attempt(
        self: memory.MemoryRunStore, run_id: str, attempt: str, owner: str, lease: float
    ) -> bool:
        del self, run_id, attempt, owner, lease
        return True

    memory.MemoryRunStore.extend_attempt = extend_attempt  # type: ignore[method-assign]


def _delivery_count_stuck_at_one() -> None:
    original = memory.MemoryDelivery.__init__

    def stuck(self: memory.MemoryDelivery, queue: memory.MemoryJobQueue, entry: object) -> None:
        original(self, queue, entry)  # type: ignore[arg-type]
        self.delivery_count = 1

    memory.MemoryDelivery.__init__ = stuck  # type: ignore[method-assign]


def _no_coordination_store() -> None:
    original = MemoryBackendFactory.create

    async def create(self: MemoryBackendFactory, namespace: str) -> Backend:
        backend = await original(self, namespace)
        backend.coordination = None
        return backend

    MemoryBackendFactory.create = create  # type: ignore[method-assign]


def _last_writer_wins_commits() -> None:
    def _commit(self: memory.MemoryRunStore, run_id: str, attempt: str, outcome: bytes) -> bytes:
        current = self._attempts.setdefault((run_id, attempt), memory._Attempt("", 0.0))
        current.outcome = outcome
        return outcome

    memory.MemoryRunStore._commit = _commit  # type: ignore[method-assign]


def _saves_ignore_the_expected_version() -> None:
    original = memory.MemoryRunStore.save_state

    async def save_state(self: memory.MemoryRunStore, run_id: str, **fields: Any) -> bool:
        run = self._runs.get(run_id)
        if run is not None:
            fields["expected_version"] = run.version
        return await original(self, run_id, **fields)

    memory.MemoryRunStore.save_state = save_state  # type: ignore[method-assign]


def _dead_letters_dropped() -> None:
    async def dead_letter(self: memory.MemoryDelivery, reason: str) -> None:
        del reason
        if self._owned():
            self._queue._settle(self._entry)

    memory.MemoryDelivery.dead_letter = dead_letter  # type: ignore[method-assign]


def _delays_ignored() -> None:
    original = memory.MemoryJobQueue._schedule

    def _schedule(self: memory.MemoryJobQueue, entry: Any, delay: float) -> None:
        del delay
        original(self, entry, 0.0)

    memory.MemoryJobQueue._schedule = _schedule  # type: ignore[method-assign]


def _leases_never_expire() -> None:
    original = memory.MemoryRunStore.claim_attempt

    async def claim_attempt(
        self: memory.MemoryRunStore, run_id: str, attempt: str, owner: str, lease: float
    ) -> AttemptClaim:
        current = self._attempts.get((run_id, attempt))
        if current is not None and current.outcome is None and current.owner not in ("", owner):
            return AttemptClaim(status=ClaimStatus.BUSY, lease_until=current.lease_until + 3600)
        return await original(self, run_id, attempt, owner, lease)

    memory.MemoryRunStore.claim_attempt = claim_attempt  # type: ignore[method-assign]


def _acks_lost() -> None:
    async def ack(self: memory.MemoryDelivery) -> None:
        del self

    memory.MemoryDelivery.ack = ack  # type: ignore[method-assign]


def _context_writes_replace_the_context() -> None:
    original = memory.MemoryRunStore.save_state

    async def save_state(self: memory.MemoryRunStore, run_id: str, **fields: Any) -> bool:
        writes: Mapping[str, object] = fields.get("context_writes", {})
        saved = await original(self, run_id, **fields)
        run = self._runs.get(run_id)
        if saved and run is not None and writes:
            run.context = {k: v for k, v in run.context.items() if k in writes}
        return saved

    memory.MemoryRunStore.save_state = save_state  # type: ignore[method-assign]


def _create_run_not_idempotent_by_key() -> None:
    original = memory.MemoryRunStore.create_run

    async def create_run(
        self: memory.MemoryRunStore, record: Any, header: Any, records: Any = None
    ) -> Any:
        self._keys.clear()
        return await original(self, record, header, records)

    memory.MemoryRunStore.create_run = create_run  # type: ignore[method-assign]


def _outbox_not_kept() -> None:
    original = memory.MemoryRunStore.save_state

    async def save_state(self: memory.MemoryRunStore, run_id: str, **fields: Any) -> bool:
        outbox: Sequence[object] = ()
        return await original(self, run_id, **{**fields, "outbox": outbox})

    memory.MemoryRunStore.save_state = save_state  # type: ignore[method-assign]


#: Every variant: name -> what breaking it does. ``test_mutation`` requires each to fail.
def _records_rewritten_whole() -> None:
    """Each save's records replace the run's records (a whole-state rewrite gone wrong)."""
    original = memory.MemoryRunStore.save_state

    async def save_state(self: memory.MemoryRunStore, run_id: str, **fields: Any) -> bool:
        saved = await original(self, run_id, **fields)
        if saved:
            run = self._runs[run_id]
            run.records = {k: v for k, v in run.records.items() if k in fields["records"]}
        return saved

    memory.MemoryRunStore.save_state = save_state  # type: ignore[method-assign]


def _keys_asked_for_are_ignored() -> None:
    """A load since a version leaves out the records the caller asked back."""
    original = memory.MemoryRunStore.load_state

    async def load_state(
        self: memory.MemoryRunStore, run_id: str, *, since: int | None = None, keys: Any = ()
    ) -> Any:
        del keys
        return await original(self, run_id, since=since)

    memory.MemoryRunStore.load_state = load_state  # type: ignore[method-assign]


def _delta_loads_miss_the_latest_save() -> None:
    """A load since a version leaves out what the latest save wrote (an off-by-one)."""
    original = memory.MemoryRunStore.load_state

    async def load_state(
        self: memory.MemoryRunStore, run_id: str, *, since: int | None = None, keys: Any = ()
    ) -> Any:
        stored = await original(self, run_id, since=since, keys=keys)
        if stored is None or since is None:
            return stored
        run = self._runs[run_id]
        wanted = set(keys)
        latest = {k for k, (at, _) in run.records.items() if at == run.version}
        records = {k: v for k, v in stored.records.items() if k not in latest or k in wanted}
        return replace(stored, records=records)

    memory.MemoryRunStore.load_state = load_state  # type: ignore[method-assign]


def _refused_saves_send_their_notice() -> None:
    """A terminal save's notice goes out whether or not the save commits."""
    original = memory.MemoryRunStore.save_state

    async def save_state(self: memory.MemoryRunStore, run_id: str, **fields: Any) -> bool:
        saved = await original(self, run_id, **fields)
        if not saved and fields.get("notice") and fields["status"] in memory._TERMINAL:
            self._watchers.notify(run_id, fields["notice"])
        return saved

    memory.MemoryRunStore.save_state = save_state  # type: ignore[method-assign]


MUTANTS: dict[str, Callable[[], None]] = {
    "reconciler-does-nothing": _reconciler_does_nothing,
    "delivery-extend-no-op": _delivery_extend_is_a_no_op,
    "lease-extension-no-op": _lease_extension_is_a_no_op,
    "delivery-count-stuck-at-1": _delivery_count_stuck_at_one,
    "no-coordination-store": _no_coordination_store,
    "last-writer-wins-commits": _last_writer_wins_commits,
    "saves-ignore-expected-version": _saves_ignore_the_expected_version,
    "dead-letters-dropped": _dead_letters_dropped,
    "delays-ignored": _delays_ignored,
    "leases-never-expire": _leases_never_expire,
    "acks-lost": _acks_lost,
    "context-writes-replace-the-context": _context_writes_replace_the_context,
    "idempotency-key-ignored": _create_run_not_idempotent_by_key,
    "outbox-not-kept": _outbox_not_kept,
    "records-rewritten-whole": _records_rewritten_whole,
    "keys-asked-for-ignored": _keys_asked_for_are_ignored,
    "delta-loads-miss-the-latest-save": _delta_loads_miss_the_latest_save,
    "refused-saves-send-their-notice": _refused_saves_send_their_notice,
}


def pytest_configure(config: pytest.Config) -> None:
    """Apply the mutant named by ``FLOWCRAFT_MUTANT`` (none: the backend as it is)."""
    del config
    name = os.environ.get(MUTANT_ENV)
    if name:
        MUTANTS[name]()
