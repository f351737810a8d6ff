"""A TCP proxy on loopback whose connections a fault test cuts all at once."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

_CHUNK = 65536


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``host:target_port``, in the caller's event loop.

    Bytes pass through untouched (TLS included: the proxy never terminates it). Guarantees:

    * :meth:`cut` aborts every open connection on both sides (no FIN, no goodbye: the peers see
      a reset) and stops listening, so new connections are refused until :meth:`resume`. A
      connection accepted just before the cut, or still connecting upstream when it came, is
      aborted too: nothing slips through a cut.
    * :meth:`resume` listens again on the same port, so clients configured with :attr:`url`
      reconnect without being told anything.
    * The servers behind keep their state (only connections go), which is how a test makes a
      service unreachable for a while without losing its data.

    Its tasks run in the test's loop: a test waiting on worker processes must never block the
    loop (poll with ``asyncio.sleep``, as :func:`~flowcraft.core.testing.faults.exited` does).
    """

    def __init__(self, host: str, target_port: int) -> None:
        self.host = host
        self.target_port = target_port
        #: The listening port (chosen at the first :meth:`start`, kept across cuts).
        self.port = 0
        #: Connections passed through to the target so far.
        self.accepted = 0
        #: Connections a cut aborted so far.
        self.aborted = 0
        self._server: asyncio.Server | None = None
        self._listening = False
        self._cuts = 0
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._pending: set[asyncio.StreamWriter] = set()

    @classmethod
    def to(cls, url: str) -> TcpProxy:
        """A proxy to the host and port of ``url`` (port 80 when the URL names none)."""
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the proxy's endpoint for an HTTP service."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (on the same port as before once one was chosen)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._listening = True

    async def resume(self) -> None:
        """Listen again after :meth:`cut`, on the same port."""
        await self.start()

    async def cut(self) -> int:
        """Refuse new connections and abort every open one; how many were open."""
        if self._server is not None:
            self._server.close()
        self._listening = False
        self._cuts += 1
        pairs, self._open = list(self._open), set()
        for client_side, server_side in pairs:
            client_side.transport.abort()
            server_side.transport.abort()
        for writer in self._pending:
            writer.transport.abort()
        self._pending.clear()
        self.aborted += len(pairs)
        await asyncio.sleep(0)
        return len(pairs)

    async def close(self) -> None:
        """Stop for good: cut, then let the aborted transports finish closing."""
        if self._server is not None:
            await self.cut()
            await asyncio.sleep(0.05)
            self._server = None

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._listening:  # accepted just before a cut, handled after it
            writer.transport.abort()
            return
        cuts = self._cuts
        self._pending.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        finally:
            self._pending.discard(writer)
        if cuts != self._cuts:  # cut while connecting upstream: this one is gone too
            writer.transport.abort()
            up_writer.transport.abort()
            return
        await self._relay(reader, writer, up_reader, up_writer)

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        self.accepted += 1
        pair = (writer, up_writer)
        self._open.add(pair)
        try:
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            self._open.discard(pair)
            writer.transport.abort()
            up_writer.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until either side goes; then abort ``writer`` too."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
