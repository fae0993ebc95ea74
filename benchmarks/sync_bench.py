"""Incremental sync against a full export of the same tenant at the same moment.

    .venv/bin/python -m benchmarks.sync_bench [--employees 100000] [--changed 0.01]

One simulator process (its own core); every extractor run is a separate
``python -m extractor`` process, as a scheduler would start it. Steps: a full export
(the base), churn that changes ``--changed`` of the tenant (updates, hires, terminations,
deletions), then ``sync`` and a full ``export`` of the same moment (no churn between them),
each with the simulator's statistics reset first. Reported: API calls by endpoint, wall
time, the ratio of the two, the calls sync should need (N/200 listing + changes + sample)
and whether the two snapshots are equal row for row. Written to
``benchmarks/results/<date>-sync.md`` (``--results`` to change) and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from extractor._demo import start_simulator_process, stop_simulator_process

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
ENDPOINTS = ("token", "employee_ids", "employee", "employee_changes")


def _sim(base_url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base_url + path,
        data=data,
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with _OPENER.open(request, timeout=600) as response:
        return json.loads(response.read() or b"null")


def _calls(base_url: str) -> dict[str, int]:
    by = _sim(base_url, "/_sim/stats")["by_endpoint"]
    return {name: sum(by.get(name, {}).values()) for name in ENDPOINTS}


def _run(
    command: str, out: Path, base_url: str, env: dict[str, str], *extra: str
) -> dict[str, Any]:
    _sim(base_url, "/_sim/reset-stats", {})
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "extractor", command, "--out", str(out), "--base-url", base_url,
         "--progress", "quiet", *extra],
        env=env, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{command} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    snapshot_id = Path(done.stdout.strip().splitlines()[-1]).name.split("=", 1)[1]
    manifest = json.loads((out / "_snapshots" / f"{snapshot_id}.json").read_text())
    calls = _calls(base_url)
    return {"wall": wall, "calls": calls, "snapshot_id": snapshot_id, "manifest": manifest}


def _frame(out: Path, snapshot_id: str) -> pl.DataFrame:
    return (
        pl.scan_parquet(f"{out}/employees/snapshot_id={snapshot_id}/**/*.parquet")
        .drop("snapshot_id")
        .collect()
        .sort("employee_id")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--employees", type=int, default=100_000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of the tenant changed")
    parser.add_argument("--sample", type=int, default=100, help="sync --verify-sample")
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)

    env = {
        **os.environ,
        "UKG_CLIENT_ID": "bench",
        "UKG_CLIENT_SECRET": secrets.token_urlsafe(16),
        "UKG_API_KEY": secrets.token_urlsafe(12),
    }
    env.pop("UKG_BASE_URL", None)
    sim_args = ["--employees", str(args.employees), "--seed", "42", "--sensitive-access",
                "--latency-ms", str(args.latency_ms)]  # fmt: skip
    proc, base_url = start_simulator_process(sim_args, env, timeout=300)
    try:
        with tempfile.TemporaryDirectory(prefix="ukg-sync-bench-") as tmp:
            out = Path(tmp)
            base = _run("export", out, base_url, env)
            changed = max(1, round(args.employees * args.changed))
            mix = {
                "updates": changed * 7 // 10,
                "hires": changed // 10,
                "terminations": changed // 10,
                "deletions": changed - changed * 7 // 10 - 2 * (changed // 10),
            }
            _sim(base_url, "/_sim/churn", mix)
            synced = _run(
                "sync", out, base_url, env, "--verify-sample", str(args.sample),
                "--full-every", "never",
            )  # fmt: skip
            full = _run("export", out, base_url, env)
            equal = _frame(out, synced["snapshot_id"]).equals(_frame(out, full["snapshot_id"]))
    finally:
        stop_simulator_process(proc, grace=30)

    counts = synced["manifest"]["sync"]["counts"]
    # two listings: one to find hires and removals, one in the catch-up pass before commit
    expected = 2 * -(-args.employees // 200) + counts["changed"] + counts["new"] + args.sample
    sync_total = sum(synced["calls"].values())
    full_total = sum(full["calls"].values())
    lines = [
        f"# Incremental sync vs full export: {args.employees:,} employees, "
        f"{args.changed:.1%} changed",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; simulator latency "
        f"{args.latency_ms:g} ms, no rate limit; one run each, separate processes.",
        f"Command: `.venv/bin/python -m benchmarks.sync_bench --employees {args.employees} "
        f"--changed {args.changed} --sample {args.sample}`",
        "",
        "| run | calls | ids pages | profiles | change feed | wall s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, run in (("base export", base), ("sync", synced), ("export, same moment", full)):
        c = run["calls"]
        lines.append(
            f"| {name} | {sum(c.values()):,} | {c['employee_ids']:,} | {c['employee']:,} "
            f"| {c['employee_changes']:,} | {run['wall']:.1f} |"
        )
    lines += [
        "",
        f"- Calls: sync / export = **{sync_total / full_total:.3f}** ({sync_total:,} vs "
        f"{full_total:,}); expected about 2 x N/200 (listing, catch-up listing) "
        f"+ changed + new + sample = {expected:,}.",
        f"- Wall time: sync / export = **{synced['wall'] / full['wall']:.3f}**.",
        f"- Sync counts: {json.dumps(counts)}.",
        f"- Sync snapshot equal to the export of the same moment, row for row: **{equal}**.",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"{datetime.now(UTC):%Y-%m-%d}-sync.md"
    path.write_text(report)
    print(f"written to {path}")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
