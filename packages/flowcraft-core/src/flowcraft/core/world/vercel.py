"""vercel-workflow on any flowcraft World: :class:`VercelBridge`.

``VercelBridge(world)`` implements vercel-workflow's ``World`` abstract class (the official
Python runtime of the Workflow DevKit, ``vercel-workflow`` on PyPI) over any
:class:`flowcraft.core.world.World`, so vercel-workflow programs (its own ``Workflows``,
``@step``, ``sleep``, hooks) run on ``InMemoryWorld`` or on a flowcraft World on AWS.
Install with the extra: ``pip install "flowcraft-core[vercel]"`` (this module imports
vercel-workflow; ``flowcraft.core.world`` itself does not).

Supported vercel-workflow: ``>=0.12,<0.13`` (:data:`SUPPORTED_VERCEL_WORKFLOW`); a contract
test fails when its abstract methods or their signatures change.

Guarantees and mapping:

* ``events_create`` is the flowcraft World's, with its guards; errors are vercel's
  (409 -> ``EntityConflictError``, a recorded resume for another hook ->
  ``HookResumeConflictError``, unknown or disposed hook -> ``HookNotFoundError``,
  410 -> ``RunExpiredError``, 425 -> ``TooEarlyError``, 429 -> ``ThrottleError``,
  400/404 -> ``WorkflowWorldError`` with the status).
* Attributes follow vercel-workflow's rules (``$`` keys reserved unless
  ``allowReservedAttributes``, 256-unit keys, 256-byte values, 64 per run); a broken rule is
  a 400. The count is checked against the run read just before the write (not atomically).
* Lazy hook resume: a ``hook_received`` carrying a resume (``resumeId``) is recorded once per
  (run, resume id) by the World itself; the repeat returns the first event.
* ``queue()`` is the World's queue: the message is vercel's wire payload as a JSON object
  (bytes as ``{"$bytes": base64}``), deduplicated by ``idempotency_key`` alone, delayed by
  ``delay_seconds``. ``create_queue_handler(prefix, handler)`` registers the runtime's
  handler with the World's consumers (running between ``start()`` and ``aclose()``) and
  returns the HTTP handler for push deployments. A handler's continuation
  (``QueueContinuation``) is re-enqueued with its delay and idempotency key *before* the
  delivery is acknowledged: a crash in between duplicates the wake-up, never loses it.
* Lost step messages are sent again: vercel's replay enqueues a step only when it writes
  the step's ``step_created``, so a step message lost after that write (the process died in
  between, or the enqueue failed) would leave the run waiting forever. When a replay message
  comes again (attempt > 1: an earlier pass did not finish), the bridge re-enqueues every
  pending step of the run that never started, once the handler returned, keyed by the step
  id (a World that deduplicates drops the copies of messages it still holds). A step message
  sent twice is harmless: ``step_started`` and ``step_completed`` are guarded by the World.
  A pending step with an attempt behind it waits for its retry and is left alone: its
  message is the step handler's own (the retry's continuation, enqueued before the delivery
  is acknowledged); a copy would be refused until ``retryAfter`` (425), deferred, and then
  start an attempt of its own beside the retry's.

Limits: no encryption (``run_key()`` is ``None``; a run created with an encryption key is a
400); deliveries reach only the handlers of this process (or the HTTP handler).

Example::

    from vercel.workflow._internal import world as vercel_world
    from flowcraft.core.world import InMemoryWorld
    from flowcraft.core.world.vercel import VercelBridge

    bridge = VercelBridge(InMemoryWorld())
    vercel_world.set_world(bridge)  # before the program's Workflows() is built
    async with bridge:
        run = await vercel.workflow.start(my_workflow, 1)

HTTP push deliveries: ``POST`` the queue message (the JSON object ``queue()`` stored) with
the header ``x-vqs-queue-name`` (and optionally ``x-vqs-message-id``,
``x-vqs-message-attempt``); 200 acknowledges, 400 is a malformed delivery, 500 asks for
redelivery.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import uuid
from collections.abc import AsyncGenerator, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import pydantic
from flowcraft.core.world._errors import (
    HookNotFoundError,
    RunExpiredError,
    ThrottledError,
    TooEarlyError,
    WorldConflictError,
    WorldError,
    WorldNotFoundError,
    WorldRequestError,
)
from flowcraft.core.world._models import (
    MAX_PAGE_SIZE,
    EventResult,
    Pagination,
    QueueMessage,
    Redeliver,
    Step,
    StepStatus,
    StreamChunksPage,
    WorkflowRun,
)
from flowcraft.core.world._protocol import World
from flowcraft.core.world._vercel_codec import (
    decode_message,
    encode_message,
    to_new_event,
    to_vercel_event,
    to_vercel_hook,
    to_vercel_run,
    to_vercel_step,
)
from vercel.workflow._internal import world as w

__all__ = ["SUPPORTED_VERCEL_WORKFLOW", "VercelBridge", "translate_error"]

#: The vercel-workflow releases this bridge implements the World of.
SUPPORTED_VERCEL_WORKFLOW = ">=0.12,<0.13"

log = logging.getLogger("flowcraft.core.world.vercel")


def translate_error(  # noqa: PLR0911 - one return per status
    error: WorldError, *, hook_id: str | None = None, token: str | None = None
) -> Exception:
    """The vercel-workflow exception the runtime expects for a flowcraft World error."""
    if isinstance(error, HookNotFoundError):
        return w.HookNotFoundError(hook_id=hook_id, token=None if hook_id else token)
    if isinstance(error, WorldConflictError):
        if error.code == "resume_conflict":
            return w.HookResumeConflictError(error.message)
        return w.EntityConflictError(error.message)
    if isinstance(error, TooEarlyError):
        return w.TooEarlyError(error.message, retry_after=error.retry_after)
    if isinstance(error, ThrottledError):
        retry = None if error.retry_after is None else math.ceil(error.retry_after)
        return w.ThrottleError(error.message, status=429, code=error.code, retry_after=retry)
    if isinstance(error, RunExpiredError):
        return w.RunExpiredError(error.message, status=410, code=error.code)
    return w.WorkflowWorldError(error.message, status=error.status, code=error.code)


@contextlib.contextmanager
def _translated(*, hook_id: str | None = None, token: str | None = None) -> Iterator[None]:
    try:
        yield
    except WorldError as error:
        raise translate_error(error, hook_id=hook_id, token=token) from error
    except pydantic.ValidationError as error:  # an event flowcraft's models refuse
        raise translate_error(WorldRequestError(str(error), code="bad_event")) from error


class VercelBridge(w.World):
    """vercel-workflow's ``World`` over a flowcraft World (see the module docstring).

    Args:
        world: The flowcraft World to store runs, events, streams and messages in.
        deployment_id: What ``get_deployment_id()`` answers (stamped on new runs).
        environment: What ``get_environment()`` answers (``None``: unknown).
    """

    def __init__(
        self, world: World, *, deployment_id: str = "", environment: str | None = None
    ) -> None:
        self.world = world
        self._deployment_id = deployment_id
        self._environment = environment

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start the World's consumers (and its recovery of unfinished runs)."""
        await self.world.start()

    async def aclose(self) -> None:
        """Stop the World's consumers."""
        await self.world.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def get_deployment_id(self) -> str:
        """The deployment id given to the bridge."""
        return self._deployment_id

    def get_environment(self) -> str | None:
        """The environment given to the bridge."""
        return self._environment

    # ------------------------------------------------------------------ queue

    async def queue(
        self,
        queue_name: str,
        message: w.QueuePayload,
        *,
        deployment_id: str | None = None,
        idempotency_key: str | None = None,
        delay_seconds: float | None = None,
        **kwargs: Any,  # noqa: ANN401 - the abstract method's own catch-all
    ) -> str:
        """Enqueue ``message`` on the World's queue (dedup by key alone, delayed)."""
        return await self._enqueue(
            queue_name, encode_message(message), idempotency_key, delay_seconds
        )

    async def _enqueue(
        self, queue_name: str, message: QueueMessage, key: str | None, delay: float | None
    ) -> str:
        limit = self.world.capabilities.max_delay_seconds
        seconds = max(0.0, delay or 0.0)
        if limit is not None:
            seconds = min(seconds, limit)  # the runtime chains longer waits
        with _translated():
            return await self.world.queue(
                queue_name, message, idempotency_key=key, delay_seconds=seconds
            )

    def create_queue_handler(
        self, queue_name_prefix: w.QueuePrefix, handler: w.QueueHandler
    ) -> w.HTTPHandler:
        """Register ``handler`` with the World's consumers; the HTTP handler for pushes."""
        delivery = _Delivery(self, handler)
        self.world.register_handler(queue_name_prefix, delivery)
        return _PushHandler(queue_name_prefix, delivery)

    # ------------------------------------------------------------------ entities

    async def runs_get(self, run_id: str) -> w.WorkflowRun:
        """The run (``WorkflowWorldError`` 404 if none)."""
        with _translated():
            return to_vercel_run(await self.world.runs_get(run_id))

    async def steps_get(self, run_id: str, step_id: str) -> w.WorkflowStep:
        """The step (``WorkflowWorldError`` 404 if none)."""
        with _translated():
            return to_vercel_step(await self.world.steps_get(run_id, step_id))

    async def hooks_get_by_token(self, token: str) -> w.Hook:
        """The active hook holding ``token`` (``HookNotFoundError`` if none)."""
        with _translated(token=token):
            hook = await self.world.hooks_get_by_token(token)
        return to_vercel_hook(hook, environment=self._environment or "flowcraft")

    # ------------------------------------------------------------------ events

    async def events_create(self, run_id: str | None, data: w.Event) -> w.EventResult:
        """Append the event through the World's one write path."""
        attributes = None
        if data.event_type == "attr_set" and run_id is not None:
            with _translated():
                attributes = (await self.world.runs_get(run_id, resolve_data="none")).attributes
        with _translated(hook_id=data.correlation_id):
            event = to_new_event(data, run_attributes=attributes)
            result = await self.world.events_create(run_id, event)
        return self._result(result)

    def _result(self, result: EventResult) -> w.EventResult:
        environment = self._environment or "flowcraft"
        return w.EventResult(
            event=None if result.event is None else to_vercel_event(result.event),
            run=None if result.run is None else to_vercel_run(result.run),
            step=None if result.step is None else to_vercel_step(result.step),
            hook=None
            if result.hook is None
            else to_vercel_hook(result.hook, environment=environment),
            wait=None if result.wait is None else result.wait.model_dump(mode="json"),
        )

    async def events_list(
        self, run_id: str, *, pagination: w.PaginationOptions | None = None
    ) -> w.PaginatedResult[w.Event]:
        """The run's events by sequence; cursors stay valid as the log grows."""
        request = pagination or w.PaginationOptions()
        page_request = Pagination(
            limit=min(request.limit or MAX_PAGE_SIZE, MAX_PAGE_SIZE),
            cursor=request.cursor,
            sort_order=request.sort_order or "asc",
        )
        with _translated():
            page = await self.world.events_list(run_id, pagination=page_request)
        return w.PaginatedResult[w.Event].from_wire(
            {
                "data": [to_vercel_event(event) for event in page.data],
                "cursor": page.cursor,
                "hasMore": page.has_more,
            }
        )

    # ------------------------------------------------------------------ streams

    async def streams_write(self, run_id: str, name: str, chunk: bytes) -> None:
        """Append one chunk (``EntityConflictError`` on a closed stream)."""
        with _translated():
            await self.world.streams_write(run_id, name, chunk)

    async def streams_write_multi(self, run_id: str, name: str, chunks: Sequence[bytes]) -> None:
        """Append chunks at once (atomically, as the World does)."""
        with _translated():
            await self.world.streams_write_multi(run_id, name, chunks)

    async def streams_close(self, run_id: str, name: str) -> None:
        """EOF; idempotent."""
        with _translated():
            await self.world.streams_close(run_id, name)

    def streams_get(
        self, run_id: str, name: str, start_index: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Read live from ``start_index`` (negative: from the tail) until EOF."""
        return self._read(run_id, name, start_index)

    async def _read(
        self, run_id: str, name: str, start_index: int | None
    ) -> AsyncGenerator[bytes, None]:
        with _translated():
            async for chunk in self.world.streams_get(run_id, name, start_index):
                yield chunk

    async def streams_list(self, run_id: str) -> list[str]:
        """The run's stream names."""
        with _translated():
            return await self.world.streams_list(run_id)

    async def streams_get_chunks(
        self, run_id: str, name: str, *, limit: int | None = None, cursor: str | None = None
    ) -> w.StreamChunksPage:
        """A snapshot page of chunks, oldest first."""
        with _translated():
            page = await self.world.streams_get_chunks(
                run_id, name, limit=100 if limit is None else limit, cursor=cursor
            )
        return _chunks_page(page)

    async def streams_get_info(self, run_id: str, name: str) -> w.StreamInfo:
        """Tail index (-1: none) and EOF flag."""
        with _translated():
            info = await self.world.streams_get_info(run_id, name)
        return w.StreamInfo.from_wire({"tailIndex": info.tail_index, "done": info.done})


def _chunks_page(page: StreamChunksPage) -> w.StreamChunksPage:
    return w.StreamChunksPage.from_wire(
        {
            "data": [{"index": chunk.index, "data": chunk.data} for chunk in page.data],
            "cursor": page.cursor if page.has_more else None,
            "hasMore": page.has_more,
            "done": page.done,
        }
    )


#: How many steps one read of a run's steps asks for.
_STEPS_PAGE = MAX_PAGE_SIZE


def _redelivered_replay(message: QueueMessage, attempt: int) -> str | None:
    """The run whose pending steps this delivery must enqueue again, or ``None``.

    Only a replay message (a ``runId``, no ``stepId``, not a health check) delivered again
    (``attempt > 1``): the pass that wrote a step's ``step_created`` may have died before it
    enqueued the step, and vercel's replay never enqueues a step it sees created.
    """
    if attempt <= 1 or message.get("stepId") is not None or "__healthCheck" in message:
        return None
    run_id = message.get("runId")
    return run_id if isinstance(run_id, str) and run_id else None


def _pending_step_invocations(
    run: WorkflowRun, steps: Iterable[Step], *, now: datetime
) -> list[tuple[str, QueueMessage]]:
    """(idempotency key, message) of vercel's invocation of each never-started step of ``run``.

    Pending and never started (attempt 0): the message the runtime sent when it created the
    step may be lost. A pending step that was started waits for its retry, whose message the
    step handler enqueued before its delivery was acknowledged, so it is left alone. The
    message is the one the runtime sends when it creates the step (the step's id and name,
    requested at ``now``), keyed by the step id as the runtime keys it. None for a run that
    ended: its steps are never needed.
    """
    if run.status.terminal:
        return []
    return [
        (
            step.step_id,
            encode_message(
                w.WorkflowInvokePayload.from_wire(
                    {
                        "runId": run.run_id,
                        "stepId": step.step_id,
                        "stepName": step.step_name,
                        "requestedAt": now,
                    }
                )
            ),
        )
        for step in steps
        if step.status is StepStatus.PENDING and step.attempt == 0
    ]


async def _resend_pending_steps(bridge: VercelBridge, queue_name: str, run_id: str) -> int:
    """Enqueue every never-started step of ``run_id`` on ``queue_name`` again; how many.

    Reads the run and all its steps (page by page) without their data; each message goes
    through the bridge's own enqueue, keyed by the step id. A run the World does not know
    (the handler refused the delivery before creating it) has none.
    """
    world = bridge.world
    try:
        run = await world.runs_get(run_id, resolve_data="none")
    except WorldNotFoundError:
        return 0
    steps: list[Step] = []
    cursor: str | None = None
    while True:
        page = await world.steps_list(
            run_id,
            pagination=Pagination(limit=_STEPS_PAGE, cursor=cursor),
            resolve_data="none",
        )
        steps.extend(page.data)
        if not page.has_more or not page.data:
            break
        cursor = page.cursor
    invocations = _pending_step_invocations(run, steps, now=datetime.now(UTC))
    for key, message in invocations:
        await bridge._enqueue(queue_name, message, key, None)
    return len(invocations)


class _Delivery:
    """A flowcraft queue handler that runs vercel's handler on one message.

    A continuation is enqueued again (its delay, its idempotency key) before this returns,
    so the World acknowledges only after the wake-up is safely queued. After a replay
    message delivered again, the run's never-started steps are enqueued again too (see the
    module docstring); a failure there raises, so the replay message comes once more.
    """

    def __init__(self, bridge: VercelBridge, handler: w.QueueHandler) -> None:
        self._bridge = bridge
        self._handler = handler

    async def __call__(
        self, message: QueueMessage, *, queue_name: str, message_id: str, attempt: int
    ) -> Redeliver | None:
        continuation = await self._handler(
            decode_message(message), attempt=attempt, queue_name=queue_name, message_id=message_id
        )
        if continuation is not None:
            await self._bridge._enqueue(
                queue_name, message, continuation.idempotency_key, continuation.delay_seconds
            )
        run_id = _redelivered_replay(message, attempt)
        if run_id is not None:
            resent = await _resend_pending_steps(self._bridge, queue_name, run_id)
            if resent:
                log.info(
                    "replay of run %s delivered again (attempt %d): %d never-started step(s) "
                    "enqueued again (keyed by step id)",
                    run_id,
                    attempt,
                    resent,
                )
        return None


class _PushHandler:
    """The HTTP handler of push deployments: one POST, one delivery."""

    def __init__(self, prefix: str, delivery: _Delivery) -> None:
        self._prefix = prefix
        self._delivery = delivery

    async def __call__(self, request: w.HTTPRequest) -> w.HTTPResponse:
        headers = {key.lower(): value for key, value in request.headers.items()}
        queue_name = headers.get("x-vqs-queue-name")
        problem = _push_problem(request.method, queue_name, self._prefix)
        if problem is not None:
            return w.HTTPResponse.json({"error": problem}, status=400)
        assert queue_name is not None
        body = b"".join([chunk async for chunk in request.aiter_bytes()])
        try:
            message = json.loads(body)
            attempt = int(headers.get("x-vqs-message-attempt") or "1")
        except ValueError as error:
            return w.HTTPResponse.json({"error": f"malformed delivery: {error}"}, status=400)
        if not isinstance(message, dict):
            return w.HTTPResponse.json({"error": "the body must be a JSON object"}, status=400)
        message_id = headers.get("x-vqs-message-id") or f"msg_{uuid.uuid4().hex}"
        try:
            await self._delivery(
                message, queue_name=queue_name, message_id=message_id, attempt=attempt
            )
        except Exception as error:
            log.exception("push delivery %s on %s failed", message_id, queue_name)
            return w.HTTPResponse.json({"error": str(error)}, status=500)
        return w.HTTPResponse.json({"ok": True})


def _push_problem(method: str, queue_name: str | None, prefix: str) -> str | None:
    if method.upper() != "POST":
        return f"deliveries are POSTed, not sent with {method}"
    if not queue_name:
        return "missing the x-vqs-queue-name header"
    if not queue_name.startswith(prefix):
        return f"queue {queue_name!r} is not handled here (prefix {prefix!r})"
    return None
