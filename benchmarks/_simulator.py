"""The simulator as a separate process: start it, talk to its ``/_sim`` endpoints, stop it.

A scenario's runs share one simulator (a :class:`Tenant`), its statistics reset before each
run, unless a run changes the tenant; it listens on a free loopback port and runs on one core
while the contender runs on the other.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from extractor._demo import start_simulator_process, stop_simulator_process

__all__ = ["SimulatorError", "SimulatorProcess", "Tenant"]

_STARTUP_TIMEOUT = 120.0  # a million-employee tenant takes a few seconds to build
# Loopback only: never let an HTTP(S)_PROXY from the environment carry these calls elsewhere.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SimulatorError(RuntimeError):
    """The simulator did not start, or answered an introspection call with an error."""


class SimulatorProcess:
    """``python -m extractor.simulator`` in a child process, stopped by its PID on exit."""

    def __init__(
        self,
        *,
        employees: int,
        seed: int,
        knobs: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
    ) -> None:
        self._args = ["--employees", str(employees), "--seed", str(seed), "--sensitive-access"]
        self._args += knobs
        self._env = dict(env)
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __enter__(self) -> SimulatorProcess:
        try:
            self._proc, self.base_url = start_simulator_process(
                self._args, self._env, timeout=_STARTUP_TIMEOUT, log_path=self._log_path
            )
        except RuntimeError as exc:
            raise SimulatorError(str(exc)) from exc
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the simulator (SIGTERM, then SIGKILL after 10 s); safe to call twice."""
        if self._proc is not None:
            stop_simulator_process(self._proc)
            self._proc = None

    # ---- /_sim introspection ------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                return response.read()  # type: ignore[no-any-return]
        except OSError as exc:
            raise SimulatorError(f"{method} {path}: {exc}") from exc

    def stats(self) -> dict[str, Any]:
        return json.loads(self._call("GET", "/_sim/stats"))  # type: ignore[no-any-return]

    def reset_stats(self) -> None:
        self._call("POST", "/_sim/reset-stats", {})

    def set_knobs(self, **knobs: Any) -> None:
        self._call("POST", "/_sim/knobs", knobs)

    def truth_ndjson(self) -> bytes:
        """The ground truth: every current profile, unmasked, one JSON object a line."""
        return self._call("GET", "/_sim/truth", timeout=600.0)


class Tenant:
    """The simulator of one scenario: one process for all its runs, or one per run under churn.

    ``start`` makes a simulator that logs into the folder it is given. A shared simulator gets
    its statistics reset before each run, after the pause that :meth:`ended` asks for:
    ``pause_after_run`` after any run (under a rate limit, for the bucket to fill up again),
    ``pause_after_stop`` after a contender was stopped (for the requests it left to end).
    Under churn every contender must start from the same tenant, and a run changes it, so each
    run gets a fresh process.
    """

    def __init__(
        self,
        start: Callable[[Path], SimulatorProcess],
        *,
        shared: bool,
        pause_after_run: float,
        pause_after_stop: float,
        log_dir: Path,
    ) -> None:
        self._start = start
        self.shared = shared
        self._pause_after_run = pause_after_run
        self._pause_after_stop = pause_after_stop
        self._log_dir = log_dir
        self._sim: SimulatorProcess | None = None
        self._ready_at = 0.0

    def __enter__(self) -> Tenant:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sim is not None:
            self._sim.stop()
            self._sim = None

    @contextlib.contextmanager
    def lease(self, run_dir: Path) -> Iterator[SimulatorProcess]:
        """A simulator ready for one run (or one sweep), its statistics just reset."""
        run_dir.mkdir(parents=True, exist_ok=True)
        if not self.shared:
            with self._start(run_dir) as sim:
                sim.reset_stats()
                yield sim
            return
        if self._sim is None:
            self._sim = self._start(self._log_dir).__enter__()
        time.sleep(max(0.0, self._ready_at - time.monotonic()))
        self._sim.reset_stats()
        yield self._sim

    def ended(self, *, stopped: bool) -> None:
        """A contender just exited (``stopped``: it was killed at its cap or timeout)."""
        pause = max(self._pause_after_run, self._pause_after_stop if stopped else 0.0)
        self._ready_at = time.monotonic() + pause
