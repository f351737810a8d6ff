"""Which outbox item holds which message, as this process knows it: pure bookkeeping, no I/O.

A run's outbox is one item per save (``o#<version>``, see ``_items.py``) holding all of that
save's messages, so a fan-out of eight writes one item, not eight, and removing them after
sending deletes one. Removal names messages by id, so the store needs the item of each id: it
learns them from its own saves and from full loads (:meth:`OutboxBook.saved`,
:meth:`OutboxBook.loaded`), and :meth:`OutboxBook.plan` turns the ids to remove into

* ``deletes``: items every message of which goes (or went before, as far as this process
  knows): deleted, once; afterwards their ids count as removed, so a later removal of the
  same ids (the deferred removal after sending, the next save's ``sent``, the save that
  commits the attempt's outcome) writes nothing;
* ``trims``: items keeping some messages: ``remove_outbox`` notes the others in the item's
  ``gone`` set; a save only notes them here (removal is an optimisation), and deletes the
  item once the rest has gone too;
* ``unknown``: ids of no item this process knows, nor removed by it: ``remove_outbox`` reads
  the run's outbox items to find them (then :meth:`OutboxBook.absent` for those in none); a
  save leaves them (an item another process wrote is that process's or a full load's job).

What another process removed meanwhile may be deleted again (harmless); an item another
process wrote is found by a full load or by ``remove_outbox``'s read. The book forgets the
least recently used runs past ``capacity``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["OutboxBook", "Plan"]


@dataclass(frozen=True, slots=True)
class Plan:
    """What removing some messages of one run writes (item keys are the versions' keys)."""

    deletes: tuple[str, ...] = ()
    trims: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()


@dataclass(slots=True)
class _Run:
    items: dict[str, list[str]] = field(default_factory=dict)  # key -> ids still needed
    removed: set[str] = field(default_factory=set)  # ids removed (or found in no item)


class OutboxBook:
    """Outbox items of runs and the ids each still holds, as this process knows them."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._capacity = capacity

    def _run(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _Run()
            while len(self._runs) > self._capacity:
                self._runs.popitem(last=False)
        self._runs.move_to_end(run_id)
        return run

    def saved(self, run_id: str, key: str, ids: Sequence[str]) -> None:
        """A save of this process wrote item ``key`` holding ``ids``."""
        run = self._run(run_id)
        run.items[key] = list(dict.fromkeys(ids))
        run.removed.difference_update(ids)

    def loaded(self, run_id: str, items: Mapping[str, Sequence[str]]) -> None:
        """A read found these items (key -> ids not removed): the run's whole outbox."""
        run = self._run(run_id)
        run.items = {key: list(dict.fromkeys(ids)) for key, ids in items.items() if ids}
        for ids in run.items.values():
            run.removed.difference_update(ids)

    def plan(self, run_id: str, ids: Iterable[str]) -> Plan:
        """How to remove ``ids`` from the run's outbox (see the module docstring)."""
        wanted = dict.fromkeys(ids)
        run = self._runs.get(run_id)
        if run is None:
            return Plan(unknown=tuple(wanted))
        deletes: list[str] = []
        trims: dict[str, tuple[str, ...]] = {}
        found: set[str] = set()
        for key, held in run.items.items():
            hit = tuple(i for i in held if i in wanted)
            if not hit:
                continue
            found.update(hit)
            if len(hit) == len(held):
                deletes.append(key)
            else:
                trims[key] = hit
        unknown = tuple(i for i in wanted if i not in found and i not in run.removed)
        return Plan(deletes=tuple(deletes), trims=trims, unknown=unknown)

    def done(self, run_id: str, plan: Plan) -> None:
        """``plan``'s deletions and trims were written (or, for a save, its trims noted)."""
        run = self._run(run_id)
        for key in plan.deletes:
            run.removed.update(run.items.pop(key, ()))
        for key, ids in plan.trims.items():
            held = run.items.get(key)
            if held is not None:
                gone = set(ids)
                held[:] = [i for i in held if i not in gone]
                run.removed.update(gone)

    def absent(self, run_id: str, ids: Iterable[str]) -> None:
        """``ids`` are in none of the run's outbox items (nothing to remove)."""
        self._run(run_id).removed.update(ids)
