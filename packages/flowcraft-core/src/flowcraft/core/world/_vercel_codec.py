"""Translation between vercel-workflow's World types and flowcraft's (pure, no I/O).

vercel-workflow speaks camelCase pydantic models (its ``world`` module); a flowcraft World
speaks :mod:`flowcraft.core.world`'s frozen models. Everything here maps one to the other:

* events asked for (vercel ``Event`` -> :class:`NewEvent`), with the attribute rules
  (reserved ``$`` keys, sizes, counts) checked by vercel-workflow's own validator;
* events and entities read back (:class:`Event`, :class:`WorkflowRun`, :class:`Step`,
  :class:`Hook` -> vercel's models, the server props included);
* queue payloads: vercel's models hold ``bytes`` (run input, lazy hook-resume payloads), a
  flowcraft queue message is a JSON object, so bytes travel as ``{"$bytes": base64}``.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from flowcraft.core.world._errors import WorldRequestError
from flowcraft.core.world._models import (
    AttrSetData,
    Event,
    EventData,
    EventType,
    Hook,
    HookConflictData,
    HookCreatedData,
    HookReceivedData,
    NewEvent,
    QueueMessage,
    RunCancelledData,
    RunCompletedData,
    RunCreatedData,
    RunFailedData,
    Step,
    StepCompletedData,
    StepCreatedData,
    StepFailedData,
    StepRetryingData,
    WaitCreatedData,
    WorkflowRun,
)
from pydantic import JsonValue
from vercel.workflow._internal import attributes as vercel_attributes
from vercel.workflow._internal import world as w

#: The key that marks base64-encoded bytes inside a queue message.
BYTES_TAG = "$bytes"


# ------------------------------------------------------------------------------ queue


def encode_message(payload: w.QueuePayload) -> QueueMessage:
    """Vercel's queue payload as a JSON object (wire names, bytes tagged)."""
    encoded = _to_json(payload.model_dump())
    assert isinstance(encoded, dict)
    return encoded


def decode_message(message: QueueMessage) -> dict[str, Any]:
    """A queue message back in vercel's wire shape (bytes restored)."""
    decoded = _from_json(message)
    assert isinstance(decoded, dict)
    return decoded


def _to_json(value: object) -> JsonValue:
    if isinstance(value, bytes | bytearray | memoryview):
        return {BYTES_TAG: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): _to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(item) for item in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"a queue message cannot carry a {type(value).__name__}")


