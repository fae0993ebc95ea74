"""The simulator's settings: service accounts and every difficult-tenant knob.

Settings are frozen value objects built once at the edge (the CLI, a test, a
benchmark) and passed down; runtime changes go through ``Simulator.set_knobs``,
which builds a new ``SimulatorConfig`` with ``dataclasses.replace`` so that the
same validation runs again.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field

from ._stats import ENDPOINTS
from ._writes import PATCHABLE

__all__ = [
    "ALL_SCOPES",
    "BLINDABLE_FIELDS",
    "RUNTIME_KNOBS",
    "ServiceAccount",
    "SimulatorConfig",
]

ALL_SCOPES: frozenset[str] = frozenset(
    {"people:read", "people:write", "employment:read", "employment:write"}
)

#: Endpoints that faults can be limited to (``fault_endpoints``): every API endpoint but
#: the token (faults never hit it) and the catch-all for unknown paths.
FAULT_ENDPOINTS: frozenset[str] = frozenset(ENDPOINTS) - {"token", "other"}

#: Profile fields the change feed can be blind to (``feed_blind_fields``): the ones an
#: update can change, i.e. the patchable ones (churn updates change a subset of them).
BLINDABLE_FIELDS: frozenset[str] = PATCHABLE

# Knobs that shape the tenant's data or identity cannot change while it runs:
# changing the seed under a running server would make every earlier answer a lie.
_STRUCTURAL = frozenset(
    {
        "employees",
        "seed",
        "companies",
        "host",
        "port",
        "accounts",
        "client_id",
        "client_secret",
        "api_key",
    }
)


@dataclass(frozen=True)
class ServiceAccount:
    """A UKG Pro service account: client credentials, the tenant API key and its role."""

    client_id: str
    client_secret: str
    api_key: str
    scopes: frozenset[str]
    sensitive_access: bool = False

    def __post_init__(self) -> None:
        if not self.client_id or not self.client_secret or not self.api_key:
            raise ValueError("a service account needs a client id, a client secret and an API key")
        unknown = set(self.scopes) - ALL_SCOPES
        if unknown:
            raise ValueError(f"unknown scopes {sorted(unknown)}; known: {sorted(ALL_SCOPES)}")

    def __repr__(self) -> str:  # never show the secret or the key in tracebacks
        return (
            f"ServiceAccount(client_id={self.client_id!r}, scopes={sorted(self.scopes)!r}, "
            f"sensitive_access={self.sensitive_access!r})"
        )


@dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    """Every knob of the simulator; the defaults are a well-behaved tenant.

    Rates are probabilities per request (``error_rate`` ...) or events per second
    (``rate_limit``, ``churn_rate``); times are seconds unless the name says ``_ms``.
    """

    employees: int = 1000
    seed: int = 0
    companies: int = 5
    host: str = "127.0.0.1"
    port: int = 0
    token_lifetime: float = 3600.0
    rate_limit: float | None = None
    burst: float | None = None
    max_in_flight: int | None = None
    retry_after: bool = False
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    slow_tail_prob: float = 0.0
    slow_tail_ms: float = 0.0
    error_rate: float = 0.0
    reset_rate: float = 0.0
    truncate_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 30.0
    #: Endpoints (statistics names: employee_ids, employee, employment_details,
    #: employee_changes, create, patch, terminate) that faults hit; empty = all of them.
    fault_endpoints: tuple[str, ...] = ()
    churn_rate: float = 0.0
    churn_mix: tuple[float, float, float, float] = (0.3, 0.4, 0.2, 0.1)
    #: Profile fields (API names: "jobTitle", "locationId", ...) whose updates
    #: ``employee-changes`` does not report: an update that changes only these is
    #: missing from the feed (see ``EmployeeStore.update``); the profile changes all the same.
    feed_blind_fields: tuple[str, ...] = ()
    #: With ``feed_blind_fields`` set, this share of churn updates changes one blind
    #: field and nothing else (the other updates may still happen to be blind).
    churn_blind_share: float = 0.5
    change_window_days: int = 31
    accounts: tuple[ServiceAccount, ...] = field(default=())
    default_sensitive_access: bool = False
    client_id: str | None = None
    client_secret: str | None = None
    api_key: str | None = None

    def __post_init__(self) -> None:
        _check(self.employees >= 0, "employees must be >= 0")
        _check(1 <= self.companies <= 999, "companies must be between 1 and 999")
        _check(0 <= self.port <= 65535, "port must be between 0 and 65535")
        _check(_is_loopback(self.host), "the simulator only listens on loopback addresses")
        _check(_positive(self.token_lifetime), "token_lifetime must be > 0")
        _check(self.rate_limit is None or _positive(self.rate_limit), "rate_limit must be > 0")
        _check(self.burst is None or _positive(self.burst), "burst must be > 0")
        _check(self.max_in_flight is None or self.max_in_flight >= 1, "max_in_flight must be >= 1")
        for name in ("latency_ms", "jitter_ms", "slow_tail_ms", "stall_seconds", "churn_rate"):
            value = getattr(self, name)
            _check(math.isfinite(value) and value >= 0, f"{name} must be >= 0")
        probabilities = (
            "slow_tail_prob",
            "error_rate",
            "reset_rate",
            "truncate_rate",
            "stall_rate",
        )
        for name in (*probabilities, "churn_blind_share"):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, f"{name} must be a probability between 0 and 1")
        faults = self.error_rate + self.reset_rate + self.truncate_rate + self.stall_rate
        _check(faults <= 1.0 + 1e-9, "error, reset, truncate and stall rates must add up to <= 1")
        _check(len(self.churn_mix) == 4, "churn_mix needs four weights: hires, updates, ...")
        _check(
            all(math.isfinite(w) and w >= 0 for w in self.churn_mix) and sum(self.churn_mix) > 0,
            "churn_mix weights must be >= 0 and not all zero",
        )
        unknown = set(self.fault_endpoints) - FAULT_ENDPOINTS
        _check(
            not unknown,
            f"unknown fault endpoints {sorted(unknown)}; known: {sorted(FAULT_ENDPOINTS)}",
        )
        self._check_blind_fields()
        _check(self.change_window_days >= 1, "change_window_days must be >= 1")
        ids = [account.client_id for account in self.accounts]
        _check(len(ids) == len(set(ids)), "service accounts need distinct client ids")

    def _check_blind_fields(self) -> None:
        blind: object = self.feed_blind_fields
        _check(
            isinstance(blind, tuple | list) and all(isinstance(name, str) for name in blind),
            "feed_blind_fields must be a list of profile field names such as "
            "('jobTitle', 'locationId')",
        )
        assert isinstance(blind, tuple | list)
        unknown = [name for name in blind if name not in BLINDABLE_FIELDS]
        _check(
            not unknown,
            f"feed_blind_fields: {', '.join(map(repr, unknown))} is not a profile field the "
            f"simulator can change; choose from {', '.join(sorted(BLINDABLE_FIELDS))}",
        )
        # A list (JSON, set_knobs) becomes a tuple without repeats, in the order given.
        object.__setattr__(self, "feed_blind_fields", tuple(dict.fromkeys(blind)))

    @property
    def effective_burst(self) -> float:
        """The token bucket's size: ``burst``, else one second's worth (at least one request)."""
        if self.burst is not None:
            return self.burst
        return max(1.0, self.rate_limit or 1.0)


RUNTIME_KNOBS: frozenset[str] = frozenset(
    name for name in SimulatorConfig.__dataclass_fields__ if name not in _STRUCTURAL
)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
