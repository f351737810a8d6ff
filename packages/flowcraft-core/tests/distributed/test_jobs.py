"""Job messages (``_distributed/jobs.py``): what they carry beside their work."""

from __future__ import annotations

import json

from flowcraft.core._distributed import jobs as j
from flowcraft.core._engine.actions import RunNode
from flowcraft.core._runtime.tracing import JobTrace

PIN = j.Pin(blueprint="bp", version="1", digest="d" * 64)
ACTION = RunNode(
    node_id="N",
    frame="",
    attempt=1,
    uses="u",
    params={},
    input=None,
    timeout=None,
    idempotency_key="r:N::1",
)
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_stamped_job_round_trips_its_trace_and_send_time() -> None:
    job = j.run_node_job(PIN, "r", ACTION, stamp=j.Stamp(trace=TRACE, sent_at=12.5))
    decoded = j.decode_job(j.encode_job(job).body)
    assert (decoded.trace, decoded.sent_at) == (TRACE, 12.5)
    assert decoded == job


def test_the_stamp_is_not_part_of_the_id_and_absent_when_empty() -> None:
    plain = j.encode_job(j.run_node_job(PIN, "r", ACTION))
    stamped = j.encode_job(j.run_node_job(PIN, "r", ACTION, stamp=j.Stamp(trace=TRACE)))
    assert plain.id == stamped.id
    assert not {"trace", "sent_at"} & set(json.loads(plain.body))


def test_a_message_of_an_earlier_build_or_a_wrong_stamp_decodes_unstamped() -> None:
    data = json.loads(j.encode_job(j.run_node_job(PIN, "r", ACTION)).body)
    data |= {"trace": 7, "sent_at": "soon"}
    decoded = j.decode_job(json.dumps(data).encode())
    assert (decoded.trace, decoded.sent_at) == (None, None)


def test_the_queue_lag_counts_from_the_later_of_sending_and_due() -> None:
    assert JobTrace(trace=None, sent_at=10.0).lag(12.5) == 2.5
    assert JobTrace(trace=None, sent_at=10.0, not_before=12.0).lag(12.5) == 0.5
    assert JobTrace(trace=None, sent_at=None).lag(12.5) is None
