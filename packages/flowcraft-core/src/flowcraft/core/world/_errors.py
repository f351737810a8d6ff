"""The World's errors: one class per HTTP-like status, the status kept as data.

Class tree::

    FlowcraftError
    └── WorldError                      ``.status`` (int), ``.code`` (stable string)
        ├── WorldRequestError(ValueError)   400: a malformed request (missing run id or
        │                                   correlation id, a bad cursor, limit out of range)
        ├── WorldNotFoundError(KeyError)    404: no such run, step, hook, wait or stream
        │   └── HookNotFoundError           404: the hook is unknown or already disposed
        ├── WorldConflictError              409: the transition is refused (a terminal run or
        │                                   step, a duplicate create, a wait completed twice)
        ├── RunExpiredError                 410: the run's retention ended
        ├── TooEarlyError                   425: ``step_started`` before the step's
        │                                   ``retry_after``; ``.retry_after`` is in seconds
        └── ThrottledError                  429: the backend throttles; ``.retry_after`` seconds

A hook token held by another live hook is **not** an error: ``events_create`` appends a
``hook_conflict`` event and returns it. The pure rules (``flowcraft.core.world.decide``)
return these errors as values (:class:`Refusal`); a World raises them.
"""

from __future__ import annotations

from flowcraft.core.errors import FlowcraftError


class WorldError(FlowcraftError):
    """Base of every error a World raises on purpose.

    Attributes:
        status: The HTTP-like status (400, 404, 409, 410, 425, 429).
        code: A stable, machine-readable reason (e.g. ``"run_terminal"``).
    """

    status = 500
    default_code = "world_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.message, self.code, self.__dict__))

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and isinstance(other, WorldError)
            and (other.message, other.code) == (self.message, self.code)
        )

    def __hash__(self) -> int:
        return hash((type(self), self.message, self.code))


def _rebuild(
    cls: type[WorldError], message: str, code: str, state: dict[str, object]
) -> WorldError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class WorldRequestError(WorldError, ValueError):
    """400: the request is malformed; nothing was written."""

    status = 400
    default_code = "bad_request"


class WorldNotFoundError(WorldError, KeyError):
    """404: the run, step, hook, wait or stream does not exist."""

    status = 404
    default_code = "not_found"

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class HookNotFoundError(WorldNotFoundError):
    """404: no live hook with this id (or token): never created, or disposed."""

    default_code = "hook_not_found"


class WorldConflictError(WorldError):
    """409: the transition is refused by the entity's current state; nothing was written."""

    status = 409
    default_code = "conflict"


class RunExpiredError(WorldError):
    """410: the run ended and its retention has passed; it can no longer be advanced."""

    status = 410
    default_code = "run_expired"


class TooEarlyError(WorldError):
    """425: ``step_started`` before the step's ``retry_after``.

    Attributes:
        retry_after: Whole seconds (at least 1) until the step may start.
    """

    status = 425
    default_code = "too_early"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class ThrottledError(WorldError):
    """429: the backend throttles requests; retry after ``retry_after`` seconds (if known).

    The in-memory World never raises it; Worlds on rate-limited services translate their
    throttling errors to it.
    """

    status = 429
    default_code = "throttled"

    def __init__(
        self, message: str, *, retry_after: float | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
