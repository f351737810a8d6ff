"""VercelBridge over InMemoryWorld: translation of events, errors, messages and deliveries."""

# vercel-workflow's models are built by Python name (validate_by_name=True, as its runtime
# does), which the pydantic mypy plugin does not see: it only knows their camelCase aliases.
# mypy: disable-error-code="call-arg"

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from flowcraft.core.world import (
    HookNotFoundError,
    InMemoryWorld,
    QueueMessage,
    RunExpiredError,
    RunStatus,
    Step,
    StepStatus,
    ThrottledError,
    TooEarlyError,
    WorkflowRun,
    WorldConflictError,
    WorldError,
    WorldNotFoundError,
    WorldRequestError,
)
from flowcraft.core.world import vercel as bridge_module
from flowcraft.core.world._vercel_codec import decode_message, encode_message
from flowcraft.core.world.vercel import (
    VercelBridge,
    _Delivery,
    _pending_step_invocations,
    _redelivered_replay,
    translate_error,
)
from vercel.workflow._internal import world as w

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def bridge() -> AsyncIterator[VercelBridge]:
    async with VercelBridge(InMemoryWorld(), deployment_id="dpl_unit") as bridge:
        yield bridge


async def _running_run(bridge: VercelBridge) -> str:
    created = w.RunCreatedEventData(deployment_id="dpl_unit", workflow_name="wf", input=b"\x00in")
    result = await bridge.events_create(None, created.into_event())
    assert result.run is not None
    await bridge.events_create(result.run.run_id, w.RunStartedEvent())
    return result.run.run_id


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (WorldRequestError("bad"), w.WorkflowWorldError),
        (WorldNotFoundError("none"), w.WorkflowWorldError),
        (HookNotFoundError("gone"), w.HookNotFoundError),
        (WorldConflictError("taken"), w.EntityConflictError),
        (WorldConflictError("other hook", code="resume_conflict"), w.HookResumeConflictError),
        (RunExpiredError("old"), w.RunExpiredError),
        (TooEarlyError("wait", retry_after=3), w.TooEarlyError),
        (ThrottledError("slow", retry_after=1.5), w.ThrottleError),
    ],
)
def test_world_errors_become_the_runtimes(error: WorldError, expected: type[Exception]) -> None:
    translated = translate_error(error, hook_id="hook_1")
    assert type(translated) is expected
    if isinstance(translated, w.WorkflowWorldError):
        assert translated.status == error.status
    if isinstance(translated, w.TooEarlyError | w.ThrottleError):
        assert translated.retry_after in (3, 2)


def test_every_world_error_class_has_a_translation() -> None:
    def leaves(cls: type[WorldError]) -> list[type[WorldError]]:
        return [cls, *(leaf for sub in cls.__subclasses__() for leaf in leaves(sub))]

    for cls in leaves(WorldError):
        if cls.__module__.startswith("flowcraft.core.world") and cls is not WorldError:
            error = cls.__new__(cls)
            WorldError.__init__(error, "x")
            error.retry_after = 1  # type: ignore[attr-defined]
            assert isinstance(translate_error(error), Exception)


def test_queue_messages_are_json_and_keep_bytes() -> None:
    payload = w.WorkflowInvokePayload(
        run_id="wrun_1",
        run_input=w.RunInput(
            input=b"\x00\xffraw", deployment_id="d", workflow_name="wf", spec_version=5
        ),
        hook_input=w.HookResumeInput(
            resume_id="r1", hook_id="hook_1", token="t", payload=b"\x00p", payload_digest="x"
        ),
        requested_at=datetime(2026, 1, 2, tzinfo=UTC),
    )
    message = encode_message(payload)
    assert json.loads(json.dumps(message)) == message
    back = w.WorkflowInvokePayload.from_wire(decode_message(message))
    assert back == payload


