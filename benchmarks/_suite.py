"""Run the selected scenarios: every contender against the scenario's simulator, measured.

Within a scenario the contenders run in rounds (ceiling, ukg-extract, fixed-async, dlt, naive,
then again), so that slow drift of the machine touches them all alike and the ratios come from
the same stretch of time.

Repeats buy a median where speed is a close call and a run is cheap: in scenarios without a
hidden limit, for the contenders marked ``repeated`` (ukg-extract, the ceiling, the fixed
script), while their first run took at most the repeat cutoff and succeeded. Under a hidden
limit the pace is the tenant's, not the machine's, and ukg-extract's run lasts 25-50 s: one
run each. A contender with a cap (``patience``: the naive script, dlt) runs once and is stopped
at its cap, unless its estimated finish is within OVERTIME times the cap (then it may run on
until that); a stopped run's finish is estimated from its rate over the second half of it.

One simulator serves all the runs of a scenario: its statistics are reset before each run, after
a pause for its token bucket to fill up again and for requests a stopped contender left behind
to end. Under churn the tenant changes during a run, so each run gets a fresh simulator.

Each run also records the contender's CPU time and how much CPU other processes on the machine
(other people's tests, the hypervisor) took meanwhile: the machine is shared.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._compare import Exactness, compare, count_ids
from ._metrics import ServerView, server_view
from ._process import CpuSample, run_process
from ._scenarios import CONTENDER_ORDER, Mode, Scenario
from ._simulator import SimulatorProcess, Tenant
from .contenders import CONTENDERS, Contender

__all__ = ["OVERTIME", "RunResult", "ScenarioResult", "SuiteConfig", "run_suite"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The ceiling's sweep: these two first, then doubling (or halving, if the lower one won) on
# while it still gains SWEEP_GAIN, between SWEEP_MIN and SWEEP_MAX.
SWEEP_START = (64, 128)
SWEEP_MIN, SWEEP_MAX = 16, 1024
SWEEP_GAIN = 1.05
# Seconds between the end of a run and the next one on a shared simulator, where it matters:
# under a rate limit the bucket (one second's worth) fills up again, and after a stopped
# contender the requests it abandoned (150 ms at most here) end before anyone is measured.
SETTLE = 1.0
# A capped contender whose estimated finish, at its cap, is within this factor of the cap may
# run on until then: stopping one that is nearly done would lose its exactness for seconds.
OVERTIME = 1.5


@dataclass(frozen=True)
class SuiteConfig:
    mode: Mode
    scenarios: Sequence[Scenario]
    contenders: Sequence[str] | None  # None: each scenario's own list
    repeats: int
    repeat_cutoff: float  # seconds; a run longer than this is not repeated
    work_dir: Path
    seed: int = 7
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)


@dataclass
class RunResult:
    scenario: str
    contender: str
    repeat: int
    employees: int
    status: Literal["ok", "failed", "timeout"]
    timeout: float
    wall_seconds: float
    profiles: int  # distinct employees written (the ceiling: profiles fetched)
    peak_rss_mb: float
    server: ServerView
    exactness: Exactness | None
    own: dict[str, Any]
    error: str = ""
    concurrency: int | None = None
    cpu_seconds: float = 0.0  # the contender's user + system time
    simulator_cpu_seconds: float | None = None  # the simulator's, during the run
    other_cores: float | None = None  # CPU other processes took during the run, in cores
    # A run stopped at its cap: wall time so far + the profiles left / its rate over the
    # second half of the run. Fetching only (not retries still waiting, nor a final write):
    # a lower bound on its finish.
    estimated_seconds: float | None = None

    @property
    def estimated(self) -> bool:
        return self.status == "timeout" and self.estimated_seconds is not None

    @property
    def profiles_per_s(self) -> float:
        """Distinct profiles delivered per wall second.

        For a stopped run: the tenant's size / its estimated finish (an upper bound), else (no
        estimate, or a failed run) its progress, profiles served / seconds until it ended.
        """
        if self.status == "ok":
            return self.profiles / self.wall_seconds if self.wall_seconds else 0.0
        if self.estimated and self.estimated_seconds:
            return self.employees / self.estimated_seconds
        return self.server.profile_ok / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def cpu_ms_per_profile(self) -> float | None:
        """CPU per profile delivered; None for a failed run (its start-up would dominate)."""
        if self.status == "failed":
            return None
        done = self.profiles if self.status == "ok" else self.server.profile_ok
        return 1000 * self.cpu_seconds / done if done and self.cpu_seconds else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["profiles_per_s"] = self.profiles_per_s
        data["server"]["throttled_share"] = self.server.throttled_share
        return data


@dataclass
class ScenarioResult:
    scenario: Scenario
    employees: int
    runs: list[RunResult] = field(default_factory=list)
    sweep: dict[int, float] = field(default_factory=dict)  # ceiling concurrency -> profiles/s
    best_concurrency: int | None = None
    # The scenario whose ukg-extract runs these are (same tenant, same knobs), if not run itself.
    borrowed_from: str | None = None

    def runs_of(self, contender: str) -> list[RunResult]:
        return [r for r in self.runs if r.contender == contender]

    def median_run(self, contender: str) -> RunResult | None:
        """The run with the median wall time among the successful ones (else the first)."""
        runs = self.runs_of(contender)
        ok = sorted((r for r in runs if r.status == "ok"), key=lambda r: r.wall_seconds)
        if ok:
            return ok[(len(ok) - 1) // 2]
        return runs[0] if runs else None

    def median_rate(self, contender: str) -> float | None:
        ok = [r.profiles_per_s for r in self.runs_of(contender) if r.status == "ok"]
        return statistics.median(ok) if ok else None

    def peak_run(self, contender: str) -> RunResult | None:
        """The successful run with the highest peak RSS (else the first): for memory targets."""
        runs = self.runs_of(contender)
        ok = [r for r in runs if r.status == "ok"]
        if ok:
            return max(ok, key=lambda r: r.peak_rss_mb)
        return runs[0] if runs else None


def _environment(credentials: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy") and not k.startswith("UKG_")
    }
    env.update(credentials)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONPATH"] = str(PROJECT_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _profiles_served(stats: dict[str, Any]) -> int:
    return int(stats.get("by_endpoint", {}).get("employee", {}).get("200", 0))


def _estimate(
    employees: int, served: int, wall: float, half: tuple[float, int] | None
) -> float | None:
    """Seconds a stopped run would have needed: wall + what is left / its second-half rate."""
    if half is None or wall <= half[0]:
        return None
    rate = (served - half[1]) / (wall - half[0])
    if rate <= 0:
        return None
    return wall + max(0, employees - served) / rate


class _Suite:
    def __init__(self, config: SuiteConfig) -> None:
        self.config = config
        self.log = config.log
        # Made-up credentials for the simulator's default account, the same for every contender.
        self.env = _environment(
            {
                "UKG_CLIENT_ID": "bench-client",
                "UKG_CLIENT_SECRET": secrets.token_hex(16),
                "UKG_API_KEY": secrets.token_hex(8),
            }
        )
        self._truth_cache: dict[tuple[str, int], bytes] = {}
        self._counter = 0

    def _next_dir(self, label: str) -> Path:
        self._counter += 1
        path = self.config.work_dir / f"{self._counter:03d}-{label}"
        path.mkdir(parents=True)
        return path

    def _tenant(self, scenario: Scenario, employees: int, scenario_dir: Path) -> Tenant:
        def start(log_dir: Path) -> SimulatorProcess:
            return SimulatorProcess(
                employees=employees,
                seed=self.config.seed,
                knobs=scenario.knobs,
                env=self.env,
                log_path=log_dir / "simulator.log",
            )

        return Tenant(
            start,
            shared=not scenario.churn_rate,
            pause_after_run=SETTLE if scenario.limit is not None else 0.0,
            pause_after_stop=SETTLE,
            log_dir=scenario_dir,
        )

    def _capped(self, contender: Contender) -> bool:
        quick = self.config.mode == "quick"
        return bool(contender.quick_patience if quick else contender.patience)

    def _timeout(self, scenario: Scenario, contender: Contender) -> float:
        """The contender's cap, if it has one (and it is shorter), else the scenario's timeout."""
        quick = self.config.mode == "quick"
        timeout = scenario.quick_timeout if quick else scenario.timeout
        patience = contender.quick_patience if quick else contender.patience
        return min(timeout, patience) if patience else timeout

    def _repeat(self, scenario: Scenario, contender: Contender, previous: list[RunResult]) -> bool:
        """Whether to run ``contender`` once more (see the module's docstring)."""
        return (
            scenario.kind == "throughput"
            and scenario.limit is None
            and contender.repeated
            and all(r.status == "ok" for r in previous)
            and previous[0].wall_seconds <= self.config.repeat_cutoff
        )

    # ---- the ceiling's concurrency sweep ------------------------------------------------

    def sweep(self, result: ScenarioResult, tenant: Tenant, scenario_dir: Path) -> None:
        scenario, employees = result.scenario, result.employees
        probe = min(employees, 2_000 if self.config.mode == "quick" else 4_000)
        contender = CONTENDERS["ceiling"]
        run_dir = scenario_dir / "sweep"
        with tenant.lease(run_dir) as sim:

            def measure(concurrency: int) -> float:
                sim.reset_stats()
                argv = contender.argv(sim.base_url, run_dir / "out", concurrency=concurrency)
                outcome = run_process(
                    [*argv, "--limit", str(probe)],
                    env=self.env,
                    timeout=120,
                    log_dir=run_dir / f"c{concurrency}",
                    cwd=PROJECT_ROOT,
                )
                seconds = float(outcome.report.get("profile_seconds") or 0)
                fetched = int(outcome.report.get("profiles") or 0)
                result.sweep[concurrency] = fetched / seconds if seconds else 0.0
                return result.sweep[concurrency]

            low, high = SWEEP_START
            best, best_rate = max(((c, measure(c)) for c in (low, high)), key=lambda x: x[1])
            # Walk away from the loser while each step still gains enough.
            step, level = (2, high * 2) if best == high else (0.5, low // 2)
            while SWEEP_MIN <= level <= SWEEP_MAX:
                rate = measure(level)
                if rate < SWEEP_GAIN * best_rate:
                    break
                best, best_rate = level, rate
                level = int(level * step)
        result.best_concurrency = best
        rates = ", ".join(f"{c}: {r:,.0f}/s" for c, r in sorted(result.sweep.items()))
        self.log(f"[{scenario.name}] ceiling sweep on {probe:,} profiles: {rates} -> {best}")

    # ---- one timed run ------------------------------------------------------------------

    def run_once(
        self, result: ScenarioResult, contender: Contender, repeat: int, tenant: Tenant
    ) -> RunResult:
        scenario, employees = result.scenario, result.employees
        run_dir = self._next_dir(f"{scenario.name}-{contender.name}-{repeat}")
        out = run_dir / "out"
        timeout = self._timeout(scenario, contender)
        concurrency = result.best_concurrency if contender.name == "ceiling" else None
        with tenant.lease(run_dir) as sim:
            churning = False
            started = 0.0
            half: tuple[float, int] | None = None  # (seconds, profiles served) half-way

            def on_start() -> None:
                nonlocal churning, started
                started = time.perf_counter()
                if scenario.churn_rate:
                    sim.set_knobs(churn_rate=scenario.churn_rate)
                    churning = True

            def watch() -> None:
                nonlocal churning, half
                # The snapshot is meant to match the tenant as of its commit: freeze it then.
                marker = contender.commit_marker
                if churning and marker and any(out.glob(marker)):
                    sim.set_knobs(churn_rate=0)
                    churning = False
                # Half-way: the mark from which a stopped run's finish is estimated.
                elapsed = time.perf_counter() - started
                if half is None and elapsed >= timeout / 2:
                    half = (elapsed, _profiles_served(sim.stats()))

            def overtime(elapsed: float) -> float:
                if not self._capped(contender):
                    return 0.0
                estimate = _estimate(employees, _profiles_served(sim.stats()), elapsed, half)
                if estimate is None or estimate > OVERTIME * timeout:
                    return 0.0
                return OVERTIME * timeout - elapsed

            cpu_before = CpuSample.now(sim.pid)
            outcome = run_process(
                contender.argv(sim.base_url, out, concurrency=concurrency),
                env=self.env,
                timeout=timeout,
                log_dir=run_dir,
                cwd=PROJECT_ROOT,
                on_start=on_start,
                watch=watch,
                overtime=overtime,
            )
            cpu_after = CpuSample.now(sim.pid)
            others = cpu_after.others_since(cpu_before, outcome.cpu_seconds, outcome.wall_seconds)
            tenant.ended(stopped=outcome.status == "timeout")
            if churning:
                sim.set_knobs(churn_rate=0)
            view = server_view(sim.stats())
            exactness = None
            if contender.output_glob is not None and outcome.status == "ok":
                if scenario.exactness == "count":
                    exactness = count_ids(employees, contender.outputs(out), hive=contender.hive)
                else:
                    exactness = compare(
                        self._truth(sim, scenario, employees),
                        contender.outputs(out),
                        hive=contender.hive,
                    )
        own = dict(outcome.report)
        own.update(_manifest_numbers(out))
        if exactness is not None:
            profiles = exactness.rows - exactness.duplicated
        else:
            profiles = int(own.get("profiles") or 0)
        estimated = None
        if outcome.status == "timeout":
            estimated = _estimate(employees, view.profile_ok, outcome.wall_seconds, half)
        run = RunResult(
            scenario=scenario.name,
            contender=contender.name,
            repeat=repeat,
            employees=employees,
            status=outcome.status,
            timeout=timeout,
            wall_seconds=outcome.wall_seconds,
            profiles=profiles,
            peak_rss_mb=outcome.peak_rss_mb,
            server=view,
            exactness=exactness,
            own=own,
            error=outcome.error,
            concurrency=concurrency,
            cpu_seconds=outcome.cpu_seconds,
            simulator_cpu_seconds=cpu_after.simulator - cpu_before.simulator,
            other_cores=others,
            estimated_seconds=estimated,
        )
        for manifest in out.glob("_snapshots/*.json"):
            shutil.copyfile(manifest, run_dir / "manifest.json")
        shutil.rmtree(out, ignore_errors=True)  # Parquet can be large; the logs stay
        self.log(_progress_line(run))
        return run

    def _truth(self, sim: SimulatorProcess, scenario: Scenario, employees: int) -> bytes:
        if scenario.churn_rate:  # the tenant changed during the run: take it as it is now
            return sim.truth_ndjson()
        key = (scenario.name, employees)
        if key not in self._truth_cache:
            self._truth_cache = {key: sim.truth_ndjson()}  # keep one: a million lines is big
        return self._truth_cache[key]

    # ---- a scenario ---------------------------------------------------------------------

    def borrow(self, scenario: Scenario, done: Sequence[ScenarioResult]) -> ScenarioResult | None:
        """A memory run measured already: ukg-extract's runs of a scenario with its tenant."""
        employees = scenario.size(self.config.mode)
        if scenario.kind != "rss" or (
            self.config.contenders is not None and "ukg-extract" not in self.config.contenders
        ):
            return None
        for donor in done:
            same = (
                donor.scenario.kind == "throughput"
                and donor.employees == employees
                and donor.scenario.knobs == scenario.knobs
                and not donor.scenario.churn_rate
            )
            runs = donor.runs_of("ukg-extract")
            if same and runs:
                self.log(
                    f"[{scenario.name}] {employees:,} employees: the same tenant and knobs as "
                    f"{donor.scenario.name}; its ukg-extract runs are this memory run"
                )
                copies = [dataclasses.replace(r, scenario=scenario.name) for r in runs]
                return ScenarioResult(
                    scenario, employees, copies, borrowed_from=donor.scenario.name
                )
        return None

    def run_scenario(self, scenario: Scenario) -> ScenarioResult:
        employees = scenario.size(self.config.mode)
        result = ScenarioResult(scenario, employees)
        wanted = self.config.contenders
        # An explicit --contenders list applies everywhere but to the memory runs.
        names = scenario.contenders if wanted is None or scenario.kind == "rss" else wanted
        ordered = [CONTENDERS[n] for n in CONTENDER_ORDER if n in names]
        self.log(
            f"[{scenario.name}] {employees:,} employees, {scenario.description}; "
            f"contenders: {', '.join(c.name for c in ordered)}"
        )
        scenario_dir = self._next_dir(scenario.name)
        with self._tenant(scenario, employees, scenario_dir) as tenant:
            if any(c.name == "ceiling" for c in ordered):
                self.sweep(result, tenant, scenario_dir)
            for repeat in range(1, self.config.repeats + 1):
                for contender in ordered:
                    previous = result.runs_of(contender.name)
                    if previous and not self._repeat(scenario, contender, previous):
                        continue
                    result.runs.append(self.run_once(result, contender, repeat, tenant))
        return result


def _manifest_numbers(out: Path) -> dict[str, Any]:
    """ukg-extract's own counts (retries, 429s) from its manifest, if it wrote one."""
    for path in sorted(out.glob("_snapshots/*.json")):
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        requests = manifest.get("requests", {})
        return {
            "retries": requests.get("retries"),
            "throttled": requests.get("throttled"),
            "requests": requests.get("requests"),
            "complete": manifest.get("complete"),
            "consistent_at_commit": manifest.get("consistent_at_commit"),
            "catch_up_passes": len(manifest.get("catch_up", [])),
            "rate_controller": manifest.get("rate_controller"),
        }
    return {}


def _progress_line(run: RunResult) -> str:
    head = f"[{run.scenario}] {run.contender} #{run.repeat}:"
    if run.status == "timeout":
        estimate = (
            f", finish estimated at >= {run.estimated_seconds:,.0f} s"
            if run.estimated_seconds is not None
            else ""
        )
        return (
            f"{head} stopped at {run.wall_seconds:.0f} s (cap or timeout {run.timeout:.0f} s; "
            f"{run.server.profile_ok:,} profiles{estimate})"
        )
    if run.status == "failed":
        return f"{head} failed after {run.wall_seconds:.1f} s: {run.error[:160]}"
    exact = run.exactness.summary() if run.exactness else "not checked"
    others = "" if run.other_cores is None else f", others {run.other_cores:.2f} cores"
    return (
        f"{head} {run.wall_seconds:.1f} s, {run.profiles_per_s:,.0f} profiles/s, "
        f"429s {run.server.throttled_share:.1%}, RSS {run.peak_rss_mb:.0f} MB, "
        f"CPU {run.cpu_seconds:.1f} s{others}, {exact}"
    )


def run_suite(config: SuiteConfig) -> list[ScenarioResult]:
    suite = _Suite(config)
    results: list[ScenarioResult] = []
    started = time.monotonic()
    for scenario in config.scenarios:
        results.append(suite.borrow(scenario, results) or suite.run_scenario(scenario))
        config.log(f"... {time.monotonic() - started:.0f} s so far")
    return results
