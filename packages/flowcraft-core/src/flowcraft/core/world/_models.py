"""The World's data: entities (runs, steps, hooks, waits), events, stream chunks, pages.

Everything is a frozen pydantic v2 model, so a World can hand out what it stores without
copies. Payloads (run input and output, step input and result, hook payloads and metadata)
are opaque ``bytes`` that a World stores and returns unchanged, null bytes included; errors
are ``bytes`` or a JSON value (what the runtime serialised).

Events come in two shapes: :class:`NewEvent` is what a caller asks ``events_create`` to
append (type, correlation id, typed data); :class:`Event` is what the log holds, with the
run id, the dense 1-based ``sequence`` within the run, the event id and the time.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Generic, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

T = TypeVar("T")

ErrorValue: TypeAlias = bytes | JsonValue
"""A serialised error, stored as given."""

ResolveData = Literal["none", "all"]
"""``"all"``: entities and events with their payloads; ``"none"``: without them."""

SortOrder = Literal["asc", "desc"]

#: The largest page a World returns.
MAX_PAGE_SIZE = 1000
#: The page size when a caller gives none.
DEFAULT_PAGE_SIZE = 100


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunStatus(StrEnum):
    """Where a run is; the last three are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """No transition leaves this status."""
        return self in _TERMINAL_RUN


