"""Run the selected scenarios: a fresh simulator per run, every contender, repeated, measured.

Within a scenario the contenders run in rounds (ceiling, ukg-extract, fixed-async, dlt, naive,
then again), so that slow drift of the machine touches them all alike and the ratios come from
the same stretch of time. A run that fails or times out is not repeated, nor is one that took
longer than the repeat cutoff (its own length already averages out the noise, and the budget
is finite): the report says how many runs each median is of.
"""

from __future__ import annotations

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

from ._compare import Exactness, compare
from ._metrics import ServerView, server_view
from ._process import run_process
from ._scenarios import CONTENDER_ORDER, Mode, Scenario
from ._simulator import SimulatorProcess
from .contenders import CONTENDERS, Contender

__all__ = ["RunResult", "ScenarioResult", "SuiteConfig", "run_suite"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SWEEP = (32, 64, 128, 256)  # then doubling on while it still pays, up to SWEEP_MAX
SWEEP_MAX = 1024


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

    @property
    def profiles_per_s(self) -> float:
        """Distinct profiles delivered per wall second; for an unfinished run, its progress."""
        if self.status == "ok":
            return self.profiles / self.wall_seconds if self.wall_seconds else 0.0
        return self.server.profile_ok / self.wall_seconds if self.wall_seconds else 0.0

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

    def _simulator(self, scenario: Scenario, employees: int, run_dir: Path) -> SimulatorProcess:
        return SimulatorProcess(
            employees=employees,
            seed=self.config.seed,
            knobs=scenario.knobs,
            env=self.env,
            log_path=run_dir / "simulator.log",
        )

    def _timeout(self, scenario: Scenario, contender: Contender) -> float:
        quick = self.config.mode == "quick"
        timeout = scenario.quick_timeout if quick else scenario.timeout
        patience = contender.quick_patience if quick else contender.patience
        return min(timeout, patience) if patience else timeout

    # ---- the ceiling's concurrency sweep ------------------------------------------------

    def sweep(self, result: ScenarioResult) -> None:
        scenario, employees = result.scenario, result.employees
        probe = min(employees, 2_000 if self.config.mode == "quick" else 4_000)
        contender = CONTENDERS["ceiling"]
        run_dir = self._next_dir(f"{scenario.name}-sweep")
        with self._simulator(scenario, employees, run_dir) as sim:
            concurrency = SWEEP[0]
            while concurrency <= SWEEP_MAX:
                argv = contender.argv(sim.base_url, run_dir / "out", concurrency=concurrency)
                argv += ["--limit", str(probe)]
                outcome = run_process(
                    argv,
                    env=self.env,
                    timeout=120,
                    log_dir=run_dir / f"c{concurrency}",
                    cwd=PROJECT_ROOT,
                )
                seconds = float(outcome.report.get("profile_seconds") or 0)
                fetched = int(outcome.report.get("profiles") or 0)
                rate = fetched / seconds if seconds else 0.0
                before = max(result.sweep.values(), default=0.0)
                result.sweep[concurrency] = rate
                if concurrency >= SWEEP[-1] and rate < 1.05 * before:
                    break  # past the listed levels, go on only while doubling still gains 5%
                concurrency *= 2
        result.best_concurrency = max(result.sweep, key=lambda c: result.sweep[c])
        rates = ", ".join(f"{c}: {r:,.0f}/s" for c, r in result.sweep.items())
        self.log(
            f"[{scenario.name}] ceiling sweep on {probe:,} profiles: {rates} "
            f"-> {result.best_concurrency}"
        )

    # ---- one timed run ------------------------------------------------------------------

    def run_once(self, result: ScenarioResult, contender: Contender, repeat: int) -> RunResult:
        scenario, employees = result.scenario, result.employees
        run_dir = self._next_dir(f"{scenario.name}-{contender.name}-{repeat}")
        out = run_dir / "out"
        timeout = self._timeout(scenario, contender)
        concurrency = result.best_concurrency if contender.name == "ceiling" else None
        with self._simulator(scenario, employees, run_dir) as sim:
            sim.reset_stats()

            churning = False

            def start_churn() -> None:
                nonlocal churning
                if scenario.churn_rate:
                    sim.set_knobs(churn_rate=scenario.churn_rate)
                    churning = True

            def stop_churn_at_commit() -> None:
                # The snapshot is meant to match the tenant as of its commit: freeze it then.
                nonlocal churning
                marker = contender.commit_marker
                if churning and marker and any(out.glob(marker)):
                    sim.set_knobs(churn_rate=0)
                    churning = False

            outcome = run_process(
                contender.argv(sim.base_url, out, concurrency=concurrency),
                env=self.env,
                timeout=timeout,
                log_dir=run_dir,
                cwd=PROJECT_ROOT,
                on_start=start_churn,
                watch=stop_churn_at_commit,
            )
            if churning:
                sim.set_knobs(churn_rate=0)
            view = server_view(sim.stats())
            exactness = None
            if contender.output_glob is not None and outcome.status == "ok":
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
        if any(c.name == "ceiling" for c in ordered):
            self.sweep(result)
        repeats = 1 if scenario.kind == "rss" else self.config.repeats
        for repeat in range(1, repeats + 1):
            for contender in ordered:
                previous = result.runs_of(contender.name)
                if previous and (
                    any(r.status != "ok" for r in previous)
                    or previous[0].wall_seconds > self.config.repeat_cutoff
                ):
                    continue
                result.runs.append(self.run_once(result, contender, repeat))
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
        return (
            f"{head} did not finish in {run.timeout:.0f} s "
            f"({run.server.profile_ok:,} profiles at {run.profiles_per_s:,.0f}/s)"
        )
    if run.status == "failed":
        return f"{head} failed after {run.wall_seconds:.1f} s: {run.error[:160]}"
    exact = run.exactness.summary() if run.exactness else "not checked"
    return (
        f"{head} {run.wall_seconds:.1f} s, {run.profiles_per_s:,.0f} profiles/s, "
        f"429s {run.server.throttled_share:.1%}, RSS {run.peak_rss_mb:.0f} MB, {exact}"
    )


def run_suite(config: SuiteConfig) -> list[ScenarioResult]:
    suite = _Suite(config)
    results = []
    started = time.monotonic()
    for scenario in config.scenarios:
        results.append(suite.run_scenario(scenario))
        config.log(f"... {time.monotonic() - started:.0f} s so far")
    return results