async def test_events_round_trip_with_writer_token_and_server_props(bridge: VercelBridge) -> None:
    run_id = await _running_run(bridge)
    writer = w.StepAttributeWriter(step_id="step_1", attempt=2)
    attrs = w.AttrSetEventData(changes=[w.AttributeChange(key="k", value="v")], writer=writer)
    await bridge.events_create(run_id, attrs.into_event())
    hook = w.HookCreatedEventData(token="tok", metadata=b"\x00m").into_event("hook_1")
    await bridge.events_create(run_id, hook)
    received = w.HookReceivedEventData(payload=b"\x00p", token="tok").into_event("hook_1")
    await bridge.events_create(run_id, received)

    page = await bridge.events_list(run_id)
    kinds = [event.event_type for event in page.data]
    assert kinds == ["run_created", "run_started", "attr_set", "hook_created", "hook_received"]
    stored_attrs, stored_hook, stored_received = page.data[2:]
    assert isinstance(stored_attrs, w.AttrSetEvent)
    assert stored_attrs.event_data.writer == writer
    assert stored_attrs.event_data.changes == attrs.changes
    assert isinstance(stored_hook, w.HookCreatedEvent)
    assert stored_hook.event_data.metadata == b"\x00m"
    assert isinstance(stored_received, w.HookReceivedEvent)
    assert stored_received.event_data == received.event_data
    assert stored_received.server_props is not None
    assert stored_received.server_props.run_id == run_id
    assert (await bridge.runs_get(run_id)).attributes == {"k": "v"}


async def test_reserved_attributes_need_the_opt_in(bridge: VercelBridge) -> None:
    run_id = await _running_run(bridge)
    changes = [w.AttributeChange(key="$system", value="1")]
    refused = w.AttrSetEventData(changes=changes, writer=w.WorkflowAttributeWriter())
    with pytest.raises(w.WorkflowWorldError, match="reserved prefix") as caught:
        await bridge.events_create(run_id, refused.into_event("attr_1"))
    assert caught.value.status == 400
    allowed = refused.model_copy(update={"allow_reserved_attributes": True})
    await bridge.events_create(run_id, allowed.into_event("attr_1"))
    with pytest.raises(w.EntityConflictError):  # the same workflow write, replayed
        await bridge.events_create(run_id, allowed.into_event("attr_1"))
    assert (await bridge.runs_get(run_id)).attributes == {"$system": "1"}


async def test_a_lazy_hook_resume_is_recorded_once(bridge: VercelBridge) -> None:
    run_id = await _running_run(bridge)
    for hook_id in ("hook_1", "hook_2"):
        created = w.HookCreatedEventData(token=f"tok-{hook_id}").into_event(hook_id)
        await bridge.events_create(run_id, created)

    def resumed(hook_id: str) -> w.HookReceivedEvent:
        event = w.HookReceivedEventData(payload=b"p").into_event(hook_id)
        event._queue_input = w.HookResumeInput(
            resume_id="res_1", hook_id=hook_id, token="t", payload=b"p", payload_digest="d"
        )
        return event

    first = await bridge.events_create(run_id, resumed("hook_1"))
    again = await bridge.events_create(run_id, resumed("hook_1"))
    assert first.event is not None
    assert again.event is not None
    assert again.event.server_props == first.event.server_props
    assert first.event.server_props is not None
    assert first.event.server_props.resume_id == "res_1"
    with pytest.raises(w.HookResumeConflictError):
        await bridge.events_create(run_id, resumed("hook_2"))
    kinds = [event.event_type for event in (await bridge.events_list(run_id)).data]
    assert kinds.count("hook_received") == 1


async def test_refusals_are_the_runtimes_errors(bridge: VercelBridge) -> None:
    run_id = await _running_run(bridge)
    with pytest.raises(w.HookNotFoundError):
        await bridge.events_create(run_id, w.HookDisposedEvent(correlation_id="hook_x"))
    with pytest.raises(w.HookNotFoundError):
        await bridge.hooks_get_by_token("nobody")
    with pytest.raises(w.WorkflowWorldError) as caught:
        await bridge.runs_get("wrun_missing")
    assert caught.value.status == 404
    step = w.StepCreatedEventData(step_name="s", input=b"i").into_event("step_1")
    await bridge.events_create(run_id, step)
    with pytest.raises(w.EntityConflictError):
        await bridge.events_create(run_id, step)


