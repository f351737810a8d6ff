"""The in-memory World's streams: append-only chunk lists per (run, name), read live."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from flowcraft.core.world._errors import WorldConflictError
from flowcraft.core.world._models import StreamChunk, StreamChunksPage, StreamInfo
from flowcraft.core.world._pages import decode_cursor, encode_cursor


@dataclass(slots=True)
class MemoryStream:
    """One stream: its chunks, whether it is closed, and an event set on every change."""

    chunks: list[bytes] = field(default_factory=list)
    closed: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def touch(self) -> None:
        """Wake every reader waiting on the current ``changed`` and arm a new one."""
        self.changed.set()
        self.changed = asyncio.Event()


class MemoryStreams:
    """Every stream of a World's state."""

    def __init__(self) -> None:
        self._streams: dict[tuple[str, str], MemoryStream] = {}
        self._names: dict[str, list[str]] = {}

    def _stream(self, run_id: str, name: str) -> MemoryStream:
        key = (run_id, name)
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = MemoryStream()
            self._names.setdefault(run_id, []).append(name)
        return stream

    def write(self, run_id: str, name: str, chunks: Sequence[bytes]) -> None:
        """Append ``chunks`` at once; 409 on a closed stream."""
        stream = self._stream(run_id, name)
        if stream.closed:
            raise WorldConflictError(
                f"stream {name!r} of run {run_id!r} is closed", code="stream_closed"
            )
        stream.chunks.extend(bytes(chunk) for chunk in chunks)
        stream.touch()

    def close(self, run_id: str, name: str) -> None:
        """Mark EOF (idempotent)."""
        stream = self._stream(run_id, name)
        if not stream.closed:
            stream.closed = True
            stream.touch()

    async def read(self, run_id: str, name: str, start_index: int | None) -> AsyncIterator[bytes]:
        """Chunks from ``start_index`` as they come, until EOF."""
        stream = self._stream(run_id, name)
        position = _start(len(stream.chunks), start_index)
        while True:
            changed = stream.changed
            while position < len(stream.chunks):
                yield stream.chunks[position]
                position += 1
            if stream.closed:
                return
            if changed is stream.changed:
                await changed.wait()

    def page(self, run_id: str, name: str, limit: int, cursor: str | None) -> StreamChunksPage:
        """Up to ``limit`` chunks after ``cursor``."""
        stream = self._streams.get((run_id, name)) or MemoryStream()
        start = 0 if cursor is None else decode_cursor(cursor, "chunks", "asc") + 1
        chunks = stream.chunks[start : start + limit]
        has_more = start + len(chunks) < len(stream.chunks)
        last = start + len(chunks) - 1
        return StreamChunksPage(
            data=[StreamChunk(index=start + i, data=c) for i, c in enumerate(chunks)],
            cursor=encode_cursor("chunks", "asc", last) if chunks else cursor,
            has_more=has_more,
            done=stream.closed and not has_more,
        )

    def info(self, run_id: str, name: str) -> StreamInfo:
        """Tail index and EOF flag."""
        stream = self._streams.get((run_id, name)) or MemoryStream()
        return StreamInfo(tail_index=len(stream.chunks) - 1, done=stream.closed)

    def names(self, run_id: str) -> list[str]:
        """The run's stream names in creation order."""
        return list(self._names.get(run_id, []))


def _start(length: int, start_index: int | None) -> int:
    if start_index is None:
        return 0
    if start_index < 0:
        return max(0, length + start_index)
    return start_index
