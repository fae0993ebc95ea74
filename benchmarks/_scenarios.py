"""The scenario registry: named simulator presets, as issue 4 lists them, plus issue 3's RSS runs.

A scenario is a tenant (size, seed) and the simulator's knobs, the contenders that run against
it, and the hidden limit a contender is judged against. The runs of a scenario share one
simulator (started with ``--sensitive-access`` so that every field can be compared with the
ground truth), unless the tenant changes during a run (churn): then each run gets a fresh one.

Sizes: a full ``make bench`` uses the tenant sizes issue 4 (or 3) names (``employees``);
``--quick`` uses ``quick_employees``. The full set fits its ~20 minutes by capping the slow
contenders (see ``contenders/``) and repeating only what is close, not by shrinking tenants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "CONTENDER_ORDER",
    "SCENARIOS",
    "HiddenLimit",
    "Mode",
    "Scenario",
]

Mode = Literal["quick", "full"]

# The order of contenders within a round of a scenario (the ceiling first: it is the yardstick).
CONTENDER_ORDER: tuple[str, ...] = ("ceiling", "ukg-extract", "fixed-async", "dlt", "naive")
_ALL = CONTENDER_ORDER
# Under a hidden limit the limit itself is the yardstick: a bare loop that ignores 429s measures
# nothing but how fast the tenant says no.
_LIMITED = tuple(c for c in CONTENDER_ORDER if c != "ceiling")


@dataclass(frozen=True)
class HiddenLimit:
    """What the tenant allows, in successful requests per second, and how it is enforced."""

    kind: Literal["rate", "concurrency"]
    requests_per_second: float
    description: str


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    employees: int  # the size issue 4 (or 3) names: what a full run uses
    quick_employees: int
    knobs: tuple[str, ...] = ()  # extra simulator flags
    contenders: tuple[str, ...] = _ALL
    limit: HiddenLimit | None = None
    churn_rate: float = 0.0  # churn events per second while a contender runs
    kind: Literal["throughput", "rss"] = "throughput"
    # "fields": every field against the ground truth; "count": distinct ids against the
    # tenant's size only (fetching and comparing a million-line truth costs ~35 s).
    exactness: Literal["fields", "count"] = "fields"
    timeout: float = 180.0  # seconds per run, full mode
    quick_timeout: float = 60.0
    in_quick: bool = True
    notes: tuple[str, ...] = field(default=())

    def size(self, mode: Mode) -> int:
        return self.quick_employees if mode == "quick" else self.employees


_THROTTLED = HiddenLimit("rate", 100.0, "token bucket: 100 req/s, burst 100")
_CAPPED = HiddenLimit("concurrency", 32 / 0.150, "32 requests in flight at 150 ms = 213 req/s")
_CHAOS = HiddenLimit("rate", 200.0, "token bucket: 200 req/s, burst 200")

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "fast",
            "20 ms latency, no limit",
            employees=20_000,
            quick_employees=5_000,
            knobs=("--latency-ms", "20"),
        ),
        Scenario(
            "throttled",
            "20 ms latency, hidden limit 100 req/s, no Retry-After",
            employees=5_000,
            quick_employees=1_000,
            knobs=("--latency-ms", "20", "--rate-limit", "100", "--no-retry-after"),
            contenders=_LIMITED,
            limit=_THROTTLED,
        ),
        Scenario(
            "throttled-retry-after",
            "as throttled, with Retry-After on every 429",
            employees=5_000,
            quick_employees=1_000,
            knobs=("--latency-ms", "20", "--rate-limit", "100", "--retry-after"),
            contenders=_LIMITED,
            limit=_THROTTLED,
        ),
        Scenario(
            "concurrency-capped",
            "150 ms latency, at most 32 requests in flight (else 429)",
            employees=5_000,
            quick_employees=1_000,
            knobs=("--latency-ms", "150", "--max-in-flight", "32"),
            contenders=_LIMITED,
            limit=_CAPPED,
        ),
        Scenario(
            "chaos",
            "3% 5xx, 1% resets, 1% truncated bodies, 20 s tokens, limit 200 req/s",
            employees=5_000,
            quick_employees=1_000,
            knobs=(
                "--error-rate",
                "0.03",
                "--reset-rate",
                "0.01",
                "--truncate-rate",
                "0.01",
                "--token-lifetime",
                "20",
                "--rate-limit",
                "200",
            ),
            contenders=_LIMITED,
            limit=_CHAOS,
            notes=("the simulator counts a truncated 200 as a 2xx, so 'successful' includes them",),
        ),
        Scenario(
            "churn",
            "20 ms latency, 20 hires and deletions per second while each contender runs",
            employees=5_000,
            quick_employees=2_000,
            knobs=("--latency-ms", "20", "--churn-mix", "0.5,0,0,0.5"),
            churn_rate=20.0,
            notes=(
                "the tenant changes while a contender runs and stops changing when ukg-extract "
                "commits its snapshot (its manifest appears) or when any other contender exits; "
                "exactness is judged against the tenant as it is then. A contender that does "
                "not list again at the end is stale by the hires and deletions of its run",
            ),
        ),
        Scenario(
            "large",
            "5 ms latency, no limit",
            employees=200_000,
            quick_employees=200_000,
            knobs=("--latency-ms", "5"),
            contenders=("ceiling", "ukg-extract"),
            timeout=600,
            in_quick=False,
            notes=(
                "ukg-extract and the ceiling only, to fit the budget (name others with "
                "--contenders to run them)",
            ),
        ),
        Scenario(
            "rss-20k",
            "issue 3's memory run: 20 ms latency, no limit, ukg-extract only",
            employees=20_000,
            quick_employees=20_000,
            knobs=("--latency-ms", "20"),
            contenders=("ukg-extract",),
            kind="rss",
            timeout=300,
            quick_timeout=120,
        ),
        Scenario(
            "rss-1m",
            "issue 3's memory run: 20 ms latency, no limit, ukg-extract only",
            employees=1_000_000,
            quick_employees=1_000_000,
            knobs=("--latency-ms", "20"),
            contenders=("ukg-extract",),
            kind="rss",
            exactness="count",
            timeout=1200,
            in_quick=False,
        ),
    )
}
