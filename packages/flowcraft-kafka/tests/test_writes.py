"""A save as operations, and the journal chunks that carry the large ones."""

from flowcraft.core.ports import DELETE, Message
from flowcraft.kafka._writes import BATCH_BUDGET, CHUNK_BYTES, chunks, ops_from_chunk, ops_of, size


def test_a_save_becomes_its_operations() -> None:
    ops = ops_of(
        version=3, records={"r": [1]}, context_writes={"a": 1, "b": DELETE},
        outbox=(Message(id="m", body=b"\x00\xff"),), sent=("old",),
    )  # fmt: skip
    assert ops == [
        ("r", "r", "[1]"), ("c", "a", "1"), ("c", "b", None), ("s", "old"),
        ("o", "m", b"\x00\xff", 3_000_000),
    ]  # fmt: skip


def test_chunks_round_trip_and_stay_near_their_size() -> None:
    ops = ops_of(
        version=2, records={f"k{i}": "v" * 30 for i in range(5_000)}, context_writes={},
        outbox=(Message(id="m", body=b"\x01\x02"),), sent=(),
    )  # fmt: skip
    assert sum(size(op) for op in ops) > BATCH_BUDGET
    packed = list(chunks(ops))
    assert len(packed) > 1
    assert all(len(text) < 2 * CHUNK_BYTES for text in packed)
    assert [op for text in packed for op in ops_from_chunk(text)] == ops
