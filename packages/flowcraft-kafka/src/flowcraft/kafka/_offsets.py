"""Which offsets of a partition are settled, and what to commit: pure bookkeeping, no I/O.

A classic consumer group commits one offset per partition: "everything below is done". The
adapter hands out many messages of a partition at once and they settle in any order, so the
offset committed is the lowest *unsettled* one (everything below it is settled): a consumer
that dies, or loses the partition in a rebalance, never commits work it did not finish.

What lies above the committed offset travels in the commit's metadata string (Kafka keeps it
with the offset, up to ``offset.metadata.max.bytes``, 4,096 by default): which offsets are
settled already (the next owner skips them) and how often each unsettled one was delivered
(the next owner delivers it with that count plus one). The metadata is committed before a
batch is handed out, so a consumer killed mid-node still leaves its counts behind.

Encoding (``v1|`` then runs, comma-separated): ``<first>+<length>:<state>`` with offsets
relative to the committed one, state ``s`` (settled) or a delivery count. Runs that do not
fit in :data:`METADATA_BUDGET` are left off: their offsets are delivered again with a count
that restarts (at-least-once still holds; only the count is low).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["METADATA_BUDGET", "SETTLED", "PartitionTracker", "decode", "encode"]

#: The longest metadata string committed (the broker's default limit is 4,096 bytes).
METADATA_BUDGET = 4000
#: The state of a settled offset (counts are >= 1).
SETTLED = 0
_PREFIX = "v1|"


def encode(base: int, states: dict[int, int]) -> str:
    """The metadata for offsets above ``base`` (offset -> count, or SETTLED)."""
    parts: list[str] = []
    size = len(_PREFIX)
    for first, length, state in _runs(base, states):
        part = f"{first - base}+{length}:{'s' if state == SETTLED else state}"
        if size + len(part) + 1 > METADATA_BUDGET:
            break
        parts.append(part)
        size += len(part) + 1
    return _PREFIX + ",".join(parts)


def _runs(base: int, states: dict[int, int]) -> Iterator[tuple[int, int, int]]:
    run: list[int] = []  # [first, length, state]
    for offset in sorted(o for o in states if o >= base):
        state = states[offset]
        if run and offset == run[0] + run[1] and state == run[2]:
            run[1] += 1
            continue
        if run:
            yield run[0], run[1], run[2]
        run = [offset, 1, state]
    if run:
        yield run[0], run[1], run[2]


def decode(base: int, metadata: str | None) -> dict[int, int]:
    """Offset -> count or SETTLED from a committed metadata string (foreign text: nothing)."""
    if not metadata or not metadata.startswith(_PREFIX):
        return {}
    states: dict[int, int] = {}
    try:
        for part in filter(None, metadata[len(_PREFIX) :].split(",")):
            span, state = part.split(":")
            first, length = (int(x) for x in span.split("+"))
            value = SETTLED if state == "s" else int(state)
            for offset in range(base + first, base + first + length):
                states[offset] = value
    except ValueError:
        return {}
    return states


@dataclass(slots=True)
class PartitionTracker:
    """The offsets of one assigned partition this consumer has seen, in order.

    ``position`` is the offset to commit (the lowest offset not known settled); ``states``
    holds, for fetched offsets at or above it, their delivery count or SETTLED; ``inherited``
    what the partition's previous owner left in the metadata.
    """

    position: int
    inherited: dict[int, int] = field(default_factory=dict)
    states: dict[int, int] = field(default_factory=dict)
    buffered: set[int] = field(default_factory=set)  # fetched, not handed out yet

    def fetched(self, offset: int, carried: int = 0) -> int | None:
        """A fetched offset: its delivery count, or None when it is settled already.

        ``carried``: the count a re-produced copy carries in its headers (0 for a first).
        """
        if self.position < 0:  # nothing committed yet: the first fetched offset starts
            self.position = offset
        before = self.inherited.pop(offset, None)
        if before == SETTLED or offset < self.position:
            self.states[offset] = SETTLED
            self._advance()
            return None
        count = max(before or 0, carried) + 1
        self.states[offset] = count
        self.buffered.add(offset)
        return count

    def handed_out(self, offset: int) -> bool:
        """The buffered offset goes to a consumer now (False: it was settled or given up)."""
        if offset not in self.buffered:
            return False
        self.buffered.discard(offset)
        return True

    def redelivered(self, offset: int) -> int | None:
        """Hand an unsettled offset out again (its consumer gave it back): the new count."""
        count = self.states.get(offset)
        if count is None or count == SETTLED:
            return None
        self.states[offset] = count + 1
        self.buffered.add(offset)
        return count + 1

    def settle(self, offset: int) -> None:
        """The message at ``offset`` is done (acked, re-produced or dead-lettered)."""
        if offset in self.states:
            self.states[offset] = SETTLED
            self.buffered.discard(offset)
            self._advance()

    def _advance(self) -> None:
        while self.states:
            first = next(iter(self.states))
            if self.states[first] != SETTLED:
                break
            del self.states[first]
            self.position = max(self.position, first + 1)

    def metadata(self) -> str:
        """What to commit with :attr:`position` (see the module)."""
        pending = {**self.inherited, **self.states}
        for offset in self.buffered:  # counted when fetched, delivered one time fewer so far
            if (count := pending[offset] - 1) > 0:
                pending[offset] = count
            else:
                del pending[offset]
        return encode(self.position, pending)