class _Request:
    def __init__(self, body: bytes, headers: Mapping[str, str], method: str = "POST") -> None:
        self.method = method
        self.url = "/.well-known/workflow/v1/flow"
        self.headers = headers
        self._body = body

    async def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        yield self._body


async def test_a_continuation_is_queued_again_before_the_ack(bridge: VercelBridge) -> None:
    deliveries: list[tuple[dict[str, Any], int]] = []
    done = asyncio.Event()

    async def handler(
        message: Any, *, attempt: int, queue_name: str, message_id: str
    ) -> w.QueueContinuation | None:
        deliveries.append((message, attempt))
        if len(deliveries) == 2:
            done.set()
            return None
        return w.QueueContinuation(delay_seconds=0.2, idempotency_key="wait_1")

    bridge.create_queue_handler("__wkf_workflow_", handler)
    await bridge.queue("__wkf_workflow_wf", w.WorkflowInvokePayload(run_id="wrun_1"))
    await asyncio.wait_for(done.wait(), 5)
    assert [message for message, _ in deliveries] == [{"runId": "wrun_1"}] * 2


async def test_the_push_handler_delivers_one_post(bridge: VercelBridge) -> None:
    seen: list[tuple[Any, str, int]] = []

    async def handler(
        message: Any, *, attempt: int, queue_name: str, message_id: str
    ) -> w.QueueContinuation | None:
        if message.get("runId") == "boom":
            raise RuntimeError("handler failed")
        seen.append((message, queue_name, attempt))
        return None

    push = bridge.create_queue_handler("__wkf_workflow_", handler)
    headers = {"X-VQS-Queue-Name": "__wkf_workflow_wf", "x-vqs-message-attempt": "3"}
    ok = await push(_Request(json.dumps({"runId": "wrun_1"}).encode(), headers))
    assert ok.status == 200
    assert seen == [({"runId": "wrun_1"}, "__wkf_workflow_wf", 3)]
    assert (await push(_Request(b"{}", {}))).status == 400
    other = {"x-vqs-queue-name": "__other_queue"}
    assert (await push(_Request(b"{}", other))).status == 400
    assert (await push(_Request(b"not json", headers))).status == 400
    failed = await push(_Request(json.dumps({"runId": "boom"}).encode(), headers))
    assert failed.status == 500


# ---------------------------------------------------------------- lost step messages


@pytest.mark.parametrize(
    ("message", "attempt", "expected"),
    [
        ({"runId": "wrun_1"}, 1, None),
        ({"runId": "wrun_1"}, 2, "wrun_1"),
        ({"runId": "wrun_1", "requestedAt": "2026-01-02T00:00:00+00:00"}, 5, "wrun_1"),
        ({"runId": "wrun_1", "stepId": "step_1", "stepName": "add"}, 2, None),
        ({"__healthCheck": True, "correlationId": "c", "runId": "wrun_1"}, 2, None),
        ({"runId": ""}, 2, None),
        ({}, 3, None),
    ],
)
def test_only_a_replay_delivered_again_names_its_run(
    message: QueueMessage, attempt: int, expected: str | None
) -> None:
    assert _redelivered_replay(message, attempt) == expected


def _run(status: RunStatus) -> WorkflowRun:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    return WorkflowRun(
        run_id="wrun_1",
        status=status,
        workflow_name="wf",
        deployment_id="d",
        created_at=now,
        updated_at=now,
    )


def _step(step_id: str, status: StepStatus, *, attempt: int = 0) -> Step:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    return Step(
        run_id="wrun_1",
        step_id=step_id,
        step_name=f"name_of_{step_id}",
        status=status,
        attempt=attempt,
        created_at=now,
        updated_at=now,
    )


