"""ApiClient over the lean HTTP client: every answer classified as before, retries, 401
refresh, and the rate controller told how each request ended."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from extractor._config import DEFAULT_DIALECT, RetryPolicy, Timeouts
from extractor._errors import (
    AuthError,
    BadResponseError,
    ConnectionLostError,
    ForbiddenError,
    NotFoundError,
    RequestError,
    ServerError,
    ThrottledError,
    TimeoutError_,
)
from extractor._http import ApiClient, open_pool
from extractor._rate import RateController
from extractor._stats import RequestStats
from tests.conftest import CREDENTIALS
from tests.test_wire import Action, Server, reset, serve, then_close


class FakeTokens:
    """Hands out tok-1, then tok-2 after a refresh."""

    def __init__(self) -> None:
        self.token = "tok-1"
        self.refreshes = 0

    async def get(self) -> str:
        return self.token

    def still_fresh(self, token: str) -> bool:
        return token == self.token

    async def refresh(self, *, stale: str) -> str:
        if stale == self.token:
            self.refreshes += 1
            self.token = f"tok-{self.refreshes + 1}"
        return self.token


def answer(status: int, body: bytes = b"{}", *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@asynccontextmanager
async def client_for(
    *actions: Action, attempts: int = 1, path: str = "", read: float = 2.0
) -> AsyncIterator[tuple[ApiClient, Server, RateController, FakeTokens]]:
    async with serve(*actions) as server:
        controller = RateController()
        tokens = FakeTokens()
        timeouts = Timeouts(connect=2.0, read=read)
        async with open_pool(server.url, timeouts, limit=4) as pool:
            sleeps: list[float] = []

            async def no_sleep(seconds: float) -> None:
                sleeps.append(seconds)

            client = ApiClient(
                pool=pool,
                base_url=server.url + path,
                credentials=CREDENTIALS,
                dialect=DEFAULT_DIALECT,
                tokens=tokens,  # type: ignore[arg-type]
                controller=controller,
                retry=RetryPolicy(max_attempts=attempts, base=0.01, cap=0.01),
                stats=RequestStats(),
                sleep=no_sleep,
            )
            yield client, server, controller, tokens
        assert controller.in_flight == 0, "every permit is released"


async def test_json_and_both_credentials() -> None:
    async with client_for(answer(200, b'{"employeeId":"E1"}')) as (client, server, _, _):
        assert await client.get_profile("E1") == {"employeeId": "E1"}
        assert client.stats.by_status == {"200": 1}
    request = server.requests[0].decode()
    assert request.startswith("GET /personnel/v1/employees/E1 HTTP/1.1\r\n")
    assert "\r\nAuthorization: Bearer tok-1\r\n" in request
    assert f"\r\nUS-API-Key: {CREDENTIALS.api_key}\r\n" in request


async def test_paths_are_quoted_and_params_encoded_under_the_base_path() -> None:
    async with client_for(answer(200), answer(200), path="/api/") as (client, server, _, _):
        await client.get_profile("a/b c")
        await client.get_json(
            "/personnel/v1/employee-changes", {"startDate": "2024-01-01", "q": "x y"}
        )
    assert server.requests[0].startswith(b"GET /api/personnel/v1/employees/a%2Fb%20c HTTP/1.1")
    assert server.requests[1].startswith(
        b"GET /api/personnel/v1/employee-changes?startDate=2024-01-01&q=x%20y HTTP/1.1"
    )


@pytest.mark.parametrize(
    ("response", "error", "status_key"),
    [
        (answer(429), ThrottledError, "429"),
        (answer(503, b"{}", "Retry-After: 3"), ThrottledError, "503"),
        (answer(503), ServerError, "503"),
        (answer(502, b"<html>bad gateway</html>"), ServerError, "502"),
        (answer(404), NotFoundError, "404"),
        (answer(403, b'{"message":"scope"}'), ForbiddenError, "403"),
        (answer(400, b'{"message":"per-page at most 200"}'), RequestError, "400"),
        (answer(200, b'{"employeeId": "E'), BadResponseError, "bad_json"),
        (
            then_close(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"),
            ConnectionLostError,
            "truncated",
        ),
    ],
    ids=["429", "503-retry-after", "503", "502", "404", "403", "400", "bad-json", "truncated"],
)
async def test_classification(response: bytes, error: type[Exception], status_key: str) -> None:
    async with client_for(response) as (client, _, _, _):
        with pytest.raises(error) as info:
            await client.get_profile("E1")
        assert client.stats.by_status[status_key] == 1
    assert "employee E1" in str(info.value)
    if error is RequestError:
        assert "per-page at most 200" in str(info.value)


async def test_retry_after_holds_the_controller_and_sets_the_pause() -> None:
    async with client_for(answer(429, b"{}", "Retry-After: 2")) as (client, _, controller, _):
        with pytest.raises(ThrottledError) as info:
            await client.get_profile("E1")
        assert info.value.retry_after == 2.0
        state = controller.snapshot()
        assert (state["throttles"], state["holds"]) == (1, 1)
        assert client.stats.throttled == 1


async def test_transient_failures_are_retried() -> None:
    async with client_for(answer(502), answer(429), answer(200, b"[]"), attempts=3) as (
        client,
        _,
        _,
        _,
    ):
        assert await client.get_json("/x") == []
        assert client.stats.retries == 2
        assert client.stats.requests == 3


async def test_401_refreshes_the_token_once() -> None:
    async with client_for(answer(401), answer(200, b"{}")) as (client, server, _, tokens):
        assert await client.get_json("/x") == {}
        assert tokens.refreshes == 1
    assert b"Bearer tok-2" in server.requests[1]


async def test_401_after_a_refresh_names_both_credentials() -> None:
    async with client_for(answer(401), answer(401)) as (client, _, _, tokens):
        with pytest.raises(AuthError) as info:
            await client.get_json("/x")
        assert tokens.refreshes == 1
    message = str(info.value)
    assert "UKG_API_KEY" in message
    assert "bearer" in message.lower()
    assert CREDENTIALS.api_key not in message


async def test_timeout_is_transient() -> None:
    async def hang(writer: Any) -> None:
        await server.hold.wait()

    async with client_for(hang, read=0.2) as (client, server, _, _):
        with pytest.raises(TimeoutError_):
            await client.get_profile("E1")
        assert client.stats.by_status["timeout"] == 1


async def test_reset_is_transient_and_the_next_call_reconnects() -> None:
    async with client_for(reset) as (client, server, _, _):
        with pytest.raises(ConnectionLostError, match="connection failed"):
            await client.get_profile("E1")
        assert client.stats.by_status["connection"] == 1
        server.actions.append(answer(200))
        assert await client.get_profile("E1") == {}
