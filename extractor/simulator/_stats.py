"""Request statistics for tests and benchmarks (never part of the UKG API).

Counted on the hot path, so the bookkeeping is a few dict increments: responses
by endpoint and status, 429s, peak concurrent requests over all accounts, faults
injected, and a timeline of 0.25 s buckets (requests, 2xx, 429) from which a
benchmark can draw the rate over time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["ENDPOINTS", "FAULT_KINDS", "TIMELINE_BUCKET", "Stats"]

ENDPOINTS: tuple[str, ...] = (
    "token",
    "employee_ids",
    "employee",
    "employment_details",
    "employee_changes",
    "create",
    "patch",
    "terminate",
    "other",
)
FAULT_KINDS: tuple[str, ...] = ("error", "reset", "truncate", "stall")
TIMELINE_BUCKET = 0.25


class Stats:
    """Counters since start or the last reset."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.throttled = 0
        self.peak_in_flight = self.in_flight
        self.by_endpoint: dict[str, dict[int, int]] = {name: {} for name in ENDPOINTS}
        self.faults = dict.fromkeys(FAULT_KINDS, 0)
        self._started = self._clock()
        self.started_at = self._wall_clock()
        self._timeline: list[list[int]] = []

    def begin(self) -> None:
        self.in_flight += 1
        if self.in_flight > self.peak_in_flight:
            self.peak_in_flight = self.in_flight

    def end(self) -> None:
        self.in_flight -= 1

    def _bucket(self) -> list[int]:
        slot = int((self._clock() - self._started) / TIMELINE_BUCKET)
        timeline = self._timeline
        while len(timeline) <= slot:
            timeline.append([0, 0, 0])
        return timeline[slot]

    def record(self, endpoint: str, status: int) -> None:
        """Count one answered request."""
        self.requests += 1
        counts = self.by_endpoint[endpoint]
        counts[status] = counts.get(status, 0) + 1
        bucket = self._bucket()
        bucket[0] += 1
        if 200 <= status < 300:
            bucket[1] += 1
        elif status == 429:
            self.throttled += 1
            bucket[2] += 1

    def record_reset(self) -> None:
        """Count a request whose connection was aborted instead of answered."""
        self.requests += 1
        self.faults["reset"] += 1
        self._bucket()[0] += 1

    def snapshot(self) -> dict[str, Any]:
        """The JSON-ready statistics (see ``Simulator.stats``)."""
        return {
            "requests": self.requests,
            "by_endpoint": {
                name: {str(status): n for status, n in sorted(counts.items())}
                for name, counts in self.by_endpoint.items()
            },
            "throttled": self.throttled,
            "peak_in_flight": self.peak_in_flight,
            "faults": dict(self.faults),
            "started_at": self.started_at,
            "timeline": [
                [round(slot * TIMELINE_BUCKET, 2), *counts]
                for slot, counts in enumerate(self._timeline)
            ],
        }
