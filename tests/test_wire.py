"""The lean HTTP/1.1 client against a scripted server on loopback: framing, keep-alive,
failures, timeouts and the connection limit."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import pytest

from extractor._wire import (
    BodyTruncated,
    ConnectFailed,
    ConnectionLost,
    ConnectionPool,
    ProtocolViolation,
)

# What the server does for one request: bytes to send (then wait for the next request on
# the same connection), or a coroutine function that takes the writer and does anything.
Action = bytes | Callable[[asyncio.StreamWriter], Awaitable[None]]


def ok(body: bytes = b'{"ok":true}', *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()


async def reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def then_close(data: bytes) -> Callable[[asyncio.StreamWriter], Awaitable[None]]:
    async def action(writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()
        writer.close()

    return action


def trickle(data: bytes, step: int = 3) -> Callable[[asyncio.StreamWriter], Awaitable[None]]:
    """Send ``data`` a few bytes at a time, so every parser state meets a split."""

    async def action(writer: asyncio.StreamWriter) -> None:
        for i in range(0, len(data), step):
            writer.write(data[i : i + step])
            await writer.drain()
            await asyncio.sleep(0.001)

    return action


class Server:
    """Answers each request (on any connection) with the next scripted action."""

    def __init__(self, actions: list[Action]) -> None:
        self.actions = list(actions)
        self.requests: list[bytes] = []
        self.bodies: list[bytes] = []
        self.connections = 0
        self.open_now = 0
        self.peak_open = 0
        self.hold = asyncio.Event()  # for "hang" actions
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.peak_open = max(self.peak_open, self.open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests.append(head)
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                self.bodies.append(await reader.readexactly(length))
                action = self.actions.pop(0) if self.actions else ok()
                if isinstance(action, bytes):
                    writer.write(action)
                    await writer.drain()
                else:
                    await action(writer)
                    if writer.is_closing():
                        return
        finally:
            self.open_now -= 1
            with suppress(Exception):
                writer.close()


@asynccontextmanager
async def serve(*actions: Action) -> AsyncIterator[Server]:
    server = Server(list(actions))
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        server.hold.set()
        listener.close()
        with suppress(Exception):
            await asyncio.wait_for(listener.wait_closed(), 1)


def pool_for(server: Server, **kwargs: float) -> ConnectionPool:
    options = {"limit": 4, "connect_timeout": 2.0, "read_timeout": 2.0, **kwargs}
    return ConnectionPool(
        server.url,
        limit=int(options["limit"]),
        connect_timeout=options["connect_timeout"],
        read_timeout=options["read_timeout"],
    )


HEADERS = {"Authorization": "Bearer tok", "US-API-Key": "key", "Accept": "application/json"}


async def test_keep_alive_reuses_one_connection_and_sends_every_header() -> None:
    async with serve(ok(b"one"), ok(b"two")) as server, pool_for(server) as pool:
        block = pool.header_block(HEADERS)
        first = await pool.get("/p/1", block)
        second = await pool.get("/p/2?x=1", block)
    assert (first.status, first.body, second.body) == (200, b"one", b"two")
    assert server.connections == 1
    assert pool.opened == 1
    request = server.requests[1].decode()
    assert request.startswith("GET /p/2?x=1 HTTP/1.1\r\n")
    port = server.url.rsplit(":", 1)[1]
    for line in (f"Host: 127.0.0.1:{port}", "Authorization: Bearer tok", "US-API-Key: key"):
        assert f"\r\n{line}\r\n" in request


async def test_form_post_then_get_on_the_same_connection() -> None:
    async with serve(ok(b"token"), ok(b"profile")) as server, pool_for(server) as pool:
        block = pool.header_block({"Accept": "application/json"})
        posted = await pool.post_form("/auth/token", block, b"grant_type=x&client_id=y")
        got = await pool.get("/p/1", block)
    assert (posted.status, posted.body, got.body) == (200, b"token", b"profile")
    assert server.connections == 1
    head = server.requests[0].decode()
    assert head.startswith("POST /auth/token HTTP/1.1\r\n")
    assert "\r\nContent-Type: application/x-www-form-urlencoded\r\n" in head
    assert "\r\nContent-Length: 24\r\n" in head
    assert "\r\nAccept: application/json\r\n" in head
    assert server.bodies == [b"grant_type=x&client_id=y", b""]


async def test_chunked_body_split_anywhere() -> None:
    body = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n"
    )
    async with serve(trickle(body), ok(b"next")) as server, pool_for(server) as pool:
        block = pool.header_block(HEADERS)
        response = await pool.get("/", block)
        again = await pool.get("/", block)
    assert response.body == b"Wikipedia in\r\n\r\nchunks."
    assert again.body == b"next"
    assert server.connections == 1


async def test_content_length_body_split_anywhere() -> None:
    async with serve(trickle(ok(b"x" * 50, "Retry-After: 7"))) as server, pool_for(server) as pool:
        response = await pool.get("/", pool.header_block(HEADERS))
    assert response == (200, b"x" * 50, "7")


async def test_body_until_close_and_interim_responses() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    until_close = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[1,2]"
    async with serve(then_close(interim + until_close), ok()) as server, pool_for(server) as pool:
        block = pool.header_block(HEADERS)
        response = await pool.get("/", block)
        await pool.get("/", block)
    assert response.body == b"[1,2]"
    assert server.connections == 2  # a body that ends with the connection ends its use


async def test_connection_close_and_no_body_statuses() -> None:
    no_content = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    async with serve(no_content, ok()) as server, pool_for(server) as pool:
        block = pool.header_block(HEADERS)
        response = await pool.get("/", block)
        await pool.get("/", block)
    assert (response.status, response.body) == (204, b"")
    assert server.connections == 2


async def test_gzip_body_is_decoded() -> None:
    packed = gzip.compress(b'{"a":1}')
    async with serve(ok(packed, "Content-Encoding: gzip")) as server, pool_for(server) as pool:
        response = await pool.get("/", pool.header_block(HEADERS))
    assert response.body == b'{"a":1}'


async def test_truncated_body() -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
    async with serve(then_close(cut)) as server, pool_for(server) as pool:
        with pytest.raises(BodyTruncated):
            await pool.get("/", pool.header_block(HEADERS))


async def test_reset_before_the_answer_on_a_new_connection() -> None:
    async with serve(reset) as server, pool_for(server) as pool:
        with pytest.raises(ConnectionLost):
            await pool.get("/", pool.header_block(HEADERS))


async def test_idle_connection_closed_by_the_server_is_replaced() -> None:
    # The server answers, then closes the kept-alive connection: the next GET finds it
    # gone (or sends into it as it closes) and goes out once more on a fresh connection.
    async with serve(then_close(ok(b"a")), ok(b"b")) as server, pool_for(server) as pool:
        block = pool.header_block(HEADERS)
        assert (await pool.get("/", block)).body == b"a"
        await asyncio.sleep(0.05)
        assert (await pool.get("/", block)).body == b"b"
    assert server.connections == 2


async def test_reset_of_a_reused_connection_is_sent_again_once() -> None:
    async with serve(ok(b"a"), reset, reset) as server, pool_for(server) as pool:
        block = pool.header_block(HEADERS)
        await pool.get("/", block)
        with pytest.raises(ConnectionLost):
            await pool.get("/", block)  # reused: reset, resent fresh: reset again
    assert len(server.requests) == 3


async def test_not_http_is_a_protocol_violation() -> None:
    async with serve(b"SSH-2.0-OpenSSH\r\n\r\n") as server, pool_for(server) as pool:
        with pytest.raises(ProtocolViolation):
            await pool.get("/", pool.header_block(HEADERS))


async def test_a_banner_that_never_ends_a_head_is_refused_at_once() -> None:
    # No blank line ever comes: the client must not wait out its 30 s read timeout.
    async with serve(b"SSH-2.0-OpenSSH\r\n") as server, pool_for(server, read_timeout=30) as pool:
        with pytest.raises(ProtocolViolation):
            await asyncio.wait_for(pool.get("/", pool.header_block(HEADERS)), 5)


async def test_read_timeout() -> None:
    async def hang(writer: asyncio.StreamWriter) -> None:
        await server.hold.wait()

    async with serve(hang, ok()) as server, pool_for(server, read_timeout=0.2) as pool:
        block = pool.header_block(HEADERS)
        with pytest.raises(TimeoutError):
            await pool.get("/", block)
        assert (await pool.get("/", block)).status == 200  # on a new connection
    assert server.connections == 2


async def test_cannot_connect() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = ConnectionPool(
        f"http://127.0.0.1:{port}", limit=2, connect_timeout=2.0, read_timeout=2.0
    )
    async with pool:
        with pytest.raises(ConnectFailed, match="cannot connect"):
            await pool.get("/", pool.header_block(HEADERS))
        assert pool.connections == 0


async def test_never_more_connections_than_the_limit() -> None:
    async def slow(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.02)
        writer.write(ok())
        await writer.drain()

    async with serve(*[slow] * 12) as server, pool_for(server, limit=3) as pool:
        block = pool.header_block(HEADERS)
        responses = await asyncio.gather(*(pool.get(f"/{i}", block) for i in range(12)))
    assert [r.status for r in responses] == [200] * 12
    assert server.peak_open <= 3
    assert pool.opened == 3


async def test_a_cancelled_request_closes_its_connection() -> None:
    async def hang(writer: asyncio.StreamWriter) -> None:
        await server.hold.wait()

    async with serve(hang, ok(b"after")) as server, pool_for(server, limit=1) as pool:
        block = pool.header_block(HEADERS)
        task = asyncio.create_task(pool.get("/", block))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the limit is one: the answer after a cancel needs the slot back
        assert (await pool.get("/", block)).body == b"after"


async def test_header_values_cannot_inject_lines() -> None:
    pool = ConnectionPool("http://127.0.0.1:1", limit=1, connect_timeout=1, read_timeout=1)
    with pytest.raises(ValueError, match="cannot be sent"):
        pool.header_block({"Authorization": "Bearer x\r\nEvil: 1"})


async def test_https_host_header_and_default_port() -> None:
    pool = ConnectionPool(
        "https://service.example.com/base", limit=1, connect_timeout=1, read_timeout=1
    )
    block = pool.header_block({})
    assert block.startswith(b"Host: service.example.com\r\n")
    assert (pool.host, pool.port) == ("service.example.com", 443)


@pytest.mark.parametrize(
    "scenario",
    [
        test_keep_alive_reuses_one_connection_and_sends_every_header,
        test_chunked_body_split_anywhere,
        test_truncated_body,
        test_reset_of_a_reused_connection_is_sent_again_once,
        test_read_timeout,
        test_never_more_connections_than_the_limit,
        test_a_cancelled_request_closes_its_connection,
    ],
    ids=lambda f: f.__name__.removeprefix("test_"),
)
def test_under_uvloop(scenario: Callable[[], Awaitable[None]]) -> None:
    uvloop = pytest.importorskip("uvloop")  # the CLI's loop: its transports differ
    uvloop.run(scenario())


async def test_a_host_name_is_resolved_once_for_many_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def slow(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.02)
        writer.write(ok())
        await writer.drain()

    loop = asyncio.get_running_loop()
    lookups: list[str] = []
    real = loop.getaddrinfo

    async def counting(host: str, *args: object, **kwargs: object) -> object:
        lookups.append(host)
        # localhost may also resolve to ::1, where nothing listens: that address is skipped
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
            *await real("127.0.0.1", *args, **kwargs),  # type: ignore[arg-type]
        ]

    monkeypatch.setattr(loop, "getaddrinfo", counting)
    async with serve(*[slow] * 8) as server:
        port = int(server.url.rsplit(":", 1)[1])
        pool = ConnectionPool(
            f"http://localhost:{port}", limit=8, connect_timeout=2.0, read_timeout=2.0
        )
        async with pool:
            block = pool.header_block(HEADERS)
            responses = await asyncio.gather(*(pool.get("/", block) for _ in range(8)))
    assert [r.status for r in responses] == [200] * 8
    assert pool.opened == 8
    assert lookups == ["localhost"]
    assert b"Host: localhost:" in server.requests[0]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl tool)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_keep_alive_and_certificate_check(tls_files: tuple[str, str]) -> None:
    cert, key = tls_files
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server = Server([ok(b"one"), ok(b"two")])
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=server_context)
    port = listener.sockets[0].getsockname()[1]
    try:
        trusting = ssl.create_default_context(cafile=cert)
        pool = ConnectionPool(
            f"https://127.0.0.1:{port}",
            limit=2,
            connect_timeout=2.0,
            read_timeout=2.0,
            ssl_context=trusting,
        )
        async with pool:
            block = pool.header_block(HEADERS)
            assert (await pool.get("/", block)).body == b"one"
            assert (await pool.get("/", block)).body == b"two"
        assert server.connections == 1
        # the system's trust store does not know this certificate: no connection
        strict = ConnectionPool(
            f"https://127.0.0.1:{port}", limit=1, connect_timeout=2.0, read_timeout=2.0
        )
        async with strict:
            with pytest.raises(ConnectFailed, match="SSLCertVerificationError"):
                await strict.get("/", strict.header_block(HEADERS))
    finally:
        listener.close()
