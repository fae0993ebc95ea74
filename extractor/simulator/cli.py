"""Command line of the simulator (``ukg-extract simulate``, ``python -m extractor.simulator``).

The first line on stdout is the base URL (``http://127.0.0.1:PORT``), printed once
the server listens, so a script can start the simulator and read where it is.
Then the default account's credentials: made-up ones as ``export`` lines ready
to paste, ones taken from the environment only by name (secrets are never
printed). It serves until SIGINT or SIGTERM and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping

from ._config import SimulatorConfig
from ._simulator import CREDENTIAL_ENV, Simulator
from ._thread import new_event_loop

__all__ = ["add_arguments", "config_from_args", "run"]

# Every flag's dest starts with sim_ so that the simulator's flags can share a
# namespace with a parent parser's options without clashing.
_FLOAT_KNOBS: tuple[tuple[str, str], ...] = (
    ("token-lifetime", "seconds a bearer token stays valid (default 3600)"),
    ("rate-limit", "hidden limit: requests per second per service account (default: none)"),
    ("burst", "token-bucket size in requests (default: one second's worth)"),
    ("latency-ms", "added latency per request in milliseconds"),
    ("jitter-ms", "uniform +/- jitter around the latency in milliseconds"),
    ("slow-tail-prob", "probability that a request is slow"),
    ("slow-tail-ms", "extra milliseconds of a slow request"),
    ("error-rate", "probability of a 500/502/503 answer"),
    ("reset-rate", "probability that the connection is reset with no answer"),
    ("truncate-rate", "probability of status 200 with a JSON body cut short"),
    ("stall-rate", "probability that the answer is held for --stall-seconds"),
    ("stall-seconds", "how long a stalled answer is held (default 30)"),
    ("churn-rate", "background hires/updates/terminations/deletions per second"),
    (
        "churn-blind-share",
        "with --feed-blind-fields: share of churn updates that change one blind field only "
        "(default 0.5)",
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every simulator knob as a flag (defaults: a well-behaved tenant)."""
    tenant = parser.add_argument_group("tenant")
    tenant.add_argument(
        "--port",
        dest="sim_port",
        type=int,
        default=0,
        metavar="PORT",
        help="port on 127.0.0.1 (default 0: a free port, printed at start)",
    )
    tenant.add_argument(
        "--employees",
        dest="sim_employees",
        type=int,
        default=1000,
        metavar="N",
        help="employees in the tenant (default 1000)",
    )
    tenant.add_argument(
        "--seed",
        dest="sim_seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of the generated data (default 0)",
    )
    tenant.add_argument(
        "--companies",
        dest="sim_companies",
        type=int,
        default=5,
        metavar="N",
        help="companies (legal entities) in the tenant (default 5)",
    )
    tenant.add_argument(
        "--sensitive-access",
        dest="sim_sensitive_access",
        action="store_true",
        help="let the default account see dateOfBirth, ethnicity and gender",
    )
    tenant.add_argument(
        "--change-window-days",
        dest="sim_change_window_days",
        type=int,
        default=31,
        metavar="DAYS",
        help="longest employee-changes date range (default 31)",
    )
    tenant.add_argument(
        "--churn-mix",
        dest="sim_churn_mix",
        type=_churn_mix,
        default=(0.3, 0.4, 0.2, 0.1),
        metavar="H,U,T,D",
        help="weights of hires, updates, terminations, deletions (default 0.3,0.4,0.2,0.1)",
    )
    knobs = parser.add_argument_group("difficult-tenant knobs")
    for flag, help_text in _FLOAT_KNOBS:
        knobs.add_argument(
            f"--{flag}",
            dest="sim_" + flag.replace("-", "_"),
            type=float,
            default=None,
            metavar="X",
            help=help_text,
        )
    knobs.add_argument(
        "--max-in-flight",
        dest="sim_max_in_flight",
        type=int,
        default=None,
        metavar="N",
        help="requests served at once per account; more get 429",
    )
    knobs.add_argument(
        "--fault-endpoints",
        dest="sim_fault_endpoints",
        type=_names,
        default=(),
        metavar="E1,E2",
        help="limit faults to these endpoints (employee_ids, employee, employment_details, "
        "employee_changes, ...); default: all",
    )
    knobs.add_argument(
        "--feed-blind-fields",
        dest="sim_feed_blind_fields",
        type=_names,
        default=(),
        metavar="F1,F2",
        help="profile fields (jobTitle, locationId, ...) whose updates employee-changes does "
        "not report when nothing else changed; default: none",
    )
    knobs.add_argument(
        "--retry-after",
        dest="sim_retry_after",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="send Retry-After (whole seconds) with 429 (default: no)",
    )


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _churn_mix(text: str) -> tuple[float, float, float, float]:
    try:
        weights = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected four numbers such as 0.3,0.4,0.2,0.1") from None
    if len(weights) != 4:
        raise argparse.ArgumentTypeError(
            "expected four weights: hires,updates,terminations,deletions"
        )
    return weights[0], weights[1], weights[2], weights[3]


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """The ``SimulatorConfig`` of parsed flags (flags left out keep the config's defaults)."""
    values: dict[str, object] = {
        "port": args.sim_port,
        "employees": args.sim_employees,
        "seed": args.sim_seed,
        "companies": args.sim_companies,
        "default_sensitive_access": args.sim_sensitive_access,
        "change_window_days": args.sim_change_window_days,
        "churn_mix": args.sim_churn_mix,
        "max_in_flight": args.sim_max_in_flight,
        "retry_after": args.sim_retry_after,
        "fault_endpoints": args.sim_fault_endpoints,
        "feed_blind_fields": args.sim_feed_blind_fields,
    }
    for flag, _ in _FLOAT_KNOBS:
        name = flag.replace("-", "_")
        value = getattr(args, "sim_" + name)
        if value is not None:
            values[name] = value
    return SimulatorConfig(**values)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; 0 on a clean stop, 2 for bad flags or a busy port."""
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(_serve(config, os.environ))
    except KeyboardInterrupt:  # Ctrl-C before the server listened (a large tenant is building)
        return 0


async def _serve(config: SimulatorConfig, env: Mapping[str, str]) -> int:
    simulator = Simulator(config, env=env)
    try:
        await simulator.start()
    except OSError as exc:
        print(f"simulator: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still interrupts
            loop.add_signal_handler(sig, stop.set)
    try:
        _announce(simulator, config)
        await stop.wait()
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
        await simulator.stop()
    print("simulator: stopped", file=sys.stderr, flush=True)
    return 0


def _announce(simulator: Simulator, config: SimulatorConfig) -> None:
    account = simulator.default_account
    sources = simulator.credential_sources
    lines = [simulator.base_url]
    values = {
        "client_id": account.client_id,
        "api_key": account.api_key,
        "client_secret": account.client_secret,
    }
    for field in ("client_id", "api_key", "client_secret"):
        variable = CREDENTIAL_ENV[field]
        if sources[field] == "generated":
            lines.append(f"export {variable}={values[field]}  # made up for this run")
        elif field == "client_id":
            lines.append(f"# client id {account.client_id} (from {variable})")
        else:
            origin = variable if sources[field] == "env" else "the configuration"
            lines.append(f"# {field.replace('_', ' ')} from {origin} (not shown)")
    print("\n".join(lines), flush=True)
    print(
        f"simulator: {config.employees:,} employees, {config.companies} companies, "
        f"seed {config.seed}; Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
