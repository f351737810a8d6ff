"""A TCP proxy on loopback for fault tests: every connection cut at once, then refused.

Runs in the test's event loop (asyncio streams). ``cut()`` aborts every open connection (both
sides, no goodbye) and stops listening, so new connections are refused; ``resume()`` listens
on the same port again. moto keeps its state in memory, so cutting connections is how a test
makes the services unreachable without losing their data.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target`` (an http URL)."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.port = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._listening = False
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """The proxy's endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (on the same port as before, once one was chosen)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._listening = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._listening:  # accepted just before a cut, handled after it
            writer.transport.abort()
            return
        self._open.add(writer)
        cuts = self.cuts
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            self._open.discard(writer)
            writer.transport.abort()
            return
        if cuts != self.cuts:  # cut while connecting: this connection is gone too
            up_writer.transport.abort()
            return
        self._open.add(up_writer)
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            for side in (writer, up_writer):
                self._open.discard(side)
                side.transport.abort()

    async def cut(self) -> None:
        """Refuse new connections and abort every open one."""
        assert self._server is not None
        self._server.close()
        self._listening = False
        self.cuts += 1
        for side in list(self._open):
            side.transport.abort()
        self._open.clear()
        await asyncio.sleep(0)

    async def close(self) -> None:
        """Stop for good (connections accepted at the last moment are closed too)."""
        if self._server is not None:
            await self.cut()
            await asyncio.sleep(0.2)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()  # one side gone: the other goes too
