"""The partition bookkeeping: what is committed, and what the metadata carries to the next owner."""

from flowcraft.kafka._offsets import METADATA_BUDGET, SETTLED, PartitionTracker, decode, encode


def test_only_the_lowest_unsettled_offset_is_committed() -> None:
    tracker = PartitionTracker(position=10)
    assert [tracker.fetched(o) for o in (10, 11, 12)] == [1, 1, 1]
    tracker.settle(11)
    tracker.settle(12)
    assert tracker.position == 10
    tracker.settle(10)
    assert tracker.position == 13
    assert tracker.states == {}


def test_the_next_owner_skips_settled_offsets_and_raises_counts() -> None:
    first = PartitionTracker(position=0)
    for offset in range(4):
        first.fetched(offset)
        first.handed_out(offset)
    first.settle(1)
    first.settle(3)
    second = PartitionTracker(position=first.position, inherited=decode(0, first.metadata()))
    assert [second.fetched(o) for o in range(4)] == [2, None, 2, None]


def test_a_buffered_offset_counts_only_once_handed_out() -> None:
    tracker = PartitionTracker(position=5)
    assert tracker.fetched(5) == 1
    assert decode(5, tracker.metadata()) == {}
    assert tracker.handed_out(5)
    assert decode(5, tracker.metadata()) == {5: 1}
    assert tracker.redelivered(5) == 2


def test_a_carried_count_continues_a_reproduced_copy() -> None:
    assert PartitionTracker(position=-1).fetched(7, carried=3) == 4


def test_metadata_runs_round_trip_and_stay_within_the_budget() -> None:
    states = {100 + i: (SETTLED if i % 2 else 1 + i % 5) for i in range(3000)}
    text = encode(100, states)
    assert len(text) <= METADATA_BUDGET
    decoded = decode(100, text)
    assert decoded
    assert all(states[o] == v for o, v in decoded.items())
    assert decode(0, encode(0, {0: 2, 1: 2, 2: SETTLED})) == {0: 2, 1: 2, 2: SETTLED}


def test_foreign_metadata_is_ignored() -> None:
    assert decode(0, "") == {}
    assert decode(0, "someone else's") == {}
    assert decode(0, "v1|x+y:z") == {}
