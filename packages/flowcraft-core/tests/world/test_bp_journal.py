"""The run journal's fold (``_bp_journal``): every answer is a function of the log's order."""

from __future__ import annotations

from typing import Any

from flowcraft.core.ports import DELETE, AttemptClaim, ClaimStatus, RunRecord
from flowcraft.core.world._bp_journal import (
    Fold,
    apply,
    b64,
    creation,
    decode,
    encode,
    initial,
    is_creation,
    record_from_json,
    record_to_json,
)

_NODE = '["n","","A"]'


def _fold(**records: object) -> Fold:
    record = RunRecord(run_id="r1", blueprint_id="bp", blueprint_version="1", blueprint_digest="d")
    return initial(creation(record, {"h": 0}, records))


def _save(expected: int, at: float = 10.0, **fields: Any) -> dict[str, Any]:
    entry = {
        "op": "save",
        "id": f"s{expected}-{at}",
        "at": at,
        "expected": expected,
        "header": {"h": expected + 1},
        "records": {},
        "context": {},
        "status": "running",
    }
    return {**entry, **fields}


def _claim(fold: Fold, owner: str, at: float, lease: float = 5.0) -> AttemptClaim:
    attempt = "a"
    entry = {"op": "claim", "id": f"c{at}", "at": at, "attempt": attempt, "owner": owner}
    result = apply(fold, {**entry, "lease": lease})
    assert isinstance(result, AttemptClaim)
    return result


def test_a_run_as_created_is_version_one_with_its_records_and_round_trips() -> None:
    fold = _fold(**{_NODE: {"status": "running", "attempt": 1}})
    assert (fold.version, fold.header, fold.changed) == (1, {"h": 0}, {_NODE})
    assert fold.records[_NODE] == (1, {"status": "running", "attempt": 1})
    assert record_from_json(record_to_json(fold.record)) == fold.record
    assert is_creation(creation(fold.record, {}, {}))
    assert not is_creation({"other": 1})
    assert not is_creation(None)


def test_a_save_applies_only_at_its_expected_version() -> None:
    fold = _fold()
    assert apply(fold, _save(1, records={"k": 1}, context={"c": 1, "d": 2})) is True
    assert apply(fold, _save(1, records={"k": 2}, context={"c": 9})) is False
    assert (fold.version, fold.records["k"], fold.context) == (2, (2, 1), {"c": 1, "d": 2})
    assert apply(fold, _save(2, context={"c": DELETE}, status="completed", output=5)) is True
    assert fold.context == {"d": 2}
    assert (fold.record.status, fold.record.output, fold.record.updated_at) == ("completed", 5, 10)


def test_carried_outcomes_commit_first_and_stand_even_when_the_save_does_not() -> None:
    fold = _fold()
    lost = _save(5, outcomes=[["a", b64(b"first")]])
    assert apply(fold, lost) is False
    assert fold.attempts["a"].outcome == b"first"
    refused = _save(1, outcomes=[["a", b64(b"second")]])
    assert apply(fold, refused) is False
    assert fold.version == 1
    commit = {"op": "commit", "id": "c", "at": 1.0, "attempt": "a", "outcome": b64(b"third")}
    assert apply(fold, commit) == b"first"


def test_claims_are_judged_at_the_time_their_entry_carries() -> None:
    fold = _fold()
    assert _claim(fold, "w1", at=100.0).status is ClaimStatus.CLAIMED
    assert _claim(fold, "w2", at=104.0).status is ClaimStatus.BUSY
    assert _claim(fold, "w2", at=105.5).status is ClaimStatus.CLAIMED  # w1's ended at 105
    extend = {"op": "extend", "id": "e", "at": 106.0, "attempt": "a", "lease": 5.0}
    assert apply(fold, {**extend, "owner": "w1"}) is False
    assert apply(fold, {**extend, "owner": "w2"}) is True
    assert fold.attempts["a"].lease_until == 111.0
    apply(fold, {"op": "commit", "id": "o", "at": 107.0, "attempt": "a", "outcome": b64(b"x")})
    done = _claim(fold, "w3", at=200.0)
    assert (done.status, done.outcome) == (ClaimStatus.DONE, b"x")


def test_the_outbox_takes_messages_and_drops_the_sent_and_removed_ones() -> None:
    fold = _fold()
    outbox = [["m1", b64(b"1")], ["m2", b64(b"2")], ["m3", b64(b"3")]]
    assert apply(fold, _save(1, outbox=outbox)) is True
    assert apply(fold, _save(2, sent=["m1"])) is True
    apply(fold, {"op": "remove", "id": "r", "at": 1.0, "ids": ["m3", "unknown"]})
    assert list(fold.outbox) == ["m2"]
    assert fold.outbox["m2"].body == b"2"


def test_claims_carried_by_a_save_never_replace_an_existing_attempt() -> None:
    fold = _fold()
    apply(fold, {"op": "claim", "id": "c", "at": 1.0, "attempt": "a", "owner": "w1", "lease": 1})
    save = _save(1, at=50.0, claims=[["a", "w2", 5.0], ["b", "w2", 5.0]])
    assert apply(fold, save) is True
    assert (fold.attempts["a"].owner, fold.attempts["b"].owner) == ("w1", "w2")
    assert fold.attempts["b"].lease_until == 55.0


def test_node_traces_remember_sleeping_and_each_attempts_error() -> None:
    fold = _fold()
    sleeper = '["n","","Z"]'
    records = {
        _NODE: {"status": "pending", "attempt": 1, "error": {"message": "boom"}},
        sleeper: {"status": "sleeping", "attempt": 1, "due_at": 5.0},
    }
    assert apply(fold, _save(1, records=records)) is True
    records = {_NODE: {"status": "succeeded", "attempt": 2}, sleeper: {"status": "succeeded"}}
    assert apply(fold, _save(2, records=records)) is True
    assert fold.traces[_NODE].errors == {1: {"message": "boom"}}
    assert (fold.traces[_NODE].slept, fold.traces[sleeper].slept) == (False, True)
    assert fold.changed == {_NODE, sleeper}


def test_entries_round_trip_as_chunks() -> None:
    entry = _save(1, records={"ü\x00": "null byte"})
    assert decode(encode(entry)) == entry
