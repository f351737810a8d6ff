"""``RedisCoordinationStore``: ``flowcraft.core.ports.CoordinationStore`` on Redis.

Spec sheet
----------
* Driver: ``redis.asyncio`` (``pip install flowcraft-core[redis]``). Pass a URL (the store
  owns and closes its client) or your own ``redis.asyncio.Redis`` (you close it).
* Atomicity: every operation is one command (``get``) or one Lua script (``SET_ADD``,
  ``COMPARE_AND_SET``, ``ACQUIRE``, ``RELEASE``, ``EXPIRE_RUN`` in ``_scripts.py``); there are
  no client-side pipelines, watches or read-then-write sequences.
* Key layout (``prefix`` defaults to ``flowcraft``)::

      {prefix}:{key}                 the value or set of a key given by the runtime
      {prefix}:lock:{name}           a held lock; its value is the fencing token
      {prefix}:fence:{name}          the per-name INCR counter behind fencing tokens
      {prefix}:runkeys:{run_id}      the index set of every key that belongs to a run

  A key (or lock name) belongs to a run when ``run_of_key`` says so; by default that is every
  key of the form ``run:{run_id}:...`` (so a run's keys live under ``{prefix}:run:{run_id}:*``).
  Keys must not start with ``lock:``, ``fence:`` or ``runkeys:`` (``ValueError``).
* Locks: ``acquire_lock`` increments the name's counter and sets the lock with ``NX``-like
  semantics and a millisecond TTL in one script: tokens strictly increase per name for as long
  as the counter lives (it expires with its run). ``release_lock`` deletes only if the stored
  token is the caller's.
* TTLs tied to the run: ``expire_run`` sets one TTL on every indexed key of the run and on the
  index itself, in one script: no ``KEYS``/``SCAN``. Keys written after that inherit the
  index's remaining TTL.
* Errors: redis-py errors leave as ``TransientBackendError`` (connection, timeout, loading,
  failover) or ``PermanentBackendError`` (auth, wrong type, bad arguments).
* Limits: the scripts touch keys computed from the index, so the store needs a single Redis
  (or a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

from flowcraft.core.redis import _scripts
from flowcraft.core.redis._errors import redis_errors
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

__all__ = ["RedisCoordinationStore", "default_run_of_key"]

_RESERVED = ("lock:", "fence:", "runkeys:")


def default_run_of_key(key: str) -> str | None:
    """The run a key belongs to: ``run:{run_id}`` or ``run:{run_id}:...``, else None."""
    if not key.startswith("run:"):
        return None
    run_id = key[4:].split(":", 1)[0]
    return run_id or None


def _ttl_ms(ttl: float | None) -> int:
    if ttl is None:
        return 0
    if ttl <= 0:
        raise ValueError(f"ttl must be positive seconds, got {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


class RedisCoordinationStore:
    """Atomic set-add, compare-and-set, fenced locks and run TTLs on Redis.

    Args:
        url_or_client: A ``redis://`` URL, or a ``redis.asyncio.Redis`` client.
        prefix: Namespace of every key this store writes.
        run_of_key: Maps a key or lock name to the run it belongs to (or None); keys of a run
            are indexed so ``expire_run`` can expire them.
    """

    def __init__(
        self,
        url_or_client: str | Redis,
        *,
        prefix: str = "flowcraft",
        run_of_key: Callable[[str], str | None] = default_run_of_key,
    ) -> None:
        if not prefix:
            raise ValueError("prefix must not be empty")
        self.prefix = prefix
        self._owns_client = isinstance(url_or_client, str)
        self._client: Redis = (
            Redis.from_url(url_or_client) if isinstance(url_or_client, str) else url_or_client
        )
        self._run_of_key = run_of_key
        self._set_add = self._client.register_script(_scripts.SET_ADD)
        self._cas = self._client.register_script(_scripts.COMPARE_AND_SET)
        self._acquire = self._client.register_script(_scripts.ACQUIRE)
        self._release = self._client.register_script(_scripts.RELEASE)
        self._expire_run = self._client.register_script(_scripts.EXPIRE_RUN)

    # ------------------------------------------------------------------ keys

    def key(self, key: str) -> str:
        """The Redis key of a runtime key."""
        if key.startswith(_RESERVED):
            raise ValueError(f"key {key!r} starts with a reserved word {_RESERVED}")
        return f"{self.prefix}:{key}"

    def run_index(self, run_id: str) -> str:
        """The Redis key of a run's index set."""
        return f"{self.prefix}:runkeys:{run_id}"

    def _index_keys(self, name: str) -> list[str]:
        run_id = self._run_of_key(name)
        return [] if run_id is None else [self.run_index(run_id)]

    # ------------------------------------------------------------------ port

    async def set_add(self, key: str, member: str, *, ttl: float | None = None) -> bool:
        """Add ``member`` to the set ``key`` (and refresh its TTL if given); True if new."""
        keys = [self.key(key), *self._index_keys(key)]
        added = await self._call("set_add", self._set_add, keys, [member, _ttl_ms(ttl)])
        return added == 1

    async def compare_and_set(
        self, key: str, expected: str | None, value: str, *, ttl: float | None = None
    ) -> bool:
        """Set ``key`` to ``value`` if it is ``expected`` (None: absent); True if set."""
        keys = [self.key(key), *self._index_keys(key)]
        mode = "absent" if expected is None else "equals"
        args: list[str | int] = [mode, expected or "", value, _ttl_ms(ttl)]
        return await self._call("compare_and_set", self._cas, keys, args) == 1

    async def get(self, key: str) -> str | None:
        """The value of ``key``, or None."""
        with redis_errors("get"):
            return _text(await self._client.get(self.key(key)))

    async def acquire_lock(self, name: str, *, ttl: float) -> int | None:
        """Take the lock for ``ttl`` seconds: its fencing token, or None if it is held."""
        if ttl is None or ttl <= 0:
            raise ValueError(f"lock ttl must be positive seconds, got {ttl!r}")
        keys = [self._lock(name), self._fence(name), *self._index_keys(name)]
        token = await self._call("acquire_lock", self._acquire, keys, [_ttl_ms(ttl)])
        return None if token is None else int(cast(int, token))

    async def release_lock(self, name: str, token: int) -> bool:
        """Release the lock if ``token`` still holds it; False otherwise."""
        released = await self._call("release_lock", self._release, [self._lock(name)], [token])
        return released == 1

    async def expire_run(self, run_id: str, *, ttl: float) -> None:
        """Let every key of ``run_id`` (and its index) expire after ``ttl`` seconds."""
        keys = [self.run_index(run_id)]
        await self._call("expire_run", self._expire_run, keys, [_ttl_ms(ttl)])

    async def close(self) -> None:
        """Close the client if this store created it."""
        if self._owns_client:
            with redis_errors("close"):
                await self._client.aclose()

    # ------------------------------------------------------------------ helpers

    def _lock(self, name: str) -> str:
        return f"{self.prefix}:lock:{name}"

    def _fence(self, name: str) -> str:
        return f"{self.prefix}:fence:{name}"

    async def _call(
        self, what: str, script: AsyncScript, keys: list[str], args: list[str | int]
    ) -> object:
        with redis_errors(what):
            return cast(object, await script(keys=keys, args=args))
