"""What the simulator saw during one run, reduced to the numbers the report quotes.

The simulator keeps a timeline of 0.25 s buckets (requests, 2xx, 429) from the moment its
statistics were reset, just before the contender started. The *steady* part of a run is its
active span (first to last bucket with a request) without the first and last 10 %: the ramp-up
of a rate controller and the tail of the last few requests are left out, which is what
"sustained" means in issue 3's target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ServerView", "server_view"]

BUCKET = 0.25
_TRIM = 0.10


@dataclass(frozen=True)
class ServerView:
    requests: int
    ok: int
    throttled: int
    profile_ok: int  # 200s on the profile endpoint (with retries, the same id can count twice)
    by_endpoint: dict[str, dict[str, int]]
    peak_in_flight: int
    faults: dict[str, int]
    active_seconds: float
    steady_ok_per_s: float
    steady_requests_per_s: float
    timeline: list[list[float]]

    @property
    def throttled_share(self) -> float:
        return self.throttled / self.requests if self.requests else 0.0

    @property
    def extra_requests(self) -> int:
        """Requests beyond one a profile (id pages and tokens included): the cost of retries."""
        return max(0, self.requests - self.profile_ok)


def server_view(stats: dict[str, Any]) -> ServerView:
    timeline: list[list[float]] = stats.get("timeline", [])
    active = [i for i, row in enumerate(timeline) if row[1] > 0]
    steady_ok = steady_req = 0.0
    active_seconds = 0.0
    if active:
        first, last = active[0], active[-1]
        span = last - first + 1
        active_seconds = span * BUCKET
        trim = int(span * _TRIM)
        rows = timeline[first + trim : last + 1 - trim] or timeline[first : last + 1]
        seconds = len(rows) * BUCKET
        steady_ok = sum(row[2] for row in rows) / seconds
        steady_req = sum(row[1] for row in rows) / seconds
    by_endpoint: dict[str, dict[str, int]] = stats.get("by_endpoint", {})
    ok = sum(
        n for statuses in by_endpoint.values() for code, n in statuses.items() if code[0] == "2"
    )
    return ServerView(
        requests=int(stats.get("requests", 0)),
        ok=ok,
        throttled=int(stats.get("throttled", 0)),
        profile_ok=int(by_endpoint.get("employee", {}).get("200", 0)),
        by_endpoint=by_endpoint,
        peak_in_flight=int(stats.get("peak_in_flight", 0)),
        faults=dict(stats.get("faults", {})),
        active_seconds=active_seconds,
        steady_ok_per_s=steady_ok,
        steady_requests_per_s=steady_req,
        timeline=timeline,
    )
