"""A lean HTTP/1.1 client for the API's GETs: keep-alive connections over asyncio Protocols.

Why not aiohttp here: an export is one GET per employee, and aiohttp's request path
(request and response objects, header merging, stream readers, a timer per read) was most
of ukg-extract's CPU. Measured on the project's 2-core machine, 100,000 profiles at 5 ms:
0.20 ms of CPU per profile for the whole export with aiohttp, 0.095 ms with this client
(a bare aiohttp loop that parses nothing: about 0.17). This client sends pre-encoded
request bytes (the header block is built once per token) and parses only what the caller
needs: the status line, ``Content-Length`` or chunked framing, ``Connection``,
``Content-Encoding`` and ``Retry-After``. It knows
nothing of the API, of JSON or of rate control; :mod:`extractor._http` classifies what it
returns. The token endpoint's form POST (:meth:`ConnectionPool.post_form`) goes the same
way, so a run does not import aiohttp at all (110 ms of a 2.5-second export's start).

Connections: at most ``limit`` to the one origin, reused most-recently-idle first, so a
run uses as few as its concurrency needs. A caller that finds every connection busy and
the limit reached waits in a FIFO line for the next one freed. The host name is resolved
once every ``DNS_TTL`` seconds, not once per connection (slow start opens hundreds).

Failures, as exceptions under :class:`WireError` (plus the built-in ``TimeoutError``)::

    WireError
    ├── ConnectFailed       the connection could not be opened (refused, DNS, TLS)
    ├── ConnectionLost      closed or reset before the response head was complete
    ├── BodyTruncated       closed before the body was complete, or an undecodable body
    └── ProtocolViolation   the peer did not answer with HTTP/1.x
    TimeoutError            no connection within ``connect_timeout``, or no byte of the
                            response for ``read_timeout`` seconds

A request that meets a *reused* connection already closed by the server (it closed an
idle keep-alive connection as we sent) is sent once more on a fresh connection, as
aiohttp and browsers do for idempotent requests; only GETs and the token POST (which
has no effect but a new token) are sent here.

Not thread-safe: one pool per event loop (asyncio or uvloop).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import socket
import ssl
import zlib
from collections.abc import Mapping
from types import TracebackType
from typing import NamedTuple, Self, cast
from urllib.parse import urlsplit

__all__ = [
    "BodyTruncated",
    "ConnectFailed",
    "ConnectionLost",
    "ConnectionPool",
    "ProtocolViolation",
    "Response",
    "WireError",
]

#: Seconds a host's resolved addresses are reused (aiohttp's ttl_dns_cache was 300 too).
DNS_TTL = 300.0
#: A response head longer than this is not an API's answer.
MAX_HEAD_BYTES = 64 * 1024
#: Nor is a body longer than this (a profile is about 1 KB, a page of ids about 10 KB).
MAX_BODY_BYTES = 256 * 1024 * 1024

_CRLF = b"\r\n"
_HEAD_END = b"\r\n\r\n"
_NO_BODY_STATUSES = frozenset({204, 304})
# Body framing (RFC 9112 section 6.3).
_CHUNKED = -1
_UNTIL_CLOSE = -2


class WireError(Exception):
    """Root of the failures of a request on the wire."""


class ConnectFailed(WireError):
    """The connection could not be opened."""


class ConnectionLost(WireError):
    """The connection closed or was reset before the response head was complete."""


class BodyTruncated(WireError):
    """The connection closed before the body was complete, or the body could not be decoded."""


class ProtocolViolation(WireError):
    """The peer's answer is not HTTP/1.x."""


class _Stale(ConnectionLost):
    """A reused connection closed before any byte of the answer: safe to send again."""


class Response(NamedTuple):
    """What the API client needs of a response: ``retry_after`` is the raw header or None."""

    status: int
    body: bytes
    retry_after: str | None