def test_each_pending_step_is_invoked_as_the_runtime_invokes_it() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    steps = [_step(f"step_{status.value}", status) for status in StepStatus]
    steps.append(_step("step_pending_2", StepStatus.PENDING))

    invocations = _pending_step_invocations(_run(RunStatus.RUNNING), steps, now=now)

    assert [key for key, _ in invocations] == ["step_pending", "step_pending_2"]
    _, message = invocations[0]
    payload = w.WorkflowInvokePayload.from_wire(decode_message(message))
    assert (payload.run_id, payload.step_id, payload.step_name) == (
        "wrun_1",
        "step_pending",
        "name_of_step_pending",
    )
    assert payload.requested_at == now
    assert json.loads(json.dumps(message)) == message


def test_a_pending_step_waiting_for_its_retry_is_not_invoked_again() -> None:
    retrying = _step("step_retrying", StepStatus.PENDING, attempt=1)
    retrying = retrying.model_copy(update={"retry_after": datetime(2026, 1, 2, 0, 1, tzinfo=UTC)})
    steps = [retrying, _step("step_new", StepStatus.PENDING)]

    invocations = _pending_step_invocations(_run(RunStatus.RUNNING), steps, now=datetime.now(UTC))

    assert [key for key, _ in invocations] == ["step_new"]


@pytest.mark.parametrize("status", [RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED])
def test_an_ended_run_needs_none_of_its_steps(status: RunStatus) -> None:
    steps = [_step("step_1", StepStatus.PENDING)]
    assert _pending_step_invocations(_run(status), steps, now=datetime.now(UTC)) == []


def _queued(bridge: VercelBridge) -> list[QueueMessage]:
    assert isinstance(bridge.world, InMemoryWorld)
    return [envelope.message for _, _, envelope in sorted(bridge.world.state.queue.heap)]


async def test_a_replay_delivered_again_enqueues_the_runs_pending_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bridge_module, "_STEPS_PAGE", 2)  # the steps are read in pages
    bridge = VercelBridge(InMemoryWorld(), deployment_id="dpl_unit")  # not started: no consumer
    run_id = await _running_run(bridge)
    for index in range(5):
        created = w.StepCreatedEventData(step_name="add", input=b"i").into_event(f"step_{index}")
        await bridge.events_create(run_id, created)
    await bridge.events_create(run_id, w.StepStartedEvent(correlation_id="step_0"))
    done = w.StepCompletedEventData(result=b"r").into_event("step_0")
    await bridge.events_create(run_id, done)
    await bridge.events_create(run_id, w.StepStartedEvent(correlation_id="step_1"))
    handled: list[int] = []

    async def handler(
        message: Any, *, attempt: int, queue_name: str, message_id: str
    ) -> w.QueueContinuation | None:
        handled.append(attempt)
        return None

    deliver = _Delivery(bridge, handler)
    queue = "__wkf_workflow_wf"
    replay: QueueMessage = {"runId": run_id}

    await deliver(replay, queue_name=queue, message_id="m1", attempt=1)
    assert _queued(bridge) == []  # a first delivery: the runtime enqueues what it creates

    await deliver(replay, queue_name=queue, message_id="m1", attempt=2)
    queued = [w.WorkflowInvokePayload.from_wire(decode_message(m)) for m in _queued(bridge)]
    assert [(p.run_id, p.step_id, p.step_name) for p in queued] == [
        (run_id, f"step_{index}", "add") for index in (2, 3, 4)
    ]

    await deliver(replay, queue_name=queue, message_id="m1", attempt=3)
    assert len(_queued(bridge)) == 3  # keyed by the step id: the World drops the copies
    step_message: QueueMessage = {"runId": run_id, "stepId": "step_2", "stepName": "add"}
    await deliver(step_message, queue_name=queue, message_id="m2", attempt=4)
    await deliver({"runId": "wrun_unknown"}, queue_name=queue, message_id="m3", attempt=2)
    assert len(_queued(bridge)) == 3
    assert handled == [1, 2, 3, 4, 2]
