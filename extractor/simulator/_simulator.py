"""``Simulator``: the UKG Pro simulator as an async context manager in the current loop.

It builds the tenant (data, accounts), serves the API and the ``/_sim`` routes on
loopback, runs background churn, and offers the same introspection in Python:
statistics, ground truth, churn on demand and knobs that change at runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from aiohttp import web

from ._churn import ChurnEngine
from ._config import ALL_SCOPES, RUNTIME_KNOBS, ServiceAccount, SimulatorConfig
from ._introspect import add_introspection_routes
from ._params import instant_micros, parse_instant
from ._problems import ApiError
from ._server import Api, Runtime
from ._store import EmployeeStore

__all__ = ["CREDENTIAL_ENV", "Simulator"]

# Where the default account's credentials come from, when the environment has them.
CREDENTIAL_ENV: dict[str, str] = {
    "client_id": "UKG_CLIENT_ID",
    "client_secret": "UKG_CLIENT_SECRET",
    "api_key": "UKG_API_KEY",
}
_SHUTDOWN_TIMEOUT = 2.0  # seconds stop() grants requests in progress
#: Connections the kernel queues before they are accepted. aiohttp's default of 128 made the
#: kernel drop the SYNs of a client opening hundreds of connections at once (as an export
#: does when its window doubles): those waited out the 1 s SYN retry, and a run stalled for
#: a second. A production front end takes such bursts (nginx's default is 511).
LISTEN_BACKLOG = 1024


def _made_up(field: str) -> str:
    if field == "client_id":
        return "sim-" + secrets.token_hex(6)
    if field == "api_key":
        return secrets.token_hex(16).upper()
    return secrets.token_urlsafe(24)


class Simulator:
    """A UKG Pro tenant on ``http://127.0.0.1:<port>``, served from the running event loop.

    ``env`` supplies the default account's credentials from ``UKG_CLIENT_ID``,
    ``UKG_CLIENT_SECRET`` and ``UKG_API_KEY`` when present (the CLI passes
    ``os.environ``); otherwise the config's values are used, else made-up ones.
    ``credential_sources`` says which ("env", "config" or "generated") per field.
    """

    def __init__(self, config: SimulatorConfig, *, env: Mapping[str, str] | None = None) -> None:
        env = env or {}
        credentials: dict[str, str] = {}
        self.credential_sources: dict[str, str] = {}
        for field, variable in CREDENTIAL_ENV.items():
            configured = getattr(config, field)
            if env.get(variable):
                credentials[field], source = env[variable], "env"
            elif configured:
                credentials[field], source = configured, "config"
            else:
                credentials[field], source = _made_up(field), "generated"
            self.credential_sources[field] = source
        default = ServiceAccount(
            scopes=ALL_SCOPES, sensitive_access=config.default_sensitive_access, **credentials
        )
        if any(account.client_id == default.client_id for account in config.accounts):
            raise ValueError("an extra service account reuses the default account's client id")
        self._accounts = {default.client_id: default}
        self._accounts.update((account.client_id, account) for account in config.accounts)
        self._default_client_id = default.client_id

        store = EmployeeStore(
            seed=config.seed, employees=config.employees, companies=config.companies
        )
        self._runtime = Runtime(config, store, self._accounts)
        self._churn = ChurnEngine(store, config.seed, lambda: self._runtime.config)
        self._churn_wake = asyncio.Event()
        self._churn_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on the configured loopback port (0: a free one) and start churning."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        app = web.Application()
        add_introspection_routes(app, self)
        Api(self._runtime).add_routes(app)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        config = self._runtime.config
        try:
            site = web.TCPSite(runner, config.host, config.port, backlog=LISTEN_BACKLOG)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{config.host}]" if ":" in config.host else config.host
        self._base_url = f"http://{host}:{port}"
        self._runtime.closing = False
        self._churn_task = asyncio.create_task(
            self._churn.run(self._churn_wake),
            name="ukg-simulator-churn",
        )

    async def stop(self) -> None:
        """Stop churning and serving; stalled and slow responses are cut short."""
        self._runtime.wake_all()
        if self._churn_task is not None:
            self._churn_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._churn_task
            self._churn_task = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---- what a client needs ------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        if self._base_url is None:
            raise RuntimeError("the simulator has not been started")
        return self._base_url

    @property
    def default_account(self) -> ServiceAccount:
        """The account with every scope (credentials from env, config or made up)."""
        return self._accounts[self._default_client_id]

    @property
    def config(self) -> SimulatorConfig:
        """The current knobs (``set_knobs`` replaces them)."""
        return self._runtime.config

    # ---- introspection (tests and benchmarks) --------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Request statistics since start or ``reset_stats`` (the ``/_sim`` routes not counted).

        ``{"requests": n, "by_endpoint": {"token"|"employee_ids"|"employee"|
        "employment_details"|"employee_changes"|"create"|"patch"|"terminate"|"other":
        {"200": n, "429": n, ...}}, "throttled": n, "peak_in_flight": n,
        "faults": {"error"|"reset"|"truncate"|"stall": n}, "started_at": epoch seconds,
        "timeline": [[bucket start offset s, requests, 2xx, 429], ...]}`` with 0.25 s
        buckets. A reset connection counts in ``requests`` and ``faults`` but has no status.
        """
        return self._runtime.stats.snapshot()

    def reset_stats(self) -> None:
        self._runtime.stats.reset()

    def iter_truth(self) -> Iterator[dict[str, Any]]:
        """Every current employee's unmasked profile, in listing order (memory stays flat)."""
        store = self._runtime.store
        for index in store.indices():
            yield store.profile(index, sensitive=True)

    def iter_truth_employment_details(self) -> Iterator[dict[str, Any]]:
        store = self._runtime.store
        for index in store.indices():
            yield store.employment_details(index)

    def truth(self) -> dict[str, dict[str, Any]]:
        """employeeId -> unmasked profile, as ``GET /employees/{id}`` returns it with
        sensitive access; current employees only. Materialises everything: at a
        million employees prefer ``iter_truth``."""
        return {profile["employeeId"]: profile for profile in self.iter_truth()}

    def truth_employment_details(self) -> dict[str, dict[str, Any]]:
        return {record["employeeId"]: record for record in self.iter_truth_employment_details()}

    def iter_changes(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        reported: bool | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every change with ``since <= changedAt <= until``, in time order, reported or not.

        The ground truth behind the feed: each record is the feed's record plus
        ``reported`` (False: the feed is blind to it, see ``feed_blind_fields``) and
        ``fields``, the profile fields it set to a new value (None for hires and
        deletions). ``since`` and ``until`` are datetimes (naive = UTC) or strings as
        the feed takes them (a date-only ``until`` means the end of that day); either
        may be left out. ``reported`` keeps only reported (True) or unreported (False)
        changes. The range is fixed when iteration starts: later changes are not seen.
        """
        history = self._runtime.store.history
        start = _micros(since, "since", end_of_day=False)
        end = _micros(until, "until", end_of_day=True)
        low, high = history.span(start, end)

        def records() -> Iterator[dict[str, Any]]:
            for position in range(low, high):
                if reported is None or history.reported(position) == reported:
                    yield history.record(position)

        return records()

    def changes(
        self,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        reported: bool | None = None,
    ) -> list[dict[str, Any]]:
        """``iter_changes`` as a list.

        ``{c["employeeId"] for c in changes(since=t)}`` is exactly the set of employees
        written to since ``t``: hired, updated (a write that changed no value has
        ``fields == []``), terminated or deleted, whether the feed reported it or not.
        """
        return list(self.iter_changes(since=since, until=until, reported=reported))

    def blind_changes(
        self, *, since: datetime | str | None = None, until: datetime | str | None = None
    ) -> list[dict[str, Any]]:
        """The updates ``employee-changes`` did not report, each with the fields it changed."""
        return self.changes(since=since, until=until, reported=False)

    def churn(
        self, *, hires: int = 0, updates: int = 0, terminations: int = 0, deletions: int = 0
    ) -> list[dict[str, Any]]:
        """Apply churn now; the change records, as the change feed will show them.

        Updates the feed is blind to are not among them: ``blind_changes`` has them.
        """
        positions = self._churn.apply(
            hires=hires, updates=updates, terminations=terminations, deletions=deletions
        )
        changes = self._runtime.store.changes
        return [changes.record(position) for position in positions]

    def knobs(self) -> dict[str, Any]:
        """The knobs that ``set_knobs`` may change, with their current values."""
        config = self._runtime.config
        return {name: getattr(config, name) for name in sorted(RUNTIME_KNOBS)}

    def set_knobs(self, **changes: Any) -> None:
        """Change knobs at runtime (latency, rate_limit, faults, churn_rate, ...).

        Raises TypeError for an unknown knob and ValueError for one that cannot
        change while running (employees, seed, accounts, ...) or a bad value.
        """
        fields = {field.name for field in dataclasses.fields(SimulatorConfig)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise TypeError(f"unknown simulator knob(s): {', '.join(unknown)}")
        fixed = sorted(set(changes) - RUNTIME_KNOBS)
        if fixed:
            raise ValueError(f"cannot change {', '.join(fixed)} while the simulator runs")
        if "churn_mix" in changes:
            changes["churn_mix"] = tuple(float(weight) for weight in changes["churn_mix"])
        config = dataclasses.replace(self._runtime.config, **changes)
        if config.default_sensitive_access != self.default_account.sensitive_access:
            self._accounts[self._default_client_id] = dataclasses.replace(
                self.default_account, sensitive_access=config.default_sensitive_access
            )
        self._runtime.apply(config)
        self._churn_wake.set()


def _micros(moment: datetime | str | None, name: str, *, end_of_day: bool) -> int:
    if moment is None:
        return (1 << 63) - 1 if end_of_day else 0
    if isinstance(moment, str):
        try:
            moment = parse_instant(moment, name, end_of_day=end_of_day)
        except ApiError as exc:
            raise ValueError(exc.message) from None
    return instant_micros(moment)
