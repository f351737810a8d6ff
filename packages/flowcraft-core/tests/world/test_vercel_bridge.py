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
    RunExpiredError,
    ThrottledError,
    TooEarlyError,
    WorldConflictError,
    WorldError,
    WorldNotFoundError,
    WorldRequestError,
)
from flowcraft.core.world._vercel_codec import decode_message, encode_message
from flowcraft.core.world.vercel import VercelBridge, translate_error
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
