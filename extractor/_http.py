"""The HTTP client: both credentials on every call, errors classified, transient ones
retried, every call paced by the rate controller.

The API's GETs (profiles, id pages, the change feed) go over :mod:`extractor._wire`, a
lean keep-alive HTTP/1.1 client: aiohttp's request path cost more CPU per profile than the
rest of the pipeline together. The same connections serve the token endpoint's POST
(:mod:`extractor._auth`). The client knows nothing about Parquet; it returns parsed JSON or
raises an :mod:`extractor._errors` exception.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson

from . import __version__
from ._auth import TokenProvider
from ._backoff import backoff_delay, parse_retry_after
from ._config import ApiDialect, Credentials, RetryPolicy, Timeouts
from ._errors import (
    AuthError,
    BadResponseError,
    ConnectionLostError,
    ExtractError,
    ForbiddenError,
    NotFoundError,
    RequestError,
    ServerError,
    ThrottledError,
    TimeoutError_,
    TransientError,
)
from ._rate import Outcome, RateController
from ._stats import RequestStats
from ._wire import BodyTruncated, ConnectionPool, WireError

__all__ = ["ApiClient", "classify", "open_pool"]


def open_pool(base_url: str, timeouts: Timeouts, *, limit: int) -> ConnectionPool:
    """The run's connections for API GETs (``async with``): at most ``limit``, kept alive.

    ``limit`` is the rate controller's concurrency ceiling, so a request the controller
    lets go never waits for a connection.
    """
    return ConnectionPool(
        base_url,
        limit=limit,
        connect_timeout=timeouts.connect,
        read_timeout=timeouts.read,
        user_agent=f"ukg-extract/{__version__}",
    )


def _message(body: bytes) -> str:
    """A short server message from an error body, for error text (never echoes headers)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:200].decode("utf-8", "replace").strip()
        return text
    if isinstance(data, dict):
        for key in ("message", "error_description", "error", "detail"):
            if isinstance(data.get(key), str):
                return str(data[key])[:300]
    return ""


def classify(status: int, body: bytes, retry_after: str | None, what: str) -> ExtractError:
    """Map a non-2xx response to the error tree (401 is handled by the caller).

    429 is throttling. A 503 is throttling only when it says when to come back
    (Retry-After); a bare 503 is a server error, retried but not a rate signal: in
    measurements a few random 503s were enough to pin the rate controller at its floor.
    """
    msg = _message(body)
    suffix = f": {msg}" if msg else ""
    if status == 429 or (status == 503 and retry_after is not None):
        return ThrottledError(
            f"{what}: throttled (HTTP {status})",
            status=status,
            retry_after=parse_retry_after(retry_after),
        )
    if status >= 500:
        return ServerError(f"{what}: server error HTTP {status}{suffix}", status=status)
    if status == 403:
        return ForbiddenError(
            f"{what}: forbidden (HTTP 403){suffix}; the service account needs the "
            "scope for this endpoint (people:read for employees, employment:read for "
            "employment details)",
            status=403,
        )
    if status == 404:
        return NotFoundError(f"{what}: not found (HTTP 404)", status=404)
    return RequestError(f"{what}: HTTP {status}{suffix}", status=status)


def auth_error(what: str) -> AuthError:
    """A 401 that a fresh token did not cure; names both credentials, never their values."""
    return AuthError(
        f"{what}: HTTP 401 Unauthorized after refreshing the token (a fresh bearer token and "
        "the US-API-Key header were both sent). UKG Pro needs "
        "both credentials on every call and does not say which one it rejected: check that "
        "UKG_API_KEY is the tenant's API key for this host, and that the service account of "
        "UKG_CLIENT_ID is active and allowed to call this API.",
        status=401,
    )