_TERMINAL_RUN = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class StepStatus(StrEnum):
    """Where a step is; ``completed`` and ``failed`` are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        """No transition leaves this status."""
        return self in (StepStatus.COMPLETED, StepStatus.FAILED)


class HookStatus(StrEnum):
    """A hook takes payloads while ``active``; ``disposed`` frees its token."""

    ACTIVE = "active"
    DISPOSED = "disposed"


class WaitStatus(StrEnum):
    """A wait (a sleep) is ``waiting`` until its one ``wait_completed``."""

    WAITING = "waiting"
    COMPLETED = "completed"


class EventType(StrEnum):
    """Every event the log holds. ``hook_conflict`` is written by the World, never asked for."""

    RUN_CREATED = "run_created"
    RUN_STARTED = "run_started"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"
    ATTR_SET = "attr_set"
    STEP_CREATED = "step_created"
    STEP_STARTED = "step_started"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    STEP_RETRYING = "step_retrying"
    HOOK_CREATED = "hook_created"
    HOOK_RECEIVED = "hook_received"
    HOOK_DISPOSED = "hook_disposed"
    HOOK_CONFLICT = "hook_conflict"
    WAIT_CREATED = "wait_created"
    WAIT_COMPLETED = "wait_completed"


# ------------------------------------------------------------------------------ entities


class WorkflowRun(_Frozen):
    """One execution of a workflow."""

    run_id: str
    status: RunStatus
    workflow_name: str
    deployment_id: str
    spec_version: int = 2
    execution_context: dict[str, JsonValue] | None = None
    input: bytes | None = None
    output: bytes | None = None
    error: ErrorValue = None
    error_code: str | None = None
    cancel_reason: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    expired_at: datetime | None = None
    """When the run stops accepting events (its retention ended); None: never."""


class Step(_Frozen):
    """One step of a run, named by the correlation id of its events."""

    run_id: str
    step_id: str
    step_name: str
    status: StepStatus
    input: bytes | None = None
    output: bytes | None = None
    error: ErrorValue = None
    attempt: int = 0
    """Incremented by every ``step_started``."""
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    """Set by the first ``step_started``, kept by later ones."""
    completed_at: datetime | None = None
    retry_after: datetime | None = None
    """``step_started`` before this time is refused (425)."""
    spec_version: int = 2


class Hook(_Frozen):
    """A hook a run waits on; its token is unique among active hooks of every run."""

    run_id: str
    hook_id: str
    token: str
    status: HookStatus = HookStatus.ACTIVE
    metadata: bytes | None = None
    is_webhook: bool = False
    is_system: bool = False
    received: int = 0
    """How many payloads it has taken."""
    created_at: datetime
    disposed_at: datetime | None = None
    spec_version: int = 2


class Wait(_Frozen):
    """A sleep: ``wait_created`` with a resume time, then exactly one ``wait_completed``."""

    run_id: str
    wait_id: str
    status: WaitStatus = WaitStatus.WAITING
    resume_at: datetime
    created_at: datetime
    completed_at: datetime | None = None


# ------------------------------------------------------------------------------ event data


class RunCreatedData(_Frozen):
    """``run_created`` (and the optional data of ``run_started``, which re-creates a lost run)."""

    workflow_name: str
    deployment_id: str
    input: bytes
    execution_context: dict[str, JsonValue] | None = None
    attributes: dict[str, str] | None = None


class RunCompletedData(_Frozen):
    """``run_completed``."""

    output: bytes


class RunFailedData(_Frozen):
    """``run_failed``."""

    error: ErrorValue
    error_code: str | None = None


class RunCancelledData(_Frozen):
    """``run_cancelled`` (optional)."""

    reason: str | None = None


class AttrSetData(_Frozen):
    """``attr_set``: each key set to its value; a ``None`` value removes the key.

    An ``attr_set`` with a correlation id is a create: one per (run, correlation id), a
    repeat is refused (409) so a replayed write cannot land twice in the log.
    """

    changes: dict[str, str | None]
    writer: dict[str, JsonValue] | None = None
    """Who wrote the change, as the runtime describes it (stored and returned as given)."""


class StepCreatedData(_Frozen):
    """``step_created``."""

    step_name: str
    input: bytes


class StepCompletedData(_Frozen):
    """``step_completed``."""

    result: bytes


class StepFailedData(_Frozen):
    """``step_failed``."""

    error: ErrorValue


class StepRetryingData(_Frozen):
    """``step_retrying``: the step goes back to pending; not startable before ``retry_after``."""

    error: ErrorValue
    retry_after: datetime | None = None


class HookCreatedData(_Frozen):
    """``hook_created``."""

    token: str
    metadata: bytes | None = None
    is_webhook: bool = False
    is_system: bool = False


class HookReceivedData(_Frozen):
    """``hook_received``: one payload delivered to the hook.

    ``resume_id`` names one resume (vercel-workflow's lazy hook resume: the producer and the
    consumer of a resume message may both write its event). A World records the event once
    per (run, resume id): a repeat for the same hook returns the recorded event and appends
    nothing; for another hook it is refused (409 ``resume_conflict``).
    """

    payload: bytes
    token: str | None = None
    """The token the payload was sent to, if the writer gave it."""
    resume_id: str | None = None


class HookConflictData(_Frozen):
    """``hook_conflict``: the token asked for is held by another live hook."""

    token: str
    conflicting_run_id: str | None = None


class WaitCreatedData(_Frozen):
    """``wait_created``."""

    resume_at: datetime


EventData: TypeAlias = (
    RunCreatedData
    | RunCompletedData
    | RunFailedData
    | RunCancelledData
    | AttrSetData
    | StepCreatedData
    | StepCompletedData
    | StepFailedData
    | StepRetryingData
    | HookCreatedData
    | HookReceivedData
    | HookConflictData
    | WaitCreatedData
)

#: The data class each event type carries, and whether the data is required.
EVENT_DATA: dict[EventType, tuple[type[EventData] | None, bool]] = {
    EventType.RUN_CREATED: (RunCreatedData, True),
    EventType.RUN_STARTED: (RunCreatedData, False),
    EventType.RUN_COMPLETED: (RunCompletedData, True),
    EventType.RUN_FAILED: (RunFailedData, True),
    EventType.RUN_CANCELLED: (RunCancelledData, False),
    EventType.ATTR_SET: (AttrSetData, True),
    EventType.STEP_CREATED: (StepCreatedData, True),
    EventType.STEP_STARTED: (None, False),
    EventType.STEP_COMPLETED: (StepCompletedData, True),
    EventType.STEP_FAILED: (StepFailedData, True),
    EventType.STEP_RETRYING: (StepRetryingData, True),
    EventType.HOOK_CREATED: (HookCreatedData, True),
    EventType.HOOK_RECEIVED: (HookReceivedData, True),
    EventType.HOOK_DISPOSED: (None, False),
    EventType.HOOK_CONFLICT: (HookConflictData, True),
    EventType.WAIT_CREATED: (WaitCreatedData, True),
    EventType.WAIT_COMPLETED: (None, False),
}

#: Event types about one run as a whole (no correlation id).
RUN_EVENTS = frozenset(
    {
        EventType.RUN_CREATED,
        EventType.RUN_STARTED,
        EventType.RUN_COMPLETED,
        EventType.RUN_FAILED,
        EventType.RUN_CANCELLED,
    }
)


class NewEvent(_Frozen):
    """An event a caller asks ``events_create`` to append.

    Validated when built: the data class must be the one its type carries, and every event
    but the run events must name its step, hook or wait in ``correlation_id``.
    """

    event_type: EventType
    correlation_id: str | None = None
    data: EventData | None = None
    spec_version: int = 2

    @model_validator(mode="before")
    @classmethod
    def _data_of_its_type(cls, raw: object) -> object:
        """A mapping given as ``data`` is read as the data class of the event's type."""
        if isinstance(raw, dict) and isinstance(raw.get("data"), dict):
            try:
                expected = EVENT_DATA[EventType(str(raw.get("event_type")))][0]
            except ValueError:
                return raw
            if expected is not None:
                return {**raw, "data": expected.model_validate(raw["data"])}
        return raw

    @model_validator(mode="after")
    def _check_shape(self) -> NewEvent:
        expected, required = EVENT_DATA[self.event_type]
        if self.data is None and required:
            raise ValueError(f"{self.event_type} needs data ({_name(expected)})")
        if self.data is not None and type(self.data) is not expected:
            raise ValueError(
                f"{self.event_type} carries {_name(expected)}, not {type(self.data).__name__}"
            )
        needs_id = self.event_type not in RUN_EVENTS and self.event_type != EventType.ATTR_SET
        if needs_id and not self.correlation_id:
            raise ValueError(f"{self.event_type} needs a correlation_id")
        return self


