"""The consumer thread's fetch: it waits for the first message only, then takes what is there."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, TopicPartition
from flowcraft.kafka._hub import COMMIT_RETRY, ConsumerHub
from flowcraft.kafka._offsets import PartitionTracker


class _Consumer:
    """A stand-in for confluent-kafka's ``Consumer``: what ``poll``/``consume`` were asked."""

    def __init__(self, first: object, rest: list[object]) -> None:
        self.first, self.rest = first, rest
        self.calls: list[tuple[str, Any, Any]] = []

    def poll(self, timeout: float) -> object:
        self.calls.append(("poll", timeout, None))
        return self.first

    def consume(self, num_messages: int, timeout: float) -> list[object]:
        self.calls.append(("consume", num_messages, timeout))
        return self.rest[:num_messages]


def _hub() -> ConsumerHub:
    return ConsumerHub({"bootstrap.servers": "x"}, topic="t", group_id="g", prefetch=8,
                       poll_interval=0.02)  # fmt: skip


def test_one_message_is_not_held_until_the_interval_is_over() -> None:
    consumer = _Consumer("m1", ["m2", "m3"])
    taken: list[object] = [*_hub()._consume(consumer, 8)]
    assert taken == ["m1", "m2", "m3"]
    # waits (up to the interval) for the first message only; the rest without waiting
    assert consumer.calls == [("poll", 0.02, None), ("consume", 7, 0)]


def test_nothing_arrived() -> None:
    consumer = _Consumer(None, ["m2"])
    assert _hub()._consume(consumer, 8) == []
    assert consumer.calls == [("poll", 0.02, None)]


def test_room_for_one() -> None:
    consumer = _Consumer("m1", ["m2"])
    taken: list[object] = [*_hub()._consume(consumer, 1)]
    assert taken == ["m1"]
    assert consumer.calls == [("poll", 0.02, None)]


def test_a_failed_commit_makes_its_partitions_dirty_again_after_a_pause() -> None:
    hub = _hub()
    hub._trackers[("t", 0)] = PartitionTracker(position=5, inherited={})
    hub._trackers[("t", 1)] = PartitionTracker(position=9, inherited={})
    gone = TopicPartition("t", 7, 3)  # revoked meanwhile: not committed again
    before = time.monotonic()
    hub._answered(KafkaError(KafkaError._TRANSPORT), [TopicPartition("t", 0, 5), gone])
    assert hub._dirty == {("t", 0)}
    assert hub._retry_at >= before + COMMIT_RETRY


def test_a_commit_that_stood_changes_nothing() -> None:
    hub = _hub()
    hub._trackers[("t", 0)] = PartitionTracker(position=5, inherited={})
    hub._answered(None, [TopicPartition("t", 0, 5)])
    assert hub._dirty == set()
    assert hub._retry_at == 0.0


def test_the_consumer_reports_its_commits_to_the_hub() -> None:
    assert _hub()._config["on_commit"].__name__ == "_answered"
