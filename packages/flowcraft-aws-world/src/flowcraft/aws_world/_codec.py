"""Entities and events as one binary attribute each; large payloads in S3, referenced.

A model is stored as compact JSON in a ``B`` attribute (``doc``): a map is far cheaper to
store and to read back as one value than as nested DynamoDB maps (measured on moto: 4.6
times faster to query). Payloads are ``bytes`` and come back byte for byte: the JSON holds
them as base64 text and lists their paths (``"b"``), so a JSON string can never be mistaken
for bytes. A payload longer than the threshold is put in S3 under ``payloads/<sha256>``
(content-addressed: an entity rewritten with the same payload reuses the object; objects
never change, so readers cache them) and the document lists its path and key (``"r"``).
Times are ISO-8601 text, enums their values.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import OrderedDict
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from flowcraft.aws_world._aws import Aws
from flowcraft.core.world import Event, NewEvent
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
Attr = dict[str, Any]
Path = list[str | int]


def _walk(value: Any, path: Path, found: list[tuple[Path, bytes]]) -> Any:  # noqa: ANN401
    """``value`` as JSON-ready data; every ``bytes`` replaced by ``None`` and listed."""
    if isinstance(value, dict):
        return {str(k): _walk(v, [*path, str(k)], found) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(v, [*path, i], found) for i, v in enumerate(value)]
    if isinstance(value, bytes):
        found.append((path, value))
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def _set(document: Any, path: Path, value: Any) -> Any:  # noqa: ANN401
    """``document`` with ``value`` at ``path`` (in place; the new root)."""
    if not path:
        return value
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


class Payloads:
    """Encodes models for DynamoDB, moving large payloads to S3 and back.

    Args:
        aws: The clients.
        bucket: The bucket (shared with stream chunks).
        threshold: Longer payloads go to S3.
    """

    def __init__(self, aws: Aws, bucket: str, threshold: int) -> None:
        self._aws = aws
        self._bucket = bucket
        self._threshold = threshold
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._stored: set[str] = set()

    async def dump(self, model: BaseModel) -> Attr:
        """``model`` as a ``B`` attribute value, its large payloads uploaded first."""
        found: list[tuple[Path, bytes]] = []
        value = _walk(model.model_dump(mode="python"), [], found)
        inline, refs = [], []
        for path, data in found:
            if len(data) > self._threshold:
                refs.append([path, await self._upload(data)])
            else:
                inline.append(path)
                _set(value, path, base64.b64encode(data).decode())
        document = {"v": value, "b": inline, "r": refs}
        return {"B": json.dumps(document, separators=(",", ":")).encode()}

    async def _upload(self, data: bytes) -> str:
        key = f"payloads/{hashlib.sha256(data).hexdigest()}"
        if key not in self._stored:
            await self._aws.s3("put_object", Bucket=self._bucket, Key=key, Body=data)
            self._stored.add(key)
            self._remember(key, data)
        return key

    def _remember(self, key: str, data: bytes) -> None:
        self._cache[key] = data
        self._cache.move_to_end(key)
        while len(self._cache) > 64:
            self._cache.popitem(last=False)

    async def plain(self, attr: Attr, *, fetch: bool = True) -> Any:  # noqa: ANN401
        """The stored value with its bytes back (S3 payloads fetched, or ``None``)."""
        document = json.loads(bytes(attr["B"]))
        value = document["v"]
        for path in document["b"]:
            node: Any = value
            for step in path:
                node = node[step]
            value = _set(value, path, base64.b64decode(node))
        for path, key in document["r"]:
            value = _set(value, path, await self._download(key) if fetch else None)
        return value

    async def load(self, model: type[M], attr: Attr, *, fetch: bool = True) -> M:
        """The model stored in ``attr``."""
        return model.model_validate(await self.plain(attr, fetch=fetch))

    async def _download(self, key: str) -> bytes:
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        data = await self._aws.s3_read(self._bucket, key)
        self._remember(key, data)
        return data

    async def load_event(self, attr: Attr, *, with_data: bool = True) -> Event:
        """An event stored by :meth:`dump`; its typed data rebuilt from its type."""
        fields = await self.plain(attr, fetch=with_data)
        data = fields.pop("data", None)
        if data is not None and with_data:
            shaped = NewEvent.model_validate(
                {
                    "event_type": fields["event_type"],
                    "correlation_id": fields.get("correlation_id"),
                    "data": data,
                }
            )
            fields["data"] = shaped.data
        return Event.model_validate(fields)
