"""redis-py errors translated at the port edge (``redis_errors``), and their classification.

Transient (retry may help): ``ConnectionError`` and ``TimeoutError`` (incl. ``BusyLoadingError``),
``TryAgainError``, ``ClusterDownError``, ``ReadOnlyError`` (a failover in progress) and socket
errors. Permanent: ``AuthenticationError``, ``AuthorizationError``, ``ResponseError`` (e.g.
WRONGTYPE: a key used as two types), ``DataError`` (bad argument), every other ``RedisError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flowcraft.core.errors import BackendError, PermanentBackendError, TransientBackendError
from redis import exceptions as rx

__all__ = ["classify_redis", "redis_errors"]

_PERMANENT: tuple[type[BaseException], ...] = (
    rx.AuthenticationError,
    rx.AuthorizationError,
    rx.AuthenticationWrongNumberOfArgsError,
    *((rx.ExternalAuthProviderError,) if hasattr(rx, "ExternalAuthProviderError") else ()),
)
_TRANSIENT: tuple[type[BaseException], ...] = (
    rx.ConnectionError,
    rx.TimeoutError,
    rx.TryAgainError,
    rx.ClusterDownError,
    rx.ReadOnlyError,
    OSError,
    TimeoutError,
)


def classify_redis(exc: BaseException) -> type[BackendError]:
    """Which backend error a redis-py exception becomes."""
    if isinstance(exc, _PERMANENT):
        return PermanentBackendError
    if isinstance(exc, _TRANSIENT):
        return TransientBackendError
    return PermanentBackendError


@contextmanager
def redis_errors(what: str) -> Iterator[None]:
    """Re-raise redis-py (and socket) errors inside the block as flowcraft backend errors."""
    try:
        yield
    except (rx.RedisError, OSError, TimeoutError) as exc:
        kind = classify_redis(exc)
        raise kind(f"{what}: {type(exc).__name__}: {exc}") from exc
