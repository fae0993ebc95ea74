"""Counters shared by the pipeline, the progress display and the manifest.

Plain integers mutated on the event loop thread only; no locks needed.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RequestStats", "RunStats"]


@dataclass
class RequestStats:
    """Every HTTP request the run made (no ids, no secrets)."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)

    def as_dict(self, elapsed: float) -> dict[str, Any]:
        ok = sum(n for status, n in self.by_status.items() if status.startswith("2"))
        return {
            "requests": self.requests,
            "retries": self.retries,
            "throttled": self.throttled,
            "by_status": dict(sorted(self.by_status.items())),
            "by_kind": dict(sorted(self.by_kind.items())),
            "achieved_rate": round(ok / elapsed, 2) if elapsed > 0 else 0.0,
        }


@dataclass
class RunStats:
    """What the run has done so far; read by the progress display."""

    started: float = field(default_factory=time.monotonic)
    phase: str = "starting"
    total_reported: int | None = None
    listed: int = 0
    queued: int = 0
    fetched: int = 0
    written: int = 0
    skipped_done: int = 0
    vanished: int = 0
    failed: int = 0
    requests: RequestStats = field(default_factory=RequestStats)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started
