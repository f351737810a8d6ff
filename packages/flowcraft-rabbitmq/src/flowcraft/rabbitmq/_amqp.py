"""pika's ``AsyncioConnection`` as awaitables: one connection with one channel (a ``Link``).

pika is callback based; its asyncio adapter runs the protocol on the running event loop (no
thread, never blocks the loop). ``Link`` turns its callbacks into futures:

* ``open()`` connects and opens a channel within ``timeout``;
* ``rpc(method, **kwargs)`` calls a channel method that takes ``callback=`` and awaits the
  broker's reply frame;
* when the channel or the connection closes for any reason, every pending future fails with a
  ``TransientBackendError`` (or ``PermanentBackendError`` for refusals such as a queue
  re-declared with other arguments), ``is_open`` turns False and ``on_lost`` is called once.

A closed ``Link`` is never reused: the owner opens a new one (with a new ``generation``), so a
delivery tag of an old channel can be recognised as stale.

Sockets: pika closes a connection's socket only from loop callbacks, after the broker answered
the close (or at once for a connection still opening). ``close()`` waits for that (and drops
the TCP connection of a broker that does not answer in time); ``abort()`` only starts it, so
whoever aborts a link must still ``close()`` it before the event loop goes away (the adapter
closes every link it made: ``RabbitMqAdapter.close``). A socket left open is collected
unclosed later, a ``ResourceWarning``.

Writes are coalesced: pika hands its transport one frame at a time (a published message is a
method, a header and a body frame) and the transport sends each with a syscall of its own; the
connection here joins the frames of one event-loop turn into one write (``_Connection``), so
publishing a decision's messages costs one ``send`` and wakes the broker once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any, TypeAlias

import pika
from flowcraft.core.errors import BackendError, TransientBackendError
from flowcraft.rabbitmq._errors import amqp_errors, classify_amqp
from pika.adapters.asyncio_connection import AsyncioConnection

__all__ = ["Link", "Untyped"]

#: pika ships no type information: frames, methods and properties it hands back are this.
Untyped: TypeAlias = Any

_generations = itertools.count(1)


class _Connection(AsyncioConnection):  # type: ignore[misc]  # pika is untyped
    """pika's asyncio connection, writing the frames of one loop turn with one ``send``.

    Overrides ``_adapter_emit_data``, the adapter hook through which pika emits every frame:
    frames are kept in order and handed to the transport together at the end of the loop
    turn. Frames of a connection lost meanwhile are dropped, as the transport would drop them.
    """

    def __init__(self, *, loop: asyncio.AbstractEventLoop, **kwargs: object) -> None:
        self._frames: list[bytes] = []
        self._frames_loop = loop
        super().__init__(custom_ioloop=loop, **kwargs)

    def _adapter_emit_data(self, data: bytes) -> None:
        if not self._frames:
            self._frames_loop.call_soon(self._flush_frames)
        self._frames.append(data)

    def _flush_frames(self) -> None:
        out, self._frames = self._frames, []
        if out and self._transport is not None:
            super()._adapter_emit_data(out[0] if len(out) == 1 else b"".join(out))

    def _on_connection_workflow_done(self, conn_or_exc: object) -> None:
        # pika (1.4) reports a connect aborted during the AMQP handshake (close() while opening)
        # with the exception class, not an instance, and then fails an assertion on it.
        if isinstance(conn_or_exc, type) and issubclass(conn_or_exc, Exception):
            conn_or_exc = conn_or_exc()
        super()._on_connection_workflow_done(conn_or_exc)


class Link:
    """One AMQP connection with one channel, driven by the running event loop."""

    def __init__(self, parameters: pika.URLParameters, *, on_lost: Callable[[], None]) -> None:
        self.generation = next(_generations)
        self._parameters = parameters
        self._on_lost = on_lost
        self._connection: Any = None
        self.channel: Any = None
        self._pending: set[asyncio.Future[Any]] = set()
        #: Done once the connection is gone for good: its socket closed, or never made.
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.is_open = False
        self.failure: BackendError | None = None

    async def open(self, timeout: float) -> None:
        """Connect and open the channel, or raise a backend error.

        If opening fails or is cancelled half-way, the half-open connection is aborted: it never
        lingers with its socket (``close()`` waits until the socket is closed).
        """
        try:
            await self._open(timeout)
        except BaseException:
            self.abort()
            raise

    async def _open(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        if self._closed.done():
            raise TransientBackendError("connect: the link was closed before it opened")
        opened = self._track(loop.create_future())
        with amqp_errors("connect"):
            self._connection = _Connection(
                parameters=self._parameters,
                on_open_callback=lambda conn: _resolve(opened, conn),
                on_open_error_callback=self._on_open_error,
                on_close_callback=self._on_connection_closed,
                loop=loop,
            )
        await self._await(opened, timeout, "connect")
        if self.failure is not None:  # opened, and lost (or closed) before we got here
            raise self.failure
        channel_opened = self._track(loop.create_future())
        with amqp_errors("open channel"):
            self.channel = self._connection.channel(
                on_open_callback=lambda ch: _resolve(channel_opened, ch)
            )
            self.channel.add_on_close_callback(self._on_channel_closed)
        await self._await(channel_opened, timeout, "open channel")
        self.is_open = True

    async def rpc(self, name: str, timeout: float, **kwargs: object) -> Untyped:
        """Call ``channel.<name>(**kwargs, callback=...)`` and await the reply frame."""
        self.check(name)
        future = self._track(asyncio.get_running_loop().create_future())
        with amqp_errors(name):
            getattr(self.channel, name)(callback=lambda frame: _resolve(future, frame), **kwargs)
        return await self._await(future, timeout, name)

    def check(self, what: str) -> None:
        """Raise the link's failure (or a transient error) unless it is open."""
        if not self.is_open:
            raise self.failure or TransientBackendError(f"{what}: the AMQP channel is closed")

    def track(self, future: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """Fail ``future`` too when the link goes down."""
        return self._track(future)

    def on_closed(self, callback: Callable[[Link], None]) -> None:
        """Call ``callback(link)`` once the connection is gone for good."""
        self._closed.add_done_callback(lambda _: callback(self))

    def abort(self) -> None:
        """Start closing the connection without waiting (failure and cancellation paths).

        A connection still opening is torn down at once, an open one closed with the broker;
        either way its socket is closed by a later loop callback (``close()`` waits for it).
        """
        connection = self._connection
        if connection is None:
            _resolve(self._closed, None)  # no connection, no socket: nothing will open now
            return
        if not (connection.is_closed or connection.is_closing):
            with contextlib.suppress(Exception):  # closing a connection that never opened
                connection.close()

    async def close(self, timeout: float = 10.0) -> None:
        """Close the connection and wait until its socket is closed, in any state.

        Unsettled deliveries go back to their queue. A connection still opening (or being
        opened by another task, which then fails) is torn down; if the broker does not
        confirm the close within ``timeout`` seconds, the TCP connection is dropped.
        """
        self.abort()
        if await _settled(self._closed, timeout):
            return
        transport = getattr(self._connection, "_transport", None)  # pika has no public abort
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.abort()  # connection_lost follows: the close callback, the socket
        await _settled(self._closed, timeout)

    # ------------------------------------------------------------------ callbacks

    def _track(self, future: asyncio.Future[Any]) -> asyncio.Future[Any]:
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        if self.failure is not None:
            _fail(future, self.failure)
        return future

    async def _await(self, future: asyncio.Future[Any], timeout: float, what: str) -> Untyped:
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError as exc:
            self._lose(TransientBackendError(f"{what}: no answer from RabbitMQ in {timeout} s"))
            raise TransientBackendError(f"{what}: no answer from RabbitMQ in {timeout} s") from exc

    def _on_open_error(self, _connection: object, reason: BaseException) -> None:
        self._lose(_as_error(reason))
        _resolve(self._closed, None)

    def _on_channel_closed(self, _channel: object, reason: BaseException) -> None:
        self._lose(_as_error(reason))
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _on_connection_closed(self, _connection: object, reason: BaseException) -> None:
        self._lose(_as_error(reason))
        _resolve(self._closed, None)

    def _lose(self, error: BackendError) -> None:
        if self.failure is None:
            self.failure = error
        was_open = self.is_open
        self.is_open = False
        for future in list(self._pending):
            _fail(future, self.failure)
        if was_open:
            self._on_lost()


async def _settled(future: asyncio.Future[None], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``future`` (not cancelling it); whether it is done."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(future), timeout)
    return future.done()


def _resolve(future: asyncio.Future[Any], value: object) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
        future.exception()  # consumed here: an unawaited failure is not an error


def _as_error(reason: object) -> BackendError:
    if isinstance(reason, BackendError):
        return reason
    if isinstance(reason, BaseException):
        error = classify_amqp(reason)(f"RabbitMQ: {type(reason).__name__}: {reason}")
        error.__cause__ = reason
        return error
    return TransientBackendError(f"RabbitMQ: {reason}")
