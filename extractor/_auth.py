"""Bearer tokens from OAuth 2.0 client credentials.

One refresh at a time however many workers ask (single flight), ahead of expiry
so that calls rarely meet a 401, and once more when a call does get a 401 with a
token that is still current. The secret is sent in the form body only; it never
appears in ``repr``, logs or error messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from ._backoff import parse_retry_after, retrying
from ._config import Credentials, RetryPolicy
from ._errors import (
    AuthError,
    BadResponseError,
    ConnectionLostError,
    RequestError,
    ThrottledError,
    TimeoutError_,
    TransientError,
)
from ._stats import RequestStats
from ._wire import BodyTruncated, ConnectFailed, ConnectionPool, ProtocolViolation, WireError

__all__ = ["TokenProvider"]

#: Refresh this long before expiry, or a tenth of the lifetime for short-lived tokens.
REFRESH_MARGIN = 60.0


class TokenProvider:
    """Caches the current token and refreshes it single-flight.

    Args:
        pool: the run's connections (:func:`extractor._http.open_pool`), to the token
            endpoint's origin.
        token_url: full URL of the token endpoint.
        credentials: client id and secret (the API key is not sent here).
        acquire, release: the rate controller's pair, so token calls share the
            service account's budget (``release(permit, ok)``).
        clock: monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        *,
        pool: ConnectionPool,
        token_url: str,
        credentials: Credentials,
        retry: RetryPolicy,
        acquire: Callable[[], Awaitable[Any]] | None = None,
        release: Callable[[Any, bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        stats: RequestStats | None = None,
    ) -> None:
        self._pool = pool
        self._url = token_url
        parts = urlsplit(token_url)
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = pool.header_block({"Accept": "application/json"})
        self._credentials = credentials
        self._retry = retry
        self._acquire = acquire
        self._release = release
        self._clock = clock
        self._stats = stats
        self._token = ""
        self._refresh_at = 0.0
        self._inflight: asyncio.Future[str] | None = None
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"TokenProvider(url={self._url!r}, client_id={self._credentials.client_id!r})"

    async def get(self) -> str:
        """A token valid for a while yet; fetches one when needed."""
        if self._token and self._clock() < self._refresh_at:
            return self._token
        return await self._refresh_single_flight()

    def still_fresh(self, token: str) -> bool:
        """Is ``token`` the current one, and not yet at its refresh point?"""
        return bool(token) and token == self._token and self._clock() < self._refresh_at

    async def refresh(self, *, stale: str) -> str:
        """Called after a 401 with ``stale``: refresh unless another worker already did."""
        if self._token and self._token != stale:
            return self._token
        self._refresh_at = 0.0
        return await self._refresh_single_flight()

    async def _refresh_single_flight(self) -> str:
        if self._inflight is None:
            loop = asyncio.get_running_loop()
            self._inflight = loop.create_future()
            future = self._inflight
            try:
                token = await retrying(self._fetch, self._retry)
            except BaseException as exc:
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                    future.exception()  # mark retrieved; waiters re-raise it
                else:
                    future.cancel()
                raise
            finally:
                self._inflight = None
            future.set_result(token)
            return token
        return await asyncio.shield(self._inflight)

    async def _fetch(self) -> str:
        form = urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": self._credentials.client_id,
                "client_secret": self._credentials.client_secret,
            }
        ).encode("ascii")
        permit = await self._acquire() if self._acquire else None
        ok = False
        try:
            if self._stats is not None:
                self._stats.requests += 1
                self._stats.by_kind["token"] += 1
            try:
                status, body, retry_after = await self._pool.post_form(
                    self._target, self._headers, form
                )
            except TimeoutError:
                raise TimeoutError_("token endpoint: timed out") from None
            except ConnectFailed as exc:
                raise ConnectionLostError(
                    f"token endpoint {self._url}: cannot connect ({exc}); "
                    "check the base URL and that the host is reachable"
                ) from None
            except BodyTruncated:
                raise ConnectionLostError("token endpoint: response body cut short") from None
            except ProtocolViolation as exc:
                # Something answers on that port, but not in HTTP: retrying cannot help.
                raise RequestError(
                    f"token endpoint {self._url}: the server did not answer in HTTP ({exc}); "
                    "check the base URL and its port (https:// for a TLS port)"
                ) from None
            except WireError as exc:
                raise ConnectionLostError(f"token endpoint: connection failed ({exc})") from None
            ok = status not in (429, 503)
            if self._stats is not None:
                self._stats.by_status[str(status)] += 1
                if not ok:
                    self._stats.throttled += 1
        finally:
            if self._release:
                self._release(permit, ok)
        if status in (400, 401, 403):
            raise AuthError(
                f"the token endpoint refused the client credentials (HTTP {status}): check "
                "UKG_CLIENT_ID and UKG_CLIENT_SECRET for this tenant's service account",
                status=status,
            )
        if status == 429 or status == 503:
            raise ThrottledError(
                f"token endpoint: throttled (HTTP {status})",
                status=status,
                retry_after=parse_retry_after(retry_after),
            )
        if status >= 500:
            raise TransientError(f"token endpoint: server error HTTP {status}", status=status)
        if status != 200:
            raise RequestError(f"token endpoint: unexpected HTTP {status}", status=status)
        try:
            data = orjson.loads(body)
            token = data["access_token"]
            lifetime = float(data.get("expires_in", 3600))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise BadResponseError(
                "token endpoint: HTTP 200 without a usable access_token", status=status
            ) from None
        if not isinstance(token, str) or not token:
            raise BadResponseError("token endpoint: empty access_token", status=status)
        margin = min(REFRESH_MARGIN, lifetime * 0.1)
        self._token = token
        self._refresh_at = self._clock() + max(0.0, lifetime - margin)
        self.refreshes += 1
        return token
