"""``ukg-extract demo``: the simulator and an export in one go (what ``make run`` calls).

The simulator runs as a separate process (as a real tenant would be: another
host, another CPU) on a free loopback port, with some latency and a hidden rate
limit so that the adaptive controller has something to discover.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.console import Console

from ._config import ExportConfig, load_config
from ._logging import configure_logging

__all__ = ["run_demo", "start_simulator_process", "stop_simulator_process"]


def start_simulator_process(
    sim_args: Sequence[str],
    env: Mapping[str, str],
    *,
    timeout: float = 60.0,
    log_path: Path | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m extractor.simulator --port 0 *sim_args``; return it and its base URL.

    The simulator takes its default account from ``env``. Its stderr goes to ``log_path``
    (truncated) or nowhere. Raises :class:`RuntimeError`, the process stopped, if it exits
    or prints no URL within ``timeout`` seconds. Stop it with :func:`stop_simulator_process`.
    """
    argv = [sys.executable, "-m", "extractor.simulator", "--port", "0", *sim_args]
    log = log_path.open("wb") if log_path is not None else None
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if log is None else log,
            env=dict(env),
        )
    finally:
        if log is not None:
            log.close()  # the child has its own descriptor
    try:
        return proc, _read_base_url(proc, timeout, log_path)
    except BaseException:
        stop_simulator_process(proc)
        raise


def _read_base_url(proc: subprocess.Popen[bytes], timeout: float, log_path: Path | None) -> str:
    stdout = proc.stdout
    assert stdout is not None
    first: list[bytes] = []
    # a thread, not select(), so that the timeout holds on Windows pipes too; once the
    # process is stopped its pipe closes and the read returns
    reader = threading.Thread(target=lambda: first.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not first:
        raise RuntimeError(f"the simulator printed no base URL in {timeout:g} s")
    line = first[0].decode(errors="replace").strip()
    if not line:
        see = f" (see {log_path})" if log_path is not None else ""
        raise RuntimeError(f"the simulator exited before listening{see}")
    if not line.startswith("http://127.0.0.1:"):
        raise RuntimeError(f"unexpected first line from the simulator: {line[:80]!r}")
    return line


def stop_simulator_process(proc: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; closes its stdout. Safe to call twice."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def run_demo(args: argparse.Namespace) -> int:
    from .cli import _export_with_progress, report_result, run_async

    console = Console(file=sys.stderr)
    env = dict(os.environ)
    # one environment serves both: the simulator takes its account from it too
    env.setdefault("UKG_CLIENT_ID", "demo-client")
    env.setdefault("UKG_CLIENT_SECRET", secrets.token_urlsafe(24))
    env.setdefault("UKG_API_KEY", secrets.token_hex(16))
    sim_args = [
        "--employees",
        str(args.employees),
        "--seed",
        "42",
        "--latency-ms",
        str(args.latency_ms),
        "--jitter-ms",
        str(args.latency_ms / 2),
        "--rate-limit",
        str(args.rate_limit),
    ]
    console.print(
        f"[bold]Starting the UKG Pro simulator[/]: {args.employees:,} employees, "
        f"~{args.latency_ms:.0f} ms latency, hidden limit {args.rate_limit:,.0f} req/s"
    )
    proc, base_url = start_simulator_process(sim_args, env)
    try:
        console.print(f"simulator listening on {base_url} (pid {proc.pid})")
        config: ExportConfig = load_config(
            {"base_url": base_url, "out": args.out, "log_interval": 5.0}, env
        )
        configure_logging(secrets=config.credentials.secrets)
        result = run_async(_export_with_progress(config))
        code = report_result(result, config)
    finally:
        stop_simulator_process(proc)
    if result.committed:
        out = Path(args.out)
        python = os.path.relpath(sys.executable)  # the venv's python: it has polars
        query = (
            f'{python} -c "import polars as pl; print(pl.scan_parquet('
            f"'{out}/employees/**/*.parquet', hive_partitioning=True)"
            ".group_by('snapshot_id', 'company_code').len()"
            ".sort('snapshot_id', 'company_code').collect())\""
        )
        console.print(
            f"\n[bold]Snapshot:[/] {out / 'employees' / ('snapshot_id=' + result.snapshot_id)}"
        )
        console.print(f"[bold]Manifest:[/] {result.manifest_path}")
        console.print("[bold]Read every snapshot with polars:[/]")
        console.print(query, soft_wrap=True, highlight=False)
        import polars as pl

        frame = (
            pl.scan_parquet(f"{out}/employees/**/*.parquet", hive_partitioning=True)
            .filter(pl.col("snapshot_id") == result.snapshot_id)
            .group_by("company_code", "employment_status")
            .len()
            .sort("company_code", "employment_status")
            .collect()
        )
        console.print(frame)
    return code
