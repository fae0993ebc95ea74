"""Run one contender as a child process: wall time, exit status, peak memory, CPU, its report.

Peak RSS comes from two places and the larger wins: the kernel's high-water mark of the
child's own memory (``VmHWM`` in ``/proc/PID/status``, exact however short the peak, read at
every poll), and the sum of the current RSS over the child's process tree (psutil, every poll),
which catches helpers it spawns. Not ``ru_maxrss`` from ``wait4``: Linux carries it across
``exec`` from the forking parent, so it would report the harness's own memory.
CPU time is the child's user + system time from ``wait4`` when it is reaped (its threads
included; children it spawned and waited for too). :class:`CpuSample` tells, around a run, how
much CPU the rest of the machine took meanwhile: it is shared.
The child starts in its own session so that a run past its timeout is stopped whole: SIGTERM
to that process group (which this harness created), then SIGKILL five seconds later.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

__all__ = ["CpuSample", "ProcessOutcome", "run_process"]

_POLL = 0.025
_GRACE = 5.0


@dataclass(frozen=True)
class ProcessOutcome:
    status: Literal["ok", "failed", "timeout"]
    returncode: int | None
    wall_seconds: float
    peak_rss_mb: float
    cpu_seconds: float  # user + system time of the child, from wait4 when it was reaped
    report: dict[str, Any]  # the contender's last JSON line on stdout, if any
    error: str  # the last lines of stderr when it did not succeed


def _high_water(pid: int) -> int:
    """Bytes: the peak RSS of ``pid``'s current program (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    with contextlib.suppress(psutil.Error):
        total += root.memory_info().rss
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
    return total


def _last_json(path: Path) -> dict[str, Any]:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    return value
    return {}


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Failed|Exit)\w*: \S")


def _tail(path: Path) -> str:
    """The most telling line of a failed run's output: its last exception, else its last line."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    exceptions = [line for line in lines if _EXCEPTION_LINE.match(line)]
    if not exceptions:
        return lines[-1][:300] if lines else ""
    # dlt wraps the cause several times; the root cause is the most useful part.
    line = next((e for e in exceptions if "caused an exception:" in e), exceptions[-1])
    head, _, cause = line.partition("caused an exception:")
    name = head.split(":", 1)[0]
    return (f"{name}: {cause.strip()}" if cause else line)[:300]


def _cpu(usage: Any) -> float:
    return float(usage.ru_utime + usage.ru_stime)


def _stop_group(pid: int) -> float:
    """Stop the child's process group; the child's CPU seconds once reaped (0.0 if never)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + _GRACE
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                done, _, usage = os.wait4(pid, os.WNOHANG)
                if done:
                    return _cpu(usage)
            time.sleep(_POLL)
    return 0.0


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    log_dir: Path,
    cwd: Path | None = None,
    on_start: Callable[[], None] | None = None,
    watch: Callable[[], None] | None = None,
    overtime: Callable[[float], float] | None = None,
) -> ProcessOutcome:
    """Run ``argv`` to completion or ``timeout`` seconds; stdout/stderr go to ``log_dir``.

    ``on_start`` is called once the child exists, ``watch`` at every poll while it runs.
    ``overtime``, called once when ``timeout`` is reached with the seconds so far, may grant
    that many more seconds (0: stop it now).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / "stdout.txt", log_dir / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=err,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    if on_start is not None:
        on_start()
    peak = polls = 0
    cpu = 0.0
    status: Literal["ok", "failed", "timeout"] = "ok"
    returncode: int | None = None
    try:
        root = psutil.Process(proc.pid)
        deadline = started + timeout
        while True:
            # Read before reaping: a zombie has no memory left to report. The tree walk
            # scans /proc, so it runs every tenth poll; the high-water mark never misses.
            polls += 1
            tree = _tree_rss(root) if polls % 10 == 1 else 0
            peak = max(peak, tree, _high_water(proc.pid))
            pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                wall = time.perf_counter() - started
                returncode = os.waitstatus_to_exitcode(wait_status)
                cpu = _cpu(usage)
                break
            if watch is not None:
                watch()
            if time.perf_counter() >= deadline:
                extra = overtime(time.perf_counter() - started) if overtime else 0.0
                overtime = None
                if extra > 0:
                    deadline += extra
                    continue
                wall = time.perf_counter() - started
                status = "timeout"
                break
            time.sleep(_POLL)
    finally:
        if returncode is None:  # timed out, or the harness itself was interrupted
            cpu = _stop_group(proc.pid)
        proc.returncode = returncode if returncode is not None else -9  # already reaped
    if status == "ok" and returncode != 0:
        status = "failed"
    return ProcessOutcome(
        status=status,
        returncode=returncode,
        wall_seconds=wall,
        peak_rss_mb=peak / 2**20,
        cpu_seconds=cpu,
        report=_last_json(out_path),
        error="" if status == "ok" else _tail(err_path) or _tail(out_path),
    )


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds so far: the whole machine's busy time, the simulator's and the harness's."""

    busy: float
    simulator: float
    harness: float

    @classmethod
    def now(cls, simulator_pid: int | None) -> CpuSample:
        t = psutil.cpu_times()
        # Busy time of every core; guest time is already inside user time on Linux.
        busy = sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq"))
        busy += getattr(t, "steal", 0.0)  # taken by the hypervisor for other machines
        simulator = 0.0
        if simulator_pid is not None:
            with contextlib.suppress(psutil.Error):
                own = psutil.Process(simulator_pid).cpu_times()
                simulator = own.user + own.system
        harness = os.times()
        return cls(busy, simulator, harness.user + harness.system)

    def others_since(self, before: CpuSample, contender_cpu: float, wall: float) -> float | None:
        """Cores that everything but the contender, the simulator and the harness kept busy."""
        if wall <= 0:
            return None
        ours = contender_cpu + (self.simulator - before.simulator) + (self.harness - before.harness)
        return max(0.0, (self.busy - before.busy) - ours) / wall