def _from_json(value: JsonValue) -> object:
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(tagged := value.get(BYTES_TAG), str):
            return base64.b64decode(tagged)
        return {key: _from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    return value


# ------------------------------------------------------------------------------ events in


def _bad(message: str, code: str = "bad_event") -> WorldRequestError:
    return WorldRequestError(message, code=code)


def _bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise _bad(f"{what} must be serialised bytes, not {type(value).__name__}")
    return value


def _error_value(value: object) -> bytes | JsonValue:
    if isinstance(value, bytes):
        return value
    return _to_json(value)


def check_attributes(
    changes: list[tuple[str, str | None]],
    *,
    existing: dict[str, str] | None,
    allow_reserved: bool,
) -> None:
    """vercel-workflow's attribute rules (``$`` keys reserved unless allowed, sizes, count).

    Raises:
        WorldRequestError: 400 ``invalid_attributes``, naming the rule broken.
    """
    try:
        vercel_attributes.validate_attribute_changes(
            changes, existing_keys=existing, allow_reserved=allow_reserved
        )
    except vercel_attributes.AttributeValidationError as error:
        raise _bad(str(error), "invalid_attributes") from error


def to_new_event(event: w.Event, *, run_attributes: dict[str, str] | None = None) -> NewEvent:
    """The flowcraft event a vercel event asks for.

    Args:
        event: What the runtime passed to ``events_create``.
        run_attributes: The run's attributes now (read for ``attr_set``'s count rule).

    Raises:
        WorldRequestError: The event cannot be stored (unserialised payload, encryption,
            broken attribute rules, a ``hook_conflict`` or ``noop`` asked for).
    """
    return NewEvent(
        event_type=EventType(event.event_type) if event.event_type != "noop" else _refuse_noop(),
        correlation_id=event.correlation_id,
        data=_data_of(event, run_attributes),
        spec_version=event.spec_version,
    )


def _refuse_noop() -> EventType:
    raise _bad("noop events are written by a World's log sealing, never asked for")


def _data_of(  # noqa: PLR0911 - one return per event type
    event: w.Event, run_attributes: dict[str, str] | None
) -> EventData | None:
    match event:
        case w.RunCreatedEvent(event_data=data):
            _no_encryption(data.encryption_public_key)
            return RunCreatedData(
                workflow_name=data.workflow_name,
                deployment_id=data.deployment_id,
                input=_bytes(data.input, "run input"),
                execution_context=_context(data.execution_context),
            )
        case w.RunStartedEvent(event_data=data):
            return _run_started_data(data)
        case w.RunCompletedEvent(event_data=data):
            return RunCompletedData(output=_bytes(data.output, "run output"))
        case w.RunFailedEvent(event_data=data):
            return RunFailedData(error=_error_value(data.error), error_code=data.error_code)
        case w.RunCancelledEvent(event_data=data):
            return None if data is None else RunCancelledData(reason=data.cancel_reason)
        case w.AttrSetEvent(event_data=data):
            return _attr_set_data(data, run_attributes)
        case _:
            return _entity_data(event)


def _entity_data(event: w.Event) -> EventData | None:  # noqa: PLR0911 - one per type
    match event:
        case w.StepCreatedEvent(event_data=data):
            return StepCreatedData(step_name=data.step_name, input=_bytes(data.input, "step input"))
        case w.StepCompletedEvent(event_data=data):
            return StepCompletedData(result=_bytes(data.result, "step result"))
        case w.StepFailedEvent(event_data=data):
            return StepFailedData(error=_error_value(data.error))
        case w.StepRetryingEvent(event_data=data):
            return StepRetryingData(error=_error_value(data.error), retry_after=data.retry_after)
        case w.HookCreatedEvent(event_data=data):
            return HookCreatedData(
                token=data.token,
                metadata=data.metadata,
                is_webhook=data.is_webhook,
                is_system=bool(data.is_system),
            )
        case w.HookReceivedEvent(event_data=data):
            resume = event._queue_input
            return HookReceivedData(
                payload=data.payload,
                token=data.token,
                resume_id=None if resume is None else resume.resume_id,
            )
        case w.WaitCreatedEvent(event_data=data):
            return WaitCreatedData(resume_at=data.resume_at)
        case w.HookConflictEvent():
            raise _bad("hook_conflict is written by the World, never asked for")
        case _:
            return None  # step_started, hook_disposed, wait_completed carry nothing we keep


def _no_encryption(public_key: str | None) -> None:
    if public_key is not None:
        raise _bad(
            "encrypted runs are not supported by the flowcraft bridge (its run_key() is None)",
            "encryption_unsupported",
        )


def _context(context: dict[str, Any] | None) -> dict[str, JsonValue] | None:
    if context is None:
        return None
    encoded = _to_json(context)
    assert isinstance(encoded, dict)
    return encoded


def _run_started_data(data: w.RunStartedEventData | None) -> RunCreatedData | None:
    """The resilient-start data: enough to re-create a run whose ``run_created`` was lost."""
    if data is None or not data.workflow_name or data.deployment_id is None:
        return None
    if not isinstance(data.input, bytes):
        return None
    _no_encryption(data.encryption_public_key)
    attributes = data.attributes or {}
    check_attributes(
        list(attributes.items()),
        existing=None,
        allow_reserved=data.allow_reserved_attributes is True,
    )
    return RunCreatedData(
        workflow_name=data.workflow_name,
        deployment_id=data.deployment_id,
        input=data.input,
        execution_context=_context(data.execution_context),
        attributes=attributes or None,
    )


def _attr_set_data(data: w.AttrSetEventData, run_attributes: dict[str, str] | None) -> AttrSetData:
    changes = [(change.key, change.value) for change in data.changes]
    check_attributes(
        changes, existing=run_attributes, allow_reserved=data.allow_reserved_attributes is True
    )
    writer = _to_json(data.writer.model_dump())
    assert isinstance(writer, dict)
    return AttrSetData(changes=dict(changes), writer=writer)


# ------------------------------------------------------------------------------ events out


def to_vercel_event(event: Event) -> w.Event:
    """A flowcraft log entry as vercel's event, server props (run, event id, time) set."""
    fields: dict[str, Any] = {
        "eventType": event.event_type.value,
        "specVersion": event.spec_version,
        "runId": event.run_id,
        "eventId": event.event_id,
        "createdAt": event.created_at,
    }
    if event.correlation_id is not None:
        fields["correlationId"] = event.correlation_id
    data = event.data
    if isinstance(data, HookReceivedData) and data.resume_id is not None:
        fields["resumeId"] = data.resume_id
    if data is not None:
        fields["eventData"] = _wire_data(event.event_type, data)
    return w.EventAdaptor.from_wire(fields)


def _wire_data(kind: EventType, data: EventData) -> dict[str, Any]:
    match data:
        case RunCreatedData():
            wire: dict[str, Any] = {
                "deploymentId": data.deployment_id,
                "workflowName": data.workflow_name,
                "input": data.input,
            }
            if data.execution_context is not None:
                wire["executionContext"] = data.execution_context
            return wire
        case AttrSetData():
            changes = [{"key": key, "value": value} for key, value in data.changes.items()]
            return {"changes": changes, "writer": data.writer or {"type": "workflow"}}
        case HookReceivedData():
            wire = {"payload": data.payload}
            if data.token is not None:
                wire["token"] = data.token
            return wire
        case _:
            return _plain_wire_data(data)


def _plain_wire_data(data: EventData) -> dict[str, Any]:  # noqa: PLR0911 - one per type
    match data:
        case RunCompletedData(output=output):
            return {"output": output}
        case RunFailedData(error=error, error_code=code):
            return {"error": error, **({"errorCode": code} if code is not None else {})}
        case RunCancelledData(reason=reason):
            return {} if reason is None else {"cancelReason": reason}
        case StepCreatedData(step_name=name, input=payload):
            return {"stepName": name, "input": payload}
        case StepCompletedData(result=result):
            return {"result": result}
        case StepFailedData(error=error):
            return {"error": error}
        case StepRetryingData(error=error, retry_after=retry_after):
            return {"error": error, **({"retryAfter": retry_after} if retry_after else {})}
        case HookCreatedData():
            return {
                "token": data.token,
                "metadata": data.metadata,
                "isWebhook": data.is_webhook,
                "isSystem": data.is_system,
            }
        case HookConflictData(token=token, conflicting_run_id=conflicting):
            return {"token": token, "conflictingRunId": conflicting}
        case WaitCreatedData(resume_at=resume_at):
            return {"resumeAt": resume_at}
    raise AssertionError(f"no wire shape for {type(data).__name__}")  # pragma: no cover


# ------------------------------------------------------------------------------ entities


def to_vercel_run(run: WorkflowRun) -> w.WorkflowRun:
    """A flowcraft run as vercel's run (the status picks the model)."""
    fields: dict[str, Any] = {
        "runId": run.run_id,
        "status": run.status.value,
        "deploymentId": run.deployment_id,
        "workflowName": run.workflow_name,
        "specVersion": run.spec_version,
        "executionContext": run.execution_context,
        "input": run.input,
        "attributes": dict(run.attributes),
        "expiredAt": run.expired_at,
        "startedAt": run.started_at,
        "completedAt": run.completed_at,
        "createdAt": run.created_at,
        "updatedAt": run.updated_at,
    }
    if run.status.value == "completed":
        fields["output"] = run.output
    if run.status.value == "failed":
        fields["error"] = run.error
        fields["errorCode"] = run.error_code
    return w.WorkflowRunAdaptor.from_wire(fields)


def to_vercel_step(step: Step) -> w.WorkflowStep:
    """A flowcraft step as vercel's step."""
    fields: dict[str, Any] = {
        "runId": step.run_id,
        "stepId": step.step_id,
        "stepName": step.step_name,
        "status": step.status.value,
        "input": step.input,
        "error": step.error,
        "attempt": step.attempt,
        "startedAt": step.started_at,
        "completedAt": step.completed_at,
        "createdAt": step.created_at,
        "updatedAt": step.updated_at,
        "retryAfter": step.retry_after,
        "specVersion": step.spec_version,
    }
    if step.status.value == "completed":
        fields["output"] = step.output
    return w.WorkflowStepAdaptor.from_wire(fields)


def to_vercel_hook(hook: Hook, *, environment: str) -> w.Hook:
    """A flowcraft hook as vercel's hook (owner and project: ``"flowcraft"``)."""
    return w.Hook.from_wire(
        {
            "runId": hook.run_id,
            "hookId": hook.hook_id,
            "token": hook.token,
            "ownerId": "flowcraft",
            "projectId": "flowcraft",
            "environment": environment,
            "metadata": hook.metadata,
            "createdAt": hook.created_at,
            "specVersion": hook.spec_version,
            "isWebhook": hook.is_webhook,
            "isSystem": hook.is_system,
        }
    )
