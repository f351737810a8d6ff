"""Jobs: what travels on the queue, with deterministic ids (the dedup ids).

* ``run_node``: run one node attempt (the decision core's ``RunNode``).
* ``event``: apply an event to a run (timers, child-run changes, cancellation of a child).
* ``start_run``: create and start a run (a subflow's child run).
* ``resume_child``: resume the one awaiting node of a child run (resume forwarded by a parent).

A job may carry ``trace``, the W3C ``traceparent`` of its run's root span (a traced run: the
worker that runs it continues that trace), and ``sent_at``, when the decision that made it was
taken (the queue lag is measured from it, or from ``not_before`` for a delayed job). Neither is
part of the job's id.

A job far in the future is enqueued with the queue's longest delay and carries ``not_before``;
a worker that receives it early enqueues it again for the rest (delay chaining, done once here).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from flowcraft.core._engine import actions as act
from flowcraft.core._engine import events as ev
from flowcraft.core._engine.codec import CodecError, event_to_dict

__all__ = ["CodecError", "Job", "JobKind", "Pin", "Stamp"]
from flowcraft.core._engine.frames import ROOT
from flowcraft.core.ports import Message


class JobKind(StrEnum):
    """What a job asks a worker to do."""

    RUN_NODE = "run_node"
    EVENT = "event"
    START_RUN = "start_run"
    RESUME_CHILD = "resume_child"


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """One unit of work for a worker, pinned to a blueprint version."""

    id: str
    kind: JobKind
    run_id: str
    blueprint: str
    version: str
    digest: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    not_before: float | None = None
    trace: str | None = None
    sent_at: float | None = None


def encode_job(job: Job) -> Message:
    """The job as a queue message."""
    data: dict[str, Any] = {
        "id": job.id,
        "kind": job.kind.value,
        "run_id": job.run_id,
        "blueprint": job.blueprint,
        "version": job.version,
        "digest": job.digest,
        "payload": job.payload,
        "not_before": job.not_before,
    }
    if job.trace is not None:
        data["trace"] = job.trace
    if job.sent_at is not None:
        data["sent_at"] = job.sent_at
    return Message(id=job.id, body=json.dumps(data, separators=(",", ":")).encode())


def decode_job(body: bytes) -> Job:
    """A job from a message body. Raises :class:`CodecError` for anything else (poison)."""
    try:
        data = json.loads(body)
        return Job(
            id=str(data["id"]),
            kind=JobKind(data["kind"]),
            run_id=str(data["run_id"]),
            blueprint=str(data["blueprint"]),
            version=str(data["version"]),
            digest=str(data["digest"]),
            payload=dict(data.get("payload") or {}),
            not_before=data.get("not_before"),
            trace=_optional_str(data.get("trace")),
            sent_at=_optional_float(data.get("sent_at")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CodecError(f"undecodable job: {exc!r}") from None


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _optional_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stamp:
    """What a job carries beside its work: its run's trace and when it was decided."""

    trace: str | None = None
    sent_at: float | None = None


NO_STAMP = Stamp()


@dataclass(frozen=True, slots=True, kw_only=True)
class Pin:
    """The blueprint pin of a run: id, version, digest."""

    blueprint: str
    version: str
    digest: str


def _job(  # noqa: PLR0917 - a private constructor shortcut
    pin: Pin,
    run_id: str,
    kind: JobKind,
    job_id: str,
    payload: Mapping[str, Any],
    not_before: float | None = None,
    stamp: Stamp = NO_STAMP,
) -> Job:
    return Job(
        id=job_id,
        kind=kind,
        run_id=run_id,
        blueprint=pin.blueprint,
        version=pin.version,
        digest=pin.digest,
        payload=payload,
        not_before=not_before,
        trace=stamp.trace,
        sent_at=stamp.sent_at,
    )


def run_node_job(
    pin: Pin, run_id: str, action: act.RunNode, *, seen: int | None = None, stamp: Stamp = NO_STAMP
) -> Job:
    """The job of one node attempt (its id is the attempt's idempotency key).

    ``seen`` is the run's state version that decided the attempt: a worker holding that
    version (or a later one) in memory may run the node without loading the state again.
    """
    payload: dict[str, Any] = {
        "node_id": action.node_id,
        "frame": action.frame,
        "attempt": action.attempt,
        "uses": action.uses,
        "params": dict(action.params),
        "input": action.input,
        "timeout": action.timeout,
        "idempotency_key": action.idempotency_key,
    }
    if seen is not None:
        payload["seen"] = seen
    job_id = node_message_id(action.idempotency_key)
    return _job(pin, run_id, JobKind.RUN_NODE, job_id, payload, stamp=stamp)


def node_message_id(attempt: str) -> str:
    """The message (and job) id of the ``run_node`` job of one attempt."""
    return f"node:{attempt}"


def run_node_action(job: Job) -> act.RunNode:
    """The ``RunNode`` a run_node job carries."""
    p = job.payload
    try:
        return act.RunNode(
            node_id=p["node_id"],
            frame=p["frame"],
            attempt=int(p["attempt"]),
            uses=p["uses"],
            params=p["params"],
            input=p["input"],
            timeout=p["timeout"],
            idempotency_key=p["idempotency_key"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"malformed run_node job: {exc!r}") from None


def event_job(
    pin: Pin,
    run_id: str,
    event: ev.Event,
    *,
    not_before: float | None = None,
    stamp: Stamp = NO_STAMP,
) -> Job:
    """A job that applies ``event`` to ``run_id``."""
    job_id = _event_id(run_id, event)
    return _job(pin, run_id, JobKind.EVENT, job_id, event_to_dict(event), not_before, stamp)


def _event_id(run_id: str, event: ev.Event) -> str:
    name = type(event).__name__
    node = getattr(event, "node_id", None) or ""
    frame = getattr(event, "frame", ROOT)
    attempt = getattr(event, "attempt", "")
    extra = getattr(event, "purpose", None) or getattr(event, "outcome", None) or ""
    return f"event:{run_id}:{name}:{node}@{frame}#{attempt}:{extra}"


def start_run_job(
    pin: Pin,
    run_id: str,
    input: object,
    parent: tuple[str, str, str, int] | None,
    stamp: Stamp = NO_STAMP,
) -> Job:
    """A job that creates and starts ``run_id`` (idempotent; a child run keeps the trace)."""
    payload = {"input": input, "parent": None if parent is None else list(parent)}
    return _job(pin, run_id, JobKind.START_RUN, f"start:{run_id}", payload, stamp=stamp)


def seen_version(job: Job) -> int | None:
    """The state version a run_node job was decided at (None: unknown, load the state)."""
    seen = job.payload.get("seen")
    return seen if isinstance(seen, int) and not isinstance(seen, bool) else None


def resume_child_job(
    pin: Pin, action: act.ResumeChildRun, seq: str, stamp: Stamp = NO_STAMP
) -> Job:
    """A job that resumes the one awaiting node of a child run."""
    payload = {"output": action.output, "action": action.action}
    job_id = f"resume:{action.child_run_id}:{seq}"
    return _job(pin, action.child_run_id, JobKind.RESUME_CHILD, job_id, payload, stamp=stamp)
