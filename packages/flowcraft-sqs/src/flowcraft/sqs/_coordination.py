"""``DynamoDbCoordinationStore``: ``flowcraft.core.ports.CoordinationStore`` on DynamoDB.

Spec sheet
----------
* Table: the namespace's coordination table (``_schema.Names.coordination``): partition key
  ``coordinationKey`` (S), no sort key, DynamoDB TTL enabled on ``ttl``. ``ensure_tables``
  creates it. Pass an :class:`~flowcraft.sqs._aws.Aws` to share its clients and executor, or
  ``dynamodb_client`` / ``endpoint_url`` / ``region`` (the store then owns the ``Aws`` it
  makes and ``close`` closes it).
* Atomicity: every primitive is a conditional ``UpdateItem`` (or a strongly consistent
  ``GetItem``); there are no transactions, scans or client-side read-then-write sequences
  without a condition guarding the write.
* Item layout (``{p}:`` is ``{prefix}:``, or nothing for the empty prefix)::

      {p}{key}                 value (S) of compare_and_set, or members (SS) of set_add
      {p}lock:{name}           fence (N): the last token issued for the name;
                               held_until (N): the holder's expiry (0 once released)
      {p}runkeys:{run_id}      keys (SS): the stored keys of the run's items (see below)

  Every item may carry ``expires_at`` (N: exact epoch seconds, a float) and ``ttl`` (N:
  ``expires_at`` rounded up to whole seconds, for DynamoDB's TTL deletion, which is lazy: up
  to days late on AWS, never on moto). An item whose ``expires_at <= now`` is absent to every
  primitive: conditions test it with ``:now`` bound to this client's ``time.time()``, reads
  filter it. ``ttl=None`` writes no expiry (``compare_and_set`` removes an old one; ``set_add``
  on a live set keeps it, as Redis's ``SADD`` keeps a key's TTL). Keys must not start with
  ``lock:`` or ``runkeys:`` and a prefix must not contain ``:`` (``ValueError``), so neither
  the internal items nor two prefixes collide.
* Locks: a lock's item keeps its token counter and its holder separately. ``acquire_lock``
  increments ``fence`` and sets ``held_until`` in one update conditioned on "not held" (no
  holder, or the holder's expiry passed); ``release_lock`` sets ``held_until`` to 0 if
  ``fence`` is still the caller's token and the lock has not expired. Nothing deletes the item
  and its own lifetime (``expires_at``/``ttl``) is only ever set by ``expire_run``, so tokens
  strictly increase per name across releases and expired holders for as long as the item is
  stored. A lock item that expired with its run counts as absent, but a new holder continues
  its counter while DynamoDB has not deleted it; after the deletion tokens start at 1 again
  (as Redis's counter does when it expires with its run).
* Runs: the table has no sort key and a scan is out of the question, so a run's keys are
  indexed in one item per run, ``runkeys:{run_id}`` (a String Set of stored keys). The first
  write of a run key (``run:{run_id}`` or ``run:{run_id}:...``, lock names included) by this
  process adds it there, before the write itself; an in-process LRU cache of indexed keys
  (65,536 entries) avoids adding again. ``expire_run`` sets the index's expiry and reads its
  keys in one update, then caps the expiry of each listed item that exists and is live (a
  shorter expiry, e.g. of a value written with a short ``ttl``, is kept). A key first indexed
  after ``expire_run`` (a late write of an ended run, by any process) inherits the run's
  expiry, as with Redis; once the index itself has expired a new one is started.
* Limits of the index: it holds about 400 KB of key names (DynamoDB's item size: several
  thousand keys per run; a bigger run's index writes fail with ``PermanentBackendError``). A
  key indexed by a process that died before writing it is listed but skipped. A write racing
  ``expire_run`` (indexed before the index was read, written after the keys were capped) keeps
  no expiry, and so does a ``compare_and_set`` with ``ttl=None`` after ``expire_run`` of a key
  this process had indexed before (an overwrite without a TTL); call ``expire_run`` again to
  catch those. Two concurrent first writes of one key in a process may both index it.
* Requests (round trips), with ``+1`` for the first write of a run key in a process (index)
  and ``+1`` more for such a write after the run ended:

      get                1 GetItem (ConsistentRead)
      compare_and_set    1 UpdateItem
      set_add            1 UpdateItem; 2 when the set had expired (replaced) or when the
                         member was there already and a ttl refreshes its expiry
      acquire_lock       1 UpdateItem (taken, or held: None); 2 when the item had expired
      release_lock       1 UpdateItem
      expire_run         1 UpdateItem of the index + 1 UpdateItem per indexed key (16 at once)
      close              none

  A refused condition returns the old item only where the answer needs it (``set_add``,
  ``acquire_lock``, the index add, ``expire_run``): a refused ``set_add`` (the member was
  there) reads the whole set back, so it costs the set's size in read units.
* Clocks: expiry is judged by each client's own ``time.time()``; clients whose clocks differ
  by ``d`` seconds disagree about expiry for ``d`` seconds (keep them NTP-synchronised).
* Errors: ``TransientBackendError`` / ``PermanentBackendError`` from ``Aws``; a refused
  condition is an answer (False / None), never an error.

Example::

    aws = Aws(endpoint_url="http://127.0.0.1:15000")
    await ensure_tables(aws, Names.of("flowcraft"))
    store = DynamoDbCoordinationStore(table_name="flowcraft-coordination", aws=aws)
    token = await store.acquire_lock("run:r1:decide", ttl=5)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from flowcraft.core.errors import TransientBackendError
from flowcraft.sqs._aws import Aws
from flowcraft.sqs._errors import Refused

__all__ = ["DynamoDbCoordinationStore", "run_of_key"]

#: Every attribute an expression names, as ``#name`` (``ttl`` is a DynamoDB reserved word).
_NAMES = {
    "#key": "coordinationKey",
    "#value": "value",
    "#members": "members",
    "#fence": "fence",
    "#held": "held_until",
    "#keys": "keys",
    "#exp": "expires_at",
    "#ttl": "ttl",
}
_RESERVED = ("lock:", "runkeys:")
_PLACEHOLDER = re.compile(r"[#:]\w+")
_LIVE = "(attribute_not_exists(#exp) OR #exp > :now)"
_DEAD = "#exp <= :now"
_SET_EXPIRY = "#exp = :exp, #ttl = :ttl"
_NEXT_FENCE = "#fence = if_not_exists(#fence, :zero) + :one, #held = :until"
#: Rounds of a primitive whose item keeps changing under it (each refusal is another's write).
_ROUNDS = 8
_CACHE_SIZE = 65_536
_EXPIRE_CONCURRENCY = 16

Item = Mapping[str, Any]


def run_of_key(key: str) -> str | None:
    """The run a key or lock name belongs to (``run:{run_id}`` or ``run:{run_id}:...``)."""
    if not key.startswith("run:"):
        return None
    return key[4:].split(":", 1)[0] or None


def _number(value: float) -> dict[str, str]:
    return {"N": repr(value)}


def _expiry(expires: float | None) -> dict[str, dict[str, str]]:
    """``:exp`` (exact) and ``:ttl`` (whole seconds, rounded up) of an expiry, if any."""
    if expires is None:
        return {}
    return {":exp": _number(expires), ":ttl": {"N": str(math.ceil(expires))}}


def _expires(item: Item) -> float | None:
    expires = item.get("expires_at")
    return None if expires is None else float(expires["N"])


def _live(item: Item, now: float) -> bool:
    expires = _expires(item)
    return expires is None or expires > now


def _old(refused: Refused) -> Item:
    """The item as it was when the condition failed (empty: not asked for, or none)."""
    return refused.item or {}


def _check_ttl(ttl: float | None) -> None:
    if ttl is not None and not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"ttl must be positive seconds, got {ttl!r}")


def _deadline(now: float, ttl: float | None, inherited: float | None) -> float | None:
    """When a write expires: its own ttl, capped by the expiry of its ended run."""
    expires = None if ttl is None else now + ttl
    if inherited is not None and (expires is None or inherited < expires):
        return inherited
    return expires


class DynamoDbCoordinationStore:
    """Atomic set-add, compare-and-set, fenced locks and run expiry on DynamoDB.

    Args:
        table_name: The coordination table (``Names.of(namespace).coordination``).
        prefix: Namespace of the keys in the table: ``{prefix}:{key}`` (no ``:`` in it);
            empty: keys are stored as they are.
        aws: The shared clients (the caller closes it). Exclusive with the three below.
        dynamodb_client: A boto3 DynamoDB client for an ``Aws`` this store creates and owns.
        endpoint_url: The endpoint of an ``Aws`` this store creates (an emulator).
        region: The region of an ``Aws`` this store creates.
    """

    def __init__(
        self,
        *,
        table_name: str,
        prefix: str = "",
        aws: Aws | None = None,
        dynamodb_client: Any = None,  # noqa: ANN401 (a boto3 client: typed by boto3-stubs only)
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        if ":" in prefix:
            raise ValueError(f"prefix must not contain ':', got {prefix!r}")
        if aws is not None and (dynamodb_client, endpoint_url, region) != (None, None, None):
            raise ValueError("pass either aws or dynamodb_client/endpoint_url/region")
        self.table_name = table_name
        self.prefix = prefix
        self._owns_aws = aws is None
        self._aws = aws or Aws(
            dynamodb_client=dynamodb_client, endpoint_url=endpoint_url, region=region
        )
        self._indexed: OrderedDict[str, None] = OrderedDict()

    # ------------------------------------------------------------------ keys

    def key(self, key: str) -> str:
        """The stored key (``coordinationKey``) of a runtime key."""
        if key.startswith(_RESERVED):
            raise ValueError(f"key {key!r} starts with a reserved word {_RESERVED}")
        return self._qualified(key)

    def lock_key(self, name: str) -> str:
        """The stored key of the lock ``name``."""
        return self._qualified(f"lock:{name}")

    def run_index(self, run_id: str) -> str:
        """The stored key of a run's index item."""
        return self._qualified(f"runkeys:{run_id}")

    def _qualified(self, key: str) -> str:
        return f"{self.prefix}:{key}" if self.prefix else key

    # ------------------------------------------------------------------ port

    async def set_add(self, key: str, member: str, *, ttl: float | None = None) -> bool:
        """Add ``member`` to the set ``key`` (its expiry refreshed if ``ttl``); True if new.

        An expired set counts as empty: it is replaced by ``{member}``.
        """
        _check_ttl(ttl)
        stored, now = self.key(key), time.time()
        expires = _deadline(now, ttl, await self._index(key, stored, now))
        values: dict[str, Any] = {
            ":m": {"S": member},
            ":ms": {"SS": [member]},
            ":now": _number(now),
            **_expiry(expires),
        }
        refresh = "" if expires is None else f" SET {_SET_EXPIRY}"
        for _ in range(_ROUNDS):
            try:
                condition = f"{_LIVE} AND NOT contains(#members, :m)"
                update = f"ADD #members :ms REMOVE #value{refresh}"
                await self._update(stored, update, values, condition=condition, old=True)
                return True
            except Refused as refused:
                current = _old(refused)
            if current and _live(current, now):
                if expires is not None:
                    await self._refresh(stored, values)
                return False
            if current and await self._replace_set(stored, values, expires is not None):
                return True
        raise TransientBackendError(f"set_add {key!r}: the item kept changing")

    async def compare_and_set(
        self, key: str, expected: str | None, value: str, *, ttl: float | None = None
    ) -> bool:
        """Set ``key`` to ``value`` if it is ``expected`` (None: absent or expired)."""
        _check_ttl(ttl)
        stored, now = self.key(key), time.time()
        expires = _deadline(now, ttl, await self._index(key, stored, now))
        values: dict[str, Any] = {":value": {"S": value}, ":now": _number(now), **_expiry(expires)}
        if expected is None:
            condition = f"attribute_not_exists(#key) OR {_DEAD}"
        else:
            condition = f"#value = :expected AND {_LIVE}"
            values[":expected"] = {"S": expected}
        if expires is None:
            update = "SET #value = :value REMOVE #members, #exp, #ttl"
        else:
            update = f"SET #value = :value, {_SET_EXPIRY} REMOVE #members"
        try:
            await self._update(stored, update, values, condition=condition)
        except Refused:
            return False
        return True

    async def get(self, key: str) -> str | None:
        """The value of ``key``, or None (absent, expired, or a set)."""
        response = await self._aws.dynamodb(
            "get_item",
            TableName=self.table_name,
            Key={"coordinationKey": {"S": self.key(key)}},
            ConsistentRead=True,
            ProjectionExpression="#value, #exp",
            ExpressionAttributeNames={"#value": "value", "#exp": "expires_at"},
        )
        item = response.get("Item")
        if not item or not _live(item, time.time()):
            return None
        value = item.get("value", {})
        return str(value["S"]) if "S" in value else None

    async def acquire_lock(self, name: str, *, ttl: float) -> int | None:
        """Take the lock for ``ttl`` seconds: its fencing token, or None if it is held."""
        _check_ttl(ttl)
        stored, now = self.lock_key(name), time.time()
        inherited = await self._index(name, stored, now)
        values: dict[str, Any] = {
            ":zero": {"N": "0"},
            ":one": {"N": "1"},
            ":until": _number(now + ttl),
            ":now": _number(now),
            **_expiry(inherited),
        }
        own = "" if inherited is None else f", {_SET_EXPIRY}"
        free = "(attribute_not_exists(#held) OR #held <= :now)"
        for _ in range(_ROUNDS):
            try:
                update, condition = f"SET {_NEXT_FENCE}{own}", f"{free} AND {_LIVE}"
                return await self._take(stored, update, values, condition, old=True)
            except Refused as refused:
                current = _old(refused)
            if current and _live(current, now):
                return None  # held
            # The item expired with its run: a fresh lock, with the counter continued.
            revive = f"SET {_NEXT_FENCE}{own}" + (" REMOVE #exp, #ttl" if not own else "")
            try:
                return await self._take(stored, revive, values, _DEAD, old=False)
            except Refused:
                continue
        raise TransientBackendError(f"acquire_lock {name!r}: the item kept changing")

    async def release_lock(self, name: str, token: int) -> bool:
        """Release the lock if ``token`` still holds it (its expiry becomes 0); else False."""
        values = {
            ":zero": {"N": "0"},
            ":token": {"N": str(int(token))},
            ":now": _number(time.time()),
        }
        condition = f"#fence = :token AND #held > :now AND {_LIVE}"
        try:
            await self._update(
                self.lock_key(name), "SET #held = :zero", values, condition=condition
            )
        except Refused:
            return False
        return True

    async def expire_run(self, run_id: str, *, ttl: float) -> None:
        """Let every indexed key of ``run_id`` (and its index) expire after ``ttl`` seconds.

        Caps: an item that expires sooner keeps its expiry, expired and missing ones are left
        alone. Keys first written after this inherit the run's expiry.
        """
        _check_ttl(ttl)
        now = time.time()
        values: dict[str, Any] = {":now": _number(now), **_expiry(now + ttl)}
        cap = "attribute_not_exists(#exp) OR #exp > :exp"
        try:
            index = await self._update(
                self.run_index(run_id),
                f"SET {_SET_EXPIRY}",
                values,
                condition=cap,
                returns="ALL_NEW",
                old=True,
            )
        except Refused as refused:
            index = _old(refused)
        keys = index.get("keys", {}).get("SS", [])
        limit = asyncio.Semaphore(_EXPIRE_CONCURRENCY)
        results = await asyncio.gather(
            *(self._cap(key, values, limit) for key in keys), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def close(self) -> None:
        """Close the ``Aws`` if this store created it (idempotent)."""
        if self._owns_aws:
            self._aws.close()

    # ------------------------------------------------------------------ helpers

    async def _index(self, name: str, stored: str, now: float) -> float | None:
        """Add a run's key to its index (first write in this process): the ended run's expiry.

        Returns None while the run has not ended (no ``expire_run`` yet), else the run's
        expiry, which the write then inherits.
        """
        run_id = run_of_key(name)
        if run_id is None or stored in self._indexed:
            if run_id is not None:
                self._indexed.move_to_end(stored)
            return None
        inherited = await self._index_add(self.run_index(run_id), stored, now)
        self._indexed[stored] = None
        if len(self._indexed) > _CACHE_SIZE:
            self._indexed.popitem(last=False)
        return inherited

    async def _index_add(self, index: str, stored: str, now: float) -> float | None:
        """Add ``stored`` to the index item ``index``: see ``_index``."""
        values: dict[str, Any] = {":k": {"SS": [stored]}, ":now": _number(now)}
        for _ in range(_ROUNDS):
            try:
                condition = "attribute_not_exists(#exp)"
                await self._update(index, "ADD #keys :k", values, condition=condition, old=True)
                return None
            except Refused as refused:
                current = _old(refused)
            if current and _live(current, now):  # the run ended: the key expires with it
                await self._update(index, "ADD #keys :k", values)
                return _expires(current)
            try:  # the index expired with its run: start a new one
                update = "SET #keys = :k REMOVE #exp, #ttl"
                await self._update(index, update, values, condition=_DEAD)
                return None
            except Refused:
                continue
        raise TransientBackendError(f"index {index!r}: the item kept changing")

    async def _replace_set(self, stored: str, values: dict[str, Any], expires: bool) -> bool:
        """Replace an expired set by ``{member}``; False if it came alive meanwhile."""
        expiry = f", {_SET_EXPIRY} REMOVE #value" if expires else " REMOVE #value, #exp, #ttl"
        try:
            await self._update(stored, f"SET #members = :ms{expiry}", values, condition=_DEAD)
        except Refused:
            return False
        return True

    async def _refresh(self, stored: str, values: dict[str, Any]) -> None:
        """Set the expiry of a live set holding ``:m`` (no-op if it changed meanwhile)."""
        condition = f"contains(#members, :m) AND {_LIVE}"
        with contextlib.suppress(Refused):
            await self._update(stored, f"SET {_SET_EXPIRY}", values, condition=condition)

    async def _take(
        self, stored: str, update: str, values: dict[str, Any], condition: str, *, old: bool
    ) -> int:
        new = await self._update(
            stored, update, values, condition=condition, returns="UPDATED_NEW", old=old
        )
        return int(new["fence"]["N"])

    async def _cap(self, stored: str, values: dict[str, Any], limit: asyncio.Semaphore) -> None:
        """Cap one item's expiry at the run's (``expire_run``)."""
        condition = "attribute_exists(#key) AND (attribute_not_exists(#exp) OR #exp > :exp)"
        async with limit:
            with contextlib.suppress(Refused):
                await self._update(stored, f"SET {_SET_EXPIRY}", values, condition=condition)

    async def _update(
        self,
        stored: str,
        update: str,
        values: Mapping[str, Any],
        *,
        condition: str | None = None,
        returns: str = "NONE",
        old: bool = False,
    ) -> Item:
        """One ``UpdateItem``: the attributes it returns; ``Refused`` if ``condition`` fails.

        Only the ``#names`` and ``:values`` the expressions use are sent (DynamoDB refuses
        unused ones). ``old``: a refusal carries the item as it was.
        """
        used = set(_PLACEHOLDER.findall(f"{update} {condition or ''}"))
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"coordinationKey": {"S": stored}},
            "UpdateExpression": update,
            "ExpressionAttributeNames": {name: _NAMES[name] for name in used if name[0] == "#"},
            "ReturnValues": returns,
        }
        bound = {name: values[name] for name in used if name[0] == ":"}
        if bound:
            params["ExpressionAttributeValues"] = bound
        if condition is not None:
            params["ConditionExpression"] = condition
        if old:
            params["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        response = await self._aws.dynamodb("update_item", **params)
        attributes: Item = response.get("Attributes", {})
        return attributes