def _name(cls: type[EventData] | None) -> str:
    return "no data" if cls is None else cls.__name__


class Event(_Frozen):
    """One entry of a run's log.

    Attributes:
        sequence: 1-based position in the run's log; the log is dense (no holes) and
            ordered, so ``sequence`` is also the order events were committed in.
        event_id: Unique within the run, ordered like ``sequence``.
        data: The event's data; ``None`` when listed with ``resolve_data="none"``.
    """

    run_id: str
    event_id: str
    sequence: int
    event_type: EventType
    correlation_id: str | None = None
    data: EventData | None = None
    created_at: datetime
    spec_version: int = 2


def event_id_for(sequence: int) -> str:
    """The event id of the event at ``sequence`` (sortable as text like the sequence)."""
    return f"evnt_{sequence:010d}"


class EventResult(_Frozen):
    """What ``events_create`` returns: the event appended and the entities it touched.

    ``event`` is ``None`` for an idempotent repeat that appended nothing (``run_started`` on a
    running run, ``run_cancelled`` on a cancelled run, ``run_created`` repeating a run that
    exists with the same content). For a token conflict, ``event`` is the ``hook_conflict``
    event and ``hook`` is ``None``.
    """

    event: Event | None = None
    run: WorkflowRun | None = None
    step: Step | None = None
    hook: Hook | None = None
    wait: Wait | None = None


# ------------------------------------------------------------------------------ pages


class Pagination(_Frozen):
    """A page request: at most ``limit`` items after ``cursor``, in ``sort_order``."""

    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = None
    sort_order: SortOrder = "asc"


class Page(_Frozen, Generic[T]):
    """One page.

    Attributes:
        data: The items, in the order asked for.
        cursor: Where the next page starts: given whenever ``data`` is not empty (so a
            reader of a run's events can continue from it later and see only newer ones),
            and the request's own cursor when ``data`` is empty.
        has_more: More items existed past this page when it was read.
    """

    data: list[T]
    cursor: str | None
    has_more: bool


# ------------------------------------------------------------------------------ streams


class StreamChunk(_Frozen):
    """One chunk of a stream at its 0-based index."""

    index: int
    data: bytes


class StreamChunksPage(_Frozen):
    """A snapshot page of a stream's chunks; ``done``: the stream is closed (EOF)."""

    data: list[StreamChunk]
    cursor: str | None
    has_more: bool
    done: bool


class StreamInfo(_Frozen):
    """A stream's last index (``-1``: no chunk yet) and whether it is closed."""

    tail_index: int
    done: bool


# ------------------------------------------------------------------------------ queue


class Redeliver(_Frozen):
    """A queue handler's answer: deliver this same message again after ``delay_seconds``."""

    delay_seconds: float = Field(ge=0)


QueueMessage: TypeAlias = dict[str, JsonValue]
"""A queue message: a JSON object."""
