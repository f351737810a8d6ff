"""A TCP proxy on loopback whose connections a fault test cuts all at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

_CHUNK = 65536
_Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
#: Loop turns a cut waits for the transports of connections accepted just before it.
_TURNS_FOR_ACCEPTED = 3


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
        #: Connections taken from clients so far (passed through or not).
        self.connections = 0
        #: Connections passed through to the target so far.
        self.accepted = 0
        #: Connections a cut aborted so far.
        self.aborted = 0
        self._server: asyncio.Server | None = None
        self._listening = False
        self._cuts = 0
        self._open: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        #: Accepted connections still connecting upstream, and their connects.
        self._pending: dict[asyncio.StreamWriter, asyncio.Future[_Streams]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Every accepted transport until its connection is lost: held here, none can be
        #: garbage collected unclosed, and a cut reaches each (whatever its task is doing).
        self._accepted: set[asyncio.Transport] = set()

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
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.StreamReaderProtocol:
            reader = asyncio.StreamReader(limit=_CHUNK, loop=loop)
            return _Tracked(self._accepted, reader, self._accept, loop=loop)

        self._server = await loop.create_server(protocol, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._listening = True

    async def resume(self) -> None:
        """Listen again after :meth:`cut`, on the same port."""
        await self.start()

    async def cut(self) -> int:
        """Refuse new connections and abort every open one; how many were open."""
        self._listening = False
        self._cuts += 1
        if self._server is not None:
            await _stop_listening(self._server)
        pairs, self._open = list(self._open), set()
        for client_side, server_side in pairs:
            client_side.transport.abort()
            server_side.transport.abort()
        for transport in list(self._accepted):
            transport.abort()
        for writer, connecting in self._pending.items():
            writer.transport.abort()
            connecting.cancel()  # an upstream that never answers must not keep it
        self._pending.clear()
        self.aborted += len(pairs)
        await asyncio.sleep(0)
        return len(pairs)

    async def close(self) -> None:
        """Stop for good: cut, end every connection's task, let the transports close.

        A task still running 2 s after the cut is cancelled (its transports are aborted on
        the way out).
        """
        if self._server is None:
            return
        await self.cut()
        self._server = None
        if self._tasks:
            _, running = await asyncio.wait(set(self._tasks), timeout=2.0)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        await asyncio.sleep(0.05)

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Whatever ends this task (a cut, a refused upstream, the relay finishing, the task
        # cancelled), both transports are aborted on the way out: an accepted transport that
        # nothing closes is what the garbage collector warns of. A cut cancels the upstream
        # connect, never this task (asyncio reports a cancelled connection task as an error).
        up_writer: asyncio.StreamWriter | None = None
        self.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        connecting = None
        try:
            if not self._listening:  # accepted just before a cut, handled after it
                return
            cuts = self._cuts
            connecting = asyncio.ensure_future(asyncio.open_connection(self.host, self.target_port))
            self._pending[writer] = connecting
            await asyncio.wait({connecting})
            if connecting.cancelled() or isinstance(connecting.exception(), OSError):
                return  # cut while connecting, or the target refused
            up_reader, up_writer = connecting.result()
            if cuts != self._cuts:  # cut just as the connect came through: gone too
                return
            self._pending.pop(writer, None)
            await self._relay(reader, writer, up_reader, up_writer)
        finally:
            self._pending.pop(writer, None)
            if connecting is not None and not connecting.done():
                connecting.cancel()  # this task was cancelled (close): no connect left behind
            writer.transport.abort()
            if up_writer is not None:
                up_writer.transport.abort()

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


async def _stop_listening(server: asyncio.Server) -> None:
    """Close ``server`` without losing a connection it accepted a moment before.

    asyncio accepts in one loop turn and makes the transport in a task of the next; if the
    server is closed in between, making the transport fails (``Server._attach`` asserts that
    the server is open: "Error on transport creation for incoming connection") and the
    accepted socket is dropped unclosed, for the garbage collector to warn of (CPython 3.11,
    158 times in 300 cuts under connecting clients). So: stop accepting first, let the
    transports of what was accepted be made (they are aborted as connections of a cut), then
    close.
    """
    loop = asyncio.get_running_loop()
    for listening in server.sockets:
        loop.remove_reader(listening.fileno())
    for _ in range(_TURNS_FOR_ACCEPTED):
        await asyncio.sleep(0)
    server.close()


class _Tracked(asyncio.StreamReaderProtocol):
    """A server connection's protocol that keeps its transport in ``accepted`` while open."""

    def __init__(
        self,
        accepted: set[asyncio.Transport],
        reader: asyncio.StreamReader,
        accept: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        *,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(reader, accept, loop=loop)
        self._accepted = accepted
        self._tracked: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.Transport):
            self._tracked = transport
            self._accepted.add(transport)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._tracked is not None:
            self._accepted.discard(self._tracked)
        super().connection_lost(exc)