class ApiClient:
    """GET JSON from the tenant with pacing, classification and retries.

    Args:
        pool: the run's connections (see :func:`open_pool`).
        tokens: provides bearer tokens; refreshed once on a 401.
        controller: paces every request (one per service account).
        sleep, rand: injectable for tests.
    """

    def __init__(
        self,
        *,
        pool: ConnectionPool,
        base_url: str,
        credentials: Credentials,
        dialect: ApiDialect,
        tokens: TokenProvider,
        controller: RateController,
        retry: RetryPolicy,
        stats: RequestStats,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._pool = pool
        self._base_path = urlsplit(base_url).path.rstrip("/")
        self._dialect = dialect
        self._api_key = credentials.api_key
        self._tokens = tokens
        self._controller = controller
        self._retry = retry
        self.stats = stats
        self._sleep = sleep
        self._rand = rand
        self._headers = b""
        self._headers_token = ""
        # The profile path's parts around the id: one concatenation per request.
        before, _, after = dialect.employee_path.partition("{employee_id}")
        self._employee_prefix = self._base_path + before
        self._employee_suffix = after

    def _headers_for(self, token: str) -> bytes:
        if token is not self._headers_token:
            self._headers = self._pool.header_block(
                {
                    "Authorization": f"Bearer {token}",
                    self._dialect.api_key_header: self._api_key,
                    "Accept": "application/json",
                }
            )
            self._headers_token = token
        return self._headers

    def employee_path(self, employee_id: str) -> str:
        return self._dialect.employee_path.format(employee_id=quote(employee_id, safe=""))

    def employment_details_path(self, employee_id: str) -> str:
        return self._dialect.employment_details_path.format(employee_id=quote(employee_id, safe=""))

    async def get_profile(self, employee_id: str) -> Any:
        """The employee's profile JSON (``get_json`` of :meth:`employee_path`)."""
        target = self._employee_prefix + quote(employee_id, safe="") + self._employee_suffix
        return await self._get(target, f"employee {employee_id}")

    async def get_json(
        self, path: str, params: Mapping[str, str] | None = None, *, what: str = ""
    ) -> Any:
        """GET ``path`` and return its JSON, retrying transient failures.

        Raises a :class:`PermanentError` at once, or the last :class:`TransientError`
        when the retry policy's attempts run out.
        """
        target = self._base_path + path
        if params:
            target += "?" + urlencode(params, quote_via=quote)
        return await self._get(target, what or path)

    async def _get(self, target: str, what: str) -> Any:
        attempt = 1
        refused = 0
        while True:
            token = await self._tokens.get()
            try:
                return await self._once(target, token, what)
            except AuthError:
                # Only a token that was current and unexpired counts against the
                # credentials: one may expire while its request waits for a permit or a
                # backoff, and refreshing then is routine. Refused twice fresh: give up.
                if self._tokens.still_fresh(token):
                    refused += 1
                    if refused >= 2:
                        raise auth_error(what) from None
                await self._tokens.refresh(stale=token)
                self.stats.retries += 1
            except TransientError as exc:
                if attempt >= self._retry.max_attempts:
                    raise
                retry_after = exc.retry_after if isinstance(exc, ThrottledError) else None
                delay = backoff_delay(
                    self._retry, attempt, retry_after=retry_after, rand=self._rand
                )
                attempt += 1
                self.stats.retries += 1
                await self._sleep(delay)

    async def _once(self, target: str, token: str, what: str) -> Any:
        controller = self._controller
        stats = self.stats
        permit = await controller.acquire()
        outcome = Outcome.ERROR
        retry_after: float | None = None
        stats.requests += 1
        try:
            try:
                status, body, retry_after_header = await self._pool.get(
                    target, self._headers_for(token)
                )
            except TimeoutError:
                stats.by_status["timeout"] += 1
                raise TimeoutError_(f"{what}: timed out waiting for the server") from None
            except BodyTruncated:
                stats.by_status["truncated"] += 1
                raise ConnectionLostError(f"{what}: response body cut short") from None
            except WireError as exc:
                stats.by_status["connection"] += 1
                raise ConnectionLostError(f"{what}: connection failed ({exc})") from None
            stats.by_status[str(status)] += 1
            if 200 <= status < 300:
                outcome = Outcome.SUCCESS
                try:
                    return orjson.loads(body)
                except orjson.JSONDecodeError:
                    stats.by_status["bad_json"] += 1
                    raise BadResponseError(
                        f"{what}: HTTP {status} with a truncated or invalid JSON body",
                        status=status,
                    ) from None
            if status == 401:
                outcome = Outcome.SUCCESS  # not a rate signal
                raise AuthError(f"{what}: HTTP 401", status=401)
            error = classify(status, body, retry_after_header, what)
            if isinstance(error, ThrottledError):
                outcome = Outcome.THROTTLED
                stats.throttled += 1
                retry_after = error.retry_after
                if retry_after is not None:
                    controller.hold(retry_after)
            elif not isinstance(error, TransientError):
                outcome = Outcome.SUCCESS  # the server answered promptly; not congestion
            raise error
        finally:
            controller.release(permit, outcome, retry_after=retry_after)
