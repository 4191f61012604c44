"""The render's HTTP transport: httpx's client over an asyncio protocol and h11.

httpx's default transport (httpcore on anyio) cost about 1.5 ms of the event loop's CPU per
request in a large render, most of it in layers a render does not need: anyio's cancel scopes
around every read and write, locks, and a pool that looks at each of its connections on every
request. With a hundred jobs in flight that made the event loop the bottleneck (bench/README.md,
"Scale"). This transport does what a render needs and only that: HTTP/1.1 over TCP or TLS, a
keep-alive pool per origin that hands out its most recently used idle connection, the timeouts
httpx passes with each request, and httpx's exception types.

What callers rely on (providers/http.py resends a submit only then): `ConnectError`,
`ConnectTimeout` and `PoolTimeout` are raised only before a single byte of the request was
written. Anything that goes wrong after is another `TransportError`, or a `TimeoutException`
that is not one of those two.

httpx ignores proxy variables for a client given its own transport, so a render whose
environment names a proxy does not use this one (render/run.py).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import h11
import httpx

READ_CHUNK = 64 * 1024
MAX_HEADERS = 100 * 1024  # bytes of a response's head; httpcore's limit too
KEEPALIVE = 5.0  # seconds an idle connection is kept (httpx's default): servers close earlier
_PORTS = {b"http": 80, b"https": 443}

Origin = tuple[bytes, bytes, int]


class AsyncioTransport(httpx.AsyncBaseTransport):
    """At most `connections` requests under way at once (a request holds its place until its
    body is read or closed); as many idle connections kept for reuse."""

    def __init__(self, connections: int, verify: ssl.SSLContext) -> None:
        self._tls = verify
        self._limit = connections
        self._slots: asyncio.Semaphore | None = None  # made in the loop that uses it
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        url = request.url
        origin = (url.raw_scheme, url.raw_host, url.port or _PORTS.get(url.raw_scheme, 80))
        await self._acquire(timeouts.get("pool"))
        connection: _Connection | None = None
        try:
            connection = self._reuse(origin) or await self._connect(origin, timeouts.get("connect"))
            head = await connection.exchange(request, timeouts)
        except BaseException:
            if connection is not None:
                connection.close()
            self._release()
            raise
        return httpx.Response(
            status_code=head.status_code,
            headers=head.headers.raw_items(),
            stream=_Body(self, origin, connection, timeouts.get("read")),
            extensions={
                "http_version": b"HTTP/" + head.http_version,
                "reason_phrase": head.reason,
            },
        )

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()
        self._idle_count = 0

    # -- places and connections -------------------------------------------------------------

    async def _acquire(self, timeout: float | None) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._limit)
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns at once
            return
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection in time") from None

    def _release(self) -> None:
        assert self._slots is not None
        self._slots.release()

    def _reuse(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if connection.usable(now):
                return connection
            connection.close()
        return None

    def _done(self, origin: Origin, connection: _Connection, reusable: bool) -> None:
        """A response's body was read to its end (`reusable`) or closed before it."""
        self._release()
        if reusable and self._idle_count < self._limit and connection.next_cycle():
            self._idle.setdefault(origin, []).append(connection)
            self._idle_count += 1
        else:
            connection.close()

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, raw_host, port = origin
        host = raw_host.decode("ascii")
        tls = self._tls if scheme == b"https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    _Connection, host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} in time") from None
        except (OSError, ssl.SSLError) as err:
            raise httpx.ConnectError(f"{host}:{port}: {err.strerror or err}") from None
        return connection


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time. What the server sends is kept here
    until h11 asks for it: an idle connection holding bytes (a "408" some servers send before
    closing one) or an end of stream is never used again."""

    def __init__(self) -> None:
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADERS)
        self._transport: asyncio.Transport | None = None
        self._received = bytearray()
        self._ended = False  # the server closed its side, or the connection was lost
        self._lost: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None  # a read or a write waiting
        self._paused = False  # our writes, by the transport's flow control
        self._reading_paused = False
        self._eof_fed = False  # h11 was told the stream ended
        self._idle_since = time.monotonic()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._received += data
        if len(self._received) > READ_CHUNK * 4 and self._transport is not None:
            self._transport.pause_reading()  # a download faster than the disk takes it
            self._reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._ended = True
        self._wake()
        return False  # close the transport: a half-closed HTTP/1.1 connection is no use

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended, self._lost = True, exc
        self._wake()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait(self, timeout: float | None) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        finally:
            self._waiter = None

    # -- HTTP --------------------------------------------------------------------------------

    def usable(self, now: float) -> bool:
        """Idle, recent, open, and silent since its last answer."""
        return (
            now - self._idle_since < KEEPALIVE
            and not self._ended
            and not self._received
            and self._h11.our_state is h11.IDLE
        )

    async def exchange(
        self, request: httpx.Request, timeouts: dict[str, float | None]
    ) -> h11.Response:
        """Send the request and read the head of its response."""
        await self._send(request, timeouts.get("write"))
        read = timeouts.get("read")
        while True:
            event = await self.next_event(read)
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):  # 1xx: wait for the answer
                raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__}")

    async def _send(self, request: httpx.Request, timeout: float | None) -> None:
        head = h11.Request(
            method=request.method, target=request.url.raw_path, headers=request.headers.raw
        )
        assert isinstance(request.stream, httpx.AsyncByteStream)
        try:
            out = self._h11.send(head) or b""
            async for chunk in request.stream:
                out += self._h11.send(h11.Data(data=chunk)) or b""
                if len(out) >= READ_CHUNK:  # an upload: sent as it is read
                    await self._write(out, timeout)
                    out = b""
            out += self._h11.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as err:
            raise httpx.LocalProtocolError(str(err)) from None
        await self._write(out, timeout)

    async def _write(self, data: bytes, timeout: float | None) -> None:
        if self._ended or self._transport is None or self._transport.is_closing():
            raise httpx.WriteError("the connection was closed")
        self._transport.write(data)
        try:
            while self._paused and not self._ended:
                await self._wait(timeout)
        except TimeoutError:
            raise httpx.WriteTimeout("the request could not be sent in time") from None
        if self._ended and self._lost is not None:
            raise httpx.WriteError(str(self._lost))

    async def next_event(self, timeout: float | None) -> Any:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as err:
                raise httpx.RemoteProtocolError(str(err)) from None
            if event is not h11.NEED_DATA:
                return event
            if not self._received and not self._ended:
                try:
                    await self._wait(timeout)
                except TimeoutError:
                    raise httpx.ReadTimeout("no answer in time") from None
                continue
            data, self._received = bytes(self._received), bytearray()
            if self._reading_paused and self._transport is not None:
                self._reading_paused = False
                self._transport.resume_reading()
            if not data:
                if self._lost is not None:
                    raise httpx.ReadError(str(self._lost))
                if self._eof_fed:
                    raise httpx.RemoteProtocolError("the server closed the connection")
                self._eof_fed = True
            self._h11.receive_data(data)  # b"": the end of the stream, which h11 judges

    def next_cycle(self) -> bool:
        """Ready the connection for its next request; False if it cannot take one."""
        if self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
            return False
        if self._h11.trailing_data[0] or self._received or self._ended:
            return False  # bytes past the answer, or closing: nothing to trust here
        self._h11.start_next_cycle()
        self._idle_since = time.monotonic()
        return True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class _Body(httpx.AsyncByteStream):
    """A response's body as it arrives; its place and connection go back once it is read to
    its end or closed."""

    def __init__(
        self, pool: AsyncioTransport, origin: Origin, connection: _Connection, read: float | None
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._connection: _Connection | None = connection
        self._read = read
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            raise httpx.StreamClosed()
        while True:
            event = await connection.next_event(self._read)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._complete = True
                return
            else:
                raise httpx.RemoteProtocolError(f"unexpected {type(event).__name__}")

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool._done(self._origin, connection, self._complete)
