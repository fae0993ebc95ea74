"""The UKG Pro API over HTTP: routes, the request pipeline and the handlers.

Every API request goes through one pipeline (``Api._endpoint``), in the order a
gateway applies it:

1. authentication: bearer token *and* the account's ``US-API-Key``, else a bare 401;
2. admission: the account's in-flight cap and token bucket, else 429;
3. scope: the endpoint's scope, else 403;
4. latency, then maybe a fault (5xx, reset, stall) before the handler and a
   truncated body after it;
5. the handler, whose ``ApiError`` becomes a JSON 400/404.

Any other exception becomes a JSON 500 and is logged: the server itself never
goes down. Unknown paths answer a JSON 404 and known paths a JSON 405 for other
methods (one catch-all route decides which), so no middleware runs on the hot path.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from ._auth import Authenticator
from ._config import ServiceAccount, SimulatorConfig
from ._faults import FaultInjector, abort_connection, truncated
from ._limits import AccountLimits, retry_after_header
from ._params import parse_paging, parse_window
from ._problems import ApiError, bad_request
from ._stats import Stats
from ._store import EmployeeStore
from ._writes import check_create, check_patch, check_termination

__all__ = ["API_ROUTES", "Api", "Runtime", "json_response"]

_log = logging.getLogger(__name__)

# (method, path, endpoint name for the statistics, scope required)
API_ROUTES: tuple[tuple[str, str, str, str | None], ...] = (
    ("POST", "/authentication/v1/token", "token", None),
    ("GET", "/personnel/v1/employee-ids", "employee_ids", "people:read"),
    ("GET", "/personnel/v1/employee-changes", "employee_changes", "people:read"),
    ("POST", "/personnel/v1/employees", "create", "people:write"),
    ("GET", "/personnel/v1/employees/{employeeId}", "employee", "people:read"),
    ("PATCH", "/personnel/v1/employees/{employeeId}", "patch", "people:write"),
    (
        "GET",
        "/personnel/v1/employees/{employeeId}/employment-details",
        "employment_details",
        "employment:read",
    ),
    ("POST", "/personnel/v1/employees/{employeeId}/terminations", "terminate", "people:write"),
)
_JSON = "application/json"
_UNAUTHORIZED = orjson.dumps({"message": "Unauthorized"})
_THROTTLED = orjson.dumps({"message": "Too many requests"})
_INTERNAL = orjson.dumps({"message": "Internal server error"})

Handler = Callable[[web.Request, ServiceAccount], Awaitable[web.Response]]


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type=_JSON)


class _ConnectionReset(Exception):
    """The connection was aborted on purpose: there is no response to send."""


class Runtime:
    """The mutable state the handlers share: knobs, data, tokens, limits, statistics."""

    def __init__(
        self, config: SimulatorConfig, store: EmployeeStore, accounts: dict[str, ServiceAccount]
    ) -> None:
        self.config = config
        self.store = store
        self.accounts = accounts
        self.auth = Authenticator(accounts)
        self.limits = AccountLimits()
        self.stats = Stats()
        self.faults = FaultInjector(config.seed)
        self.closing = False
        self._sleepers: set[asyncio.Future[None]] = set()
        self.apply(config)

    def apply(self, config: SimulatorConfig) -> None:
        """Make new knob values take effect for the next request."""
        self.config = config
        self.limits.configure(
            rate=config.rate_limit,
            burst=config.effective_burst,
            max_in_flight=config.max_in_flight,
        )

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when the simulator stops (stalls must not block it)."""
        if self.closing or seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, waiter)
        self._sleepers.add(waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._sleepers.discard(waiter)

    def wake_all(self) -> None:
        self.closing = True
        for waiter in list(self._sleepers):
            _resolve(waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _patterns() -> list[tuple[re.Pattern[str], tuple[str, ...]]]:
    allowed: dict[str, list[str]] = {}
    for method, path, _, _ in API_ROUTES:
        allowed.setdefault(path, []).append(method)
    return [
        (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), tuple(methods))
        for path, methods in allowed.items()
    ]


class Api:
    """Handlers of the UKG Pro endpoints, bound to one ``Runtime``."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._known_paths = _patterns()

    def add_routes(self, app: web.Application) -> None:
        """Register the API; call last, after any other route (it ends with a catch-all)."""
        handlers: dict[str, Handler] = {
            "employee_ids": self.employee_ids,
            "employee_changes": self.employee_changes,
            "create": self.create,
            "employee": self.employee,
            "patch": self.patch,
            "employment_details": self.employment_details,
            "terminate": self.terminate,
        }
        for method, path, name, scope in API_ROUTES:
            if name == "token":
                app.router.add_route(method, path, self._counted(name, self.token))
            else:
                assert scope is not None
                handler = self._endpoint(name, scope, handlers[name])
                app.router.add_route(method, path, self._counted(name, handler))
        app.router.add_route("*", "/{tail:.*}", self._counted("other", self.unknown))

    # ---- the pipeline -----------------------------------------------------------------

    def _counted(
        self, endpoint: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Statistics and last-resort error handling around a route."""
        stats = self.rt.stats

        async def counted(request: web.Request) -> web.StreamResponse:
            stats.begin()
            try:
                try:
                    response = await handler(request)
                except ApiError as exc:
                    response = json_response({"message": exc.message}, exc.status)
                except web.HTTPException as exc:  # e.g. 413 from aiohttp's body limit
                    response = json_response({"message": exc.reason}, exc.status)
                except _ConnectionReset:
                    stats.record_reset()
                    return web.Response()  # the transport is gone; aiohttp drops this quietly
                except Exception:
                    _log.exception(
                        "simulator handler failed on %s %s", request.method, request.path
                    )
                    response = web.Response(body=_INTERNAL, status=500, content_type=_JSON)
                stats.record(endpoint, response.status)
                return response
            finally:
                stats.end()

        return counted

    def _endpoint(
        self, name: str, scope: str, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Authentication, admission, scope, latency and faults around an API handler."""
        rt = self.rt

        async def guarded(request: web.Request) -> web.Response:
            account = rt.auth.authenticate(request.headers)
            if account is None:
                return _unauthorized()
            wait = rt.limits.admit(account.client_id)
            if wait is not None:
                return self._throttled(wait)
            try:
                if scope not in account.scopes:
                    return json_response(
                        {"message": f"Forbidden: the service account lacks the '{scope}' scope"},
                        403,
                    )
                config = rt.config
                delay = rt.faults.delay(config)
                if delay:
                    await rt.pause(delay)
                scoped = config.fault_endpoints
                fault = rt.faults.pick(config) if not scoped or name in scoped else None
                if fault == "error":
                    rt.stats.faults["error"] += 1
                    return rt.faults.error_response()
                if fault == "reset":
                    abort_connection(request)
                    raise _ConnectionReset
                if fault == "stall":
                    rt.stats.faults["stall"] += 1
                    await rt.pause(config.stall_seconds)
                response = await handler(request, account)
                if fault == "truncate" and 200 <= response.status < 300:
                    body = response.body
                    if isinstance(body, bytes) and len(body) > 1:
                        rt.stats.faults["truncate"] += 1
                        return truncated(response, rt.faults.cut(len(body)))
                return response
            finally:
                rt.limits.release(account.client_id)

        return guarded

    def _throttled(self, wait: float) -> web.Response:
        response = web.Response(body=_THROTTLED, status=429, content_type=_JSON)
        if self.rt.config.retry_after:
            response.headers["Retry-After"] = retry_after_header(wait)
        return response

    async def unknown(self, request: web.Request) -> web.Response:
        for pattern, methods in self._known_paths:
            if pattern.match(request.path):
                response = json_response(
                    {"message": f"Method {request.method} is not allowed on this resource"}, 405
                )
                response.headers["Allow"] = ", ".join(methods)
                return response
        return json_response({"message": f"No resource at {request.path[:200]}"}, 404)

    # ---- handlers -----------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        rt = self.rt
        if request.content_type != "application/x-www-form-urlencoded":
            return _oauth_error(
                400, "invalid_request", "the body must be application/x-www-form-urlencoded"
            )
        form = await request.post()
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        client_id, client_secret = _client_credentials(request, fields)
        account = rt.auth.account(client_id) if client_id else None
        if account is not None:  # token requests count against the account's limits too
            wait = rt.limits.admit(account.client_id)
            if wait is not None:
                return self._throttled(wait)
        try:
            delay = rt.faults.delay(rt.config)
            if delay:
                await rt.pause(delay)
            grant_type = fields.get("grant_type")
            if not grant_type:
                return _oauth_error(400, "invalid_request", "grant_type is required")
            if grant_type != "client_credentials":
                return _oauth_error(400, "unsupported_grant_type", None)
            if account is None or rt.auth.check_client(account.client_id, client_secret) is None:
                return _oauth_error(401, "invalid_client", None)
            lifetime = float(rt.config.token_lifetime)  # knobs may set an int
            return json_response(
                {
                    "access_token": rt.auth.issue(account, lifetime),
                    "token_type": "Bearer",
                    "expires_in": int(lifetime) if lifetime.is_integer() else lifetime,
                }
            )
        finally:
            if account is not None:
                rt.limits.release(account.client_id)

    async def employee_ids(self, request: web.Request, account: ServiceAccount) -> web.Response:
        offset, per_page = parse_paging(request.query)
        store = self.rt.store
        ids = store.page_ids(offset, per_page)
        return json_response({"data": [{"employeeId": i} for i in ids], "total": store.count})

    async def employee(self, request: web.Request, account: ServiceAccount) -> web.Response:
        store = self.rt.store
        index = store.require(request.match_info["employeeId"])
        return json_response(store.profile(index, sensitive=account.sensitive_access))

    async def employment_details(
        self, request: web.Request, account: ServiceAccount
    ) -> web.Response:
        store = self.rt.store
        index = store.require(request.match_info["employeeId"])
        return json_response(store.employment_details(index))

    async def employee_changes(self, request: web.Request, account: ServiceAccount) -> web.Response:
        window = parse_window(request.query, self.rt.config.change_window_days)
        offset, per_page = parse_paging(request.query)
        changes = self.rt.store.changes
        low, high = changes.span(window.start, window.end)
        first = min(low + offset, high)
        last = min(first + per_page, high)
        return json_response(
            {"data": [changes.record(p) for p in range(first, last)], "total": high - low}
        )

    async def create(self, request: web.Request, account: ServiceAccount) -> web.Response:
        store = self.rt.store
        record = check_create(await _json_body(request), store)
        index, _ = store.hire(record)
        return json_response({"employeeId": store.codec.id_of(index), "status": "created"}, 201)

    async def patch(self, request: web.Request, account: ServiceAccount) -> web.Response:
        store = self.rt.store
        index = store.require(request.match_info["employeeId"])
        changes = check_patch(await _json_body(request), index, store)
        store.update(index, changes, blind=self.rt.config.feed_blind_fields)
        return json_response({"employeeId": store.codec.id_of(index), "status": "updated"})

    async def terminate(self, request: web.Request, account: ServiceAccount) -> web.Response:
        store = self.rt.store
        index = store.require(request.match_info["employeeId"])
        termination_date = check_termination(await _json_body(request), index, store)
        store.terminate(index, termination_date)
        return json_response(
            {
                "employeeId": store.codec.id_of(index),
                "terminationDate": termination_date,
                "status": "terminated",
            }
        )


def _unauthorized() -> web.Response:
    # One body and one header set for every failure: the caller cannot tell which was wrong.
    response = web.Response(body=_UNAUTHORIZED, status=401, content_type=_JSON)
    response.headers["WWW-Authenticate"] = 'Bearer realm="UKG Pro"'
    return response


def _oauth_error(status: int, error: str, description: str | None) -> web.Response:
    payload = {"error": error}
    if description:
        payload["error_description"] = description
    return json_response(payload, status)


def _client_credentials(request: web.Request, fields: dict[str, str]) -> tuple[str, str]:
    """Client id and secret from the form, or from HTTP Basic auth as OAuth also allows."""
    client_id, client_secret = fields.get("client_id", ""), fields.get("client_secret", "")
    authorization = request.headers.get("Authorization", "")
    if not client_id and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            client_id, _, client_secret = decoded.partition(":")
        except (binascii.Error, ValueError):
            return "", ""
    return client_id, client_secret


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON") from None