def _header(head: bytes, lower: bytes, name: bytes) -> bytes | None:
    """The value of the first header ``name`` (lower case) in a response head, stripped."""
    at = lower.find(b"\r\n" + name + b":")
    if at < 0:
        return None
    start = at + len(name) + 3
    end = head.find(_CRLF, start)
    return head[start : end if end >= 0 else len(head)].strip()


def _decode(body: bytes, coding: bytes) -> bytes:
    """Undo a gzip or deflate content coding (aiohttp's ``auto_decompress`` did the same)."""
    try:
        if coding in (b"gzip", b"x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if coding == b"deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some servers send
    except zlib.error:
        raise BodyTruncated("response body cannot be decompressed") from None
    return body


class _Connection(asyncio.Protocol):
    """One keep-alive connection; serves one request at a time."""

    __slots__ = (
        "_body_left",
        "_buf",
        "_chunks",
        "_coding",
        "_framing",
        "_got_bytes",
        "_keep_alive",
        "_pool",
        "_retry_after",
        "_status",
        "closed",
        "last_activity",
        "reused",
        "transport",
        "waiter",
    )

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.last_activity = 0.0
        self.reused = False
        self.closed = False
        self._buf = bytearray()
        self._reset_response()

    def _reset_response(self) -> None:
        self._got_bytes = False
        self._status = 0  # 0 while the head is incomplete
        self._framing = 0
        self._body_left = 0
        self._chunks: list[bytes] = []
        self._keep_alive = True
        self._retry_after: str | None = None
        self._coding: bytes | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # Requests are single small writes: never hold one back waiting for an ACK.
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:
            self._abort()  # nothing was asked: a server talking out of turn
            return
        self.last_activity = self._pool.now()
        self._got_bytes = True
        buf = self._buf
        buf += data
        try:
            if self._status == 0 and not self._parse_head():
                return
            if len(buf) > MAX_BODY_BYTES:
                raise ProtocolViolation("response body too large")
            framing = self._framing
            if framing >= 0:
                if len(buf) < framing:
                    return
                body = bytes(buf[:framing]) if len(buf) > framing else bytes(buf)
                del buf[:framing]
                self._complete(body)
            elif framing == _CHUNKED:
                self._parse_chunks()
            # _UNTIL_CLOSE: the body ends with the connection (connection_lost)
        except WireError as exc:
            self._fail(exc)

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost settles the request

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool._forget(self)
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.waiter = None
            return
        if self._status and self._framing == _UNTIL_CLOSE and exc is None:
            body = bytes(self._buf)
            self._buf.clear()
            self._complete(body, keep_alive=False)
        elif self._status:
            self._fail(BodyTruncated("response body cut short"))
        elif self.reused and not self._got_bytes:
            self._fail(_Stale("connection closed by the server"))
        else:
            reason = type(exc).__name__ if exc is not None else "closed by the server"
            self._fail(ConnectionLost(f"connection lost before the response ({reason})"))

    # -- requests ------------------------------------------------------------------------

    def send(self, request: bytes) -> asyncio.Future[Response]:
        transport = self.transport
        waiter = self._pool.loop.create_future()
        if transport is None or self.closed or transport.is_closing():
            waiter.set_exception(_Stale("connection already closed"))
            return waiter
        self.waiter = waiter
        self.last_activity = self._pool.now()
        transport.write(request)
        return waiter

    def timed_out(self) -> None:
        self._fail(TimeoutError("no answer from the server within the read timeout"))

    def _abort(self) -> None:
        # Its slot in the pool frees in connection_lost, once the socket is really closed.
        self.closed = True
        self._pool._drop_idle(self)
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        self._abort()  # the connection's state is unknown: never reuse it
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _complete(self, body: bytes, *, keep_alive: bool | None = None) -> None:
        if self._coding is not None:
            try:
                body = _decode(body, self._coding)
            except WireError as exc:
                self._fail(exc)
                return
        waiter, self.waiter = self.waiter, None
        response = Response(self._status, body, self._retry_after)
        reusable = self._keep_alive if keep_alive is None else keep_alive
        self._reset_response()
        self.reused = True
        if reusable and not self._buf and not self.closed:
            self._pool._release(self)
        else:
            self._abort()  # leftover bytes would be a reply to nothing we asked
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    # -- parsing -------------------------------------------------------------------------

    def _parse_head(self) -> bool:
        """Parse a complete response head from the buffer; False while it is incomplete."""
        buf = self._buf
        while True:
            end = buf.find(_HEAD_END)
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise ProtocolViolation("response head too large")
                if len(buf) >= 7 and not buf.startswith(b"HTTP/1."):
                    # say so now, not after the read timeout (an SSH banner never ends a head)
                    raise ProtocolViolation("not an HTTP/1.x response")
                return False
            head = bytes(buf[:end])
            del buf[: end + 4]
            if not head.startswith(b"HTTP/1.") or len(head) < 12 or head[12:13] not in b" \r":
                raise ProtocolViolation("not an HTTP/1.x response")
            try:
                status = int(head[9:12])
            except ValueError:
                raise ProtocolViolation("bad status line") from None
            if 100 <= status < 200:
                if status == 101:
                    raise ProtocolViolation("unexpected protocol switch")
                continue  # an interim answer (100 Continue): the real one follows
            break
        lower = head.lower()
        connection = _header(lower, lower, b"connection")
        if head[7:8] == b"0":  # HTTP/1.0: keep-alive only when announced
            self._keep_alive = connection is not None and b"keep-alive" in connection
        else:
            self._keep_alive = connection is None or b"close" not in connection
        retry_after = _header(head, lower, b"retry-after")
        if retry_after is not None:
            self._retry_after = retry_after.decode("latin-1")
        coding = _header(lower, lower, b"content-encoding")
        if coding and coding != b"identity":
            self._coding = coding
        if status in _NO_BODY_STATUSES:
            self._framing = 0
        elif (encoding := _header(lower, lower, b"transfer-encoding")) is not None:
            if encoding.rsplit(b",", 1)[-1].strip() == b"chunked":
                self._framing = _CHUNKED
            else:
                self._framing = _UNTIL_CLOSE
                self._keep_alive = False
        elif (length := _header(head, lower, b"content-length")) is not None:
            try:
                framing = int(length)
            except ValueError:
                raise ProtocolViolation("bad Content-Length") from None
            if framing < 0:
                raise ProtocolViolation("bad Content-Length")
            self._framing = framing
        else:
            self._framing = _UNTIL_CLOSE
            self._keep_alive = False
        self._status = status
        return True

    def _parse_chunks(self) -> None:
        buf = self._buf
        while True:
            if self._body_left > 0:  # inside a chunk's data (and its CRLF)
                if len(buf) < self._body_left:
                    return
                self._chunks.append(bytes(buf[: self._body_left - 2]))
                if buf[self._body_left - 2 : self._body_left] != _CRLF:
                    raise ProtocolViolation("bad chunk framing")
                del buf[: self._body_left]
                self._body_left = 0
            elif self._body_left == 0:  # at a chunk-size line
                end = buf.find(_CRLF)
                if end < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        raise ProtocolViolation("bad chunk size line")
                    return
                size_text = bytes(buf[:end]).split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise ProtocolViolation("bad chunk size") from None
                del buf[: end + 2]
                if size == 0:
                    self._body_left = -1
                else:
                    if sum(map(len, self._chunks)) + size > MAX_BODY_BYTES:
                        raise ProtocolViolation("response body too large")
                    self._body_left = size + 2
            else:  # after the last chunk: trailer lines up to an empty one
                end = buf.find(_CRLF)
                if end < 0:
                    return
                del buf[: end + 2]
                if end == 0:
                    body = b"".join(self._chunks)
                    self._complete(body)
                    return


class ConnectionPool:
    """Keep-alive connections to one origin (scheme, host, port of ``base_url``).

    Use as ``async with ConnectionPool(url, limit=...) as pool``; ``await pool.get(target,
    pool.header_block(headers))`` returns a :class:`Response` or raises a :class:`WireError`
    or ``TimeoutError``. ``ssl_context`` defaults to the system's trust store for https.
    """

    def __init__(
        self,
        base_url: str,
        *,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = "ukg-extract",
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        if limit < 1 or not (connect_timeout > 0 and read_timeout > 0):
            raise ValueError("limit must be >= 1 and the timeouts positive")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = host if default_port else f"{host}:{self.port}"
        self._user_agent = user_agent
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[_Connection] = []  # a stack: the most recently used first
        self._all: set[_Connection] = set()
        self._opening = 0
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        #: Connections opened over the pool's life (for tests and statistics).
        self.opened = 0
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            self._literal = False
        else:
            self._literal = True
        self._addresses: list[str] | None = None
        self._resolved_until = 0.0
        self._resolving: asyncio.Future[list[str]] | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def now(self) -> float:
        return self.loop.time()

    @property
    def connections(self) -> int:
        """Connections open or being opened now."""
        return len(self._all) + self._opening

    def header_block(self, headers: Mapping[str, str]) -> bytes:
        """The header lines of a GET as sent (Host and defaults first), ending the head.

        Build it once and pass it to every :meth:`get` that sends the same headers.
        """
        lines = [
            f"Host: {self._host_header}",
            f"User-Agent: {self._user_agent}",
            "Accept-Encoding: gzip, deflate",
        ]
        for name, value in headers.items():
            if not name or any(c in name for c in ":\r\n") or any(c in value for c in "\r\n"):
                raise ValueError(f"header {name!r} cannot be sent")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def get(self, target: str, header_block: bytes) -> Response:
        """GET ``target`` (an encoded path and query) with ``header_block``."""
        return await self._send(b"GET " + target.encode("ascii") + b" HTTP/1.1\r\n" + header_block)

    async def post_form(self, target: str, header_block: bytes, form: bytes) -> Response:
        """POST an urlencoded ``form`` to ``target``: the token endpoint's one request.

        Sent once more on a fresh connection if a reused one turns out closed, as a GET
        is: a client-credentials grant has no effect but a new token, so it is safe.
        """
        head = header_block[:-2]  # the block ends with the blank line; the body's headers go first
        return await self._send(
            b"POST "
            + target.encode("ascii")
            + b" HTTP/1.1\r\n"
            + head
            + b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: "
            + str(len(form)).encode("ascii")
            + b"\r\n\r\n"
            + form
        )

    async def _send(self, request: bytes) -> Response:
        fresh = False
        while True:
            if self._idle and not fresh:
                conn = self._idle.pop()
            else:
                conn = await self._acquire(fresh=fresh)
            waiter = conn.send(request)
            try:
                return await waiter
            except _Stale:
                if fresh:
                    raise ConnectionLost("connection closed by the server") from None
                fresh = True  # the server closed an idle connection as we sent: once more
            except asyncio.CancelledError:
                if conn.waiter is waiter:  # else it answered already and serves others now
                    conn._fail(ConnectionLost("request cancelled"))
                raise

    async def close(self) -> None:
        """Close every connection; requests still waiting fail with ConnectionLost."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionLost("connection pool closed"))
        self._idle.clear()
        for conn in list(self._all):
            conn._fail(ConnectionLost("connection pool closed"))
        # Aborted transports report connection_lost on the loop's next iterations: let them
        # run, so that no socket outlives the pool.
        for _ in range(10):
            if not self._all:
                break
            await asyncio.sleep(0)

    # -- internals -----------------------------------------------------------------------

    async def _acquire(self, *, fresh: bool) -> _Connection:
        """An idle connection, a new one, or the next one freed once the limit is reached.

        ``fresh``: a newly opened connection only (after a stale one).
        """
        while True:
            if self._closed:
                raise ConnectionLost("connection pool closed")
            if not fresh and self._idle:
                return self._idle.pop()
            if self.connections < self.limit:
                self._opening += 1
                return await self._connect()
            if fresh and self._idle:
                self._idle[0]._abort()  # the least recently used: its slot frees once closed
            waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    handed = waiter.result()
                    if handed is not None:
                        self._release(handed)
                    else:
                        self._opening -= 1  # give back the slot reserved for us
                        self._wake()
                raise
            if handed is None:  # _wake reserved a slot for us
                return await self._connect()
            if not fresh:
                return handed
            handed._abort()

    async def _connect(self) -> _Connection:
        """Open a connection in a slot already counted in ``_opening``."""
        try:
            async with asyncio.timeout(self.connect_timeout):
                conn = await self._open_any()
        except BaseException as exc:
            self._opening -= 1
            self._wake()
            if isinstance(exc, TimeoutError):
                raise TimeoutError(f"no connection to {self.host}:{self.port} in time") from None
            if isinstance(exc, OSError):
                raise ConnectFailed(
                    f"cannot connect to {self.host}:{self.port} ({type(exc).__name__})"
                ) from None
            raise
        self._opening -= 1
        self.opened += 1
        if conn.closed or self._closed:  # closed before we could use it
            conn._abort()
            self._wake()
            raise ConnectionLost("connection closed as soon as it opened")
        self._all.add(conn)
        if self._sweeper is None:
            self._arm_sweeper()
        return conn

    async def _open_any(self) -> _Connection:
        """Connect to the first address of the host that accepts, preferring the last good one."""
        addresses = await self._resolve()
        error: OSError | None = None
        for address in addresses:
            try:
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self),
                    address,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None,
                )
            except OSError as exc:
                error = exc
                continue
            if address != addresses[0]:
                addresses.remove(address)
                addresses.insert(0, address)
            return conn
        self._addresses = None  # the host may have moved: resolve again next time
        raise error or OSError("no address")

    async def _resolve(self) -> list[str]:
        """The host's addresses, resolved once per DNS_TTL (single flight), not per connection."""
        if self._literal:
            return [self.host]
        if self._addresses is not None and self.now() < self._resolved_until:
            return self._addresses
        if self._resolving is None:
            self._resolving = self.loop.create_future()
            resolving = self._resolving
            try:
                infos = await self.loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
                addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
                if not addresses:
                    raise socket.gaierror(f"no address for {self.host}")
            except BaseException as exc:
                # Waiters get an OSError (a failed connect), never our own cancellation.
                failure = exc if isinstance(exc, OSError) else OSError(f"resolving {self.host}")
                resolving.set_exception(failure)
                resolving.exception()  # retrieved here; waiters re-raise it
                raise
            finally:
                self._resolving = None
            self._addresses = addresses
            self._resolved_until = self.now() + DNS_TTL
            resolving.set_result(addresses)
            return addresses
        return await asyncio.shield(self._resolving)

    def _release(self, conn: _Connection) -> None:
        """A connection finished a response and may serve another."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if self._closed:
            conn._abort()
        else:
            self._idle.append(conn)

    def _drop_idle(self, conn: _Connection) -> None:
        if conn in self._idle:
            self._idle.remove(conn)

    def _forget(self, conn: _Connection) -> None:
        """A connection closed: its slot is free for a waiter."""
        self._all.discard(conn)
        self._drop_idle(conn)
        self._wake()

    def _wake(self) -> None:
        """Hand free slots to waiters: each opens a connection of its own."""
        while self._waiters and self.connections < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._opening += 1
                waiter.set_result(None)

    def _arm_sweeper(self) -> None:
        # One timer for the pool instead of one per request: a request times out after
        # read_timeout without a byte, detected within a quarter of that (at most 1 s).
        period = min(1.0, self.read_timeout / 4)
        self._sweeper = self.loop.call_later(period, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        if self._closed:
            return
        deadline = self.now() - self.read_timeout
        for conn in list(self._all):
            if conn.waiter is not None and conn.last_activity < deadline:
                conn.timed_out()
        if self._all:
            self._arm_sweeper()
