"""``/_sim/...``: statistics, ground truth and control for tests and benchmarks.

Not part of the UKG API: no authentication, not counted in the statistics, never
used by the extractor. They let a test or benchmark inspect and steer a
simulator running in another process:

* ``GET /_sim/stats``, ``POST /_sim/reset-stats``
* ``GET /_sim/truth`` (NDJSON, one unmasked profile per line, in listing order;
  ``?kind=employment-details`` for the employment records; ``?kind=changes`` for
  every change in time order, reported by the feed or not, each with ``reported``
  and ``fields``, narrowed by ``since``, ``until`` and ``reported=true|false``)
* ``POST /_sim/churn`` with ``{"hires": 1, "updates": 0, ...}`` -> the change records
* ``GET /_sim/knobs`` and ``POST /_sim/knobs`` with ``{"latency_ms": 20, ...}``
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

import orjson
from aiohttp import web

from ._problems import ApiError, bad_request
from ._server import json_response

__all__ = ["Introspectable", "add_introspection_routes"]

_CHUNK = 500  # NDJSON lines per write: big enough to be cheap, small enough to stream
_TRUTH_KINDS = ("profiles", "employment-details", "changes")
_CHANGE_PARAMS = frozenset({"since", "until", "reported"})


class Introspectable(Protocol):
    def stats(self) -> dict[str, Any]: ...
    def reset_stats(self) -> None: ...
    def iter_truth(self) -> Iterator[dict[str, Any]]: ...
    def iter_truth_employment_details(self) -> Iterator[dict[str, Any]]: ...
    def iter_changes(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        reported: bool | None = None,
    ) -> Iterator[dict[str, Any]]: ...
    def churn(
        self, *, hires: int = 0, updates: int = 0, terminations: int = 0, deletions: int = 0
    ) -> list[dict[str, Any]]: ...
    def set_knobs(self, **changes: Any) -> None: ...
    def knobs(self) -> dict[str, Any]: ...


def _safe(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return json_response({"message": exc.message}, exc.status)
        except (TypeError, ValueError) as exc:  # bad knob names or values
            return json_response({"message": str(exc)}, 400)

    return wrapped


async def _json_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object")
    return body


def add_introspection_routes(app: web.Application, sim: Introspectable) -> None:
    async def stats(request: web.Request) -> web.Response:
        return json_response(sim.stats())

    async def reset_stats(request: web.Request) -> web.Response:
        sim.reset_stats()
        return json_response({"status": "reset"})

    def truth_records(query: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        kind = query.get("kind", "profiles")
        if kind not in _TRUTH_KINDS:
            raise bad_request(f"kind must be one of {', '.join(map(repr, _TRUTH_KINDS))}")
        if kind != "changes":
            extra = sorted(_CHANGE_PARAMS & set(query))
            if extra:
                raise bad_request(f"{', '.join(extra)} only apply to kind=changes")
            if kind == "profiles":
                return sim.iter_truth()
            return sim.iter_truth_employment_details()
        reported = query.get("reported")
        if reported not in (None, "true", "false"):
            raise bad_request("reported must be 'true' or 'false'")
        return sim.iter_changes(
            since=query.get("since"),
            until=query.get("until"),
            reported=None if reported is None else reported == "true",
        )

    async def truth(request: web.Request) -> web.StreamResponse:
        records = truth_records(request.query)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        lines: list[bytes] = []
        for record in records:
            lines.append(orjson.dumps(record) + b"\n")
            if len(lines) >= _CHUNK:
                await response.write(b"".join(lines))
                lines.clear()
        if lines:
            await response.write(b"".join(lines))
        await response.write_eof()
        return response

    async def churn(request: web.Request) -> web.Response:
        body = await _json_object(request)
        counts: dict[str, int] = {}
        for key, value in body.items():
            if key not in ("hires", "updates", "terminations", "deletions"):
                raise bad_request(f"Unknown churn kind '{key}'")
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100_000:
                raise bad_request(f"'{key}' must be an integer between 0 and 100000")
            counts[key] = value
        return json_response({"data": sim.churn(**counts)})

    async def get_knobs(request: web.Request) -> web.Response:
        return json_response(sim.knobs())

    async def set_knobs(request: web.Request) -> web.Response:
        sim.set_knobs(**await _json_object(request))
        return json_response(sim.knobs())

    router = app.router
    router.add_get("/_sim/stats", _safe(stats), allow_head=False)
    router.add_post("/_sim/reset-stats", _safe(reset_stats))
    router.add_get("/_sim/truth", _safe(truth), allow_head=False)
    router.add_post("/_sim/churn", _safe(churn))
    router.add_get("/_sim/knobs", _safe(get_knobs), allow_head=False)
    router.add_post("/_sim/knobs", _safe(set_knobs))
