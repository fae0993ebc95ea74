"""How fast and how lean are ``diff``, ``history`` and ``check`` on large snapshots?

    .venv/bin/python -m benchmarks.diff_bench [--rows 1000000] [--keep DIR]
    .venv/bin/python -m benchmarks.diff_bench --keep DIR --only org-summary,check

Writes synthetic snapshots of ``--rows`` employees in the real layout (through
``SnapshotStore`` and the Parquet sink, so files, partitions and row groups are what an export
leaves) into a temporary folder: A, then B with 1% of the employees changed (department,
manager, title, termination, e-mail), 0.2% removed and 0.3% hired, then C likewise from B.
Each operation runs in a fresh child process that reports its own wall time around the call
and its peak RSS (``VmHWM`` from ``/proc/self/status``: the kernel's high-water mark of that
process, interpreter and imports included; ``ru_maxrss`` is not used because Linux carries it
across ``exec`` from the parent). Prints a markdown table. Not a test: nothing fails on a
number.

``org-summary at commit`` measures ``org_summary`` as an export runs it: the child first writes
snapshot C through the Parquet sink into a staging folder (polars not imported yet, pyarrow's
allocator warmed by the writing), then resets its peak (``/proc/self/clear_refs``) and reports
how far the peak rose above its RSS at the call, including whatever the call imports.

``--only`` measures some operations again on the snapshots a ``--keep DIR`` run left there
(``diff``, ``history-rebuild``, ``check``, ``org-summary``, ``org-summary-at-commit``,
``reporting-lines``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from extractor._schema import EMPLOYEES
from extractor._sink import PartitionedParquetWriter
from extractor._snapshot import SnapshotStore

if TYPE_CHECKING:  # imported where used: the at-commit child must start without polars
    import polars as pl

SNAPSHOTS = ("20260101T000000Z", "20260102T000000Z", "20260103T000000Z")
FANOUT = 8


# -- synthetic data ---------------------------------------------------------------------------


def _ids(start: int, count: int) -> pl.Series:
    import polars as pl

    # A bijection of 40-bit integers: unique, opaque-looking, not in listing order.
    mixed = (np.arange(start, start + count, dtype=np.int64) * 2654435761) % (1 << 40)
    return pl.Series("employee_id", mixed + (1 << 40)).cast(pl.String).str.slice(0, 13)


def _pick(rng: np.random.Generator, values: list[str], n: int) -> np.ndarray[Any, Any]:
    return np.array(values)[rng.integers(0, len(values), n)]


def base_snapshot(n: int, seed: int = 7) -> pl.DataFrame:
    """``n`` employees in a tree of fan-out 8 (about 7 levels at a million), 5 companies."""
    import polars as pl

    rng = np.random.default_rng(seed)
    index = np.arange(n, dtype=np.int64)
    supervisor = np.where(index > 0, (index - 1) // FANOUT, -1)
    branch = index.copy()  # the level-2 ancestor decides the company: few cross-company lines
    while (branch > FANOUT).any():
        branch = np.where(branch > FANOUT, (branch - 1) // FANOUT, branch)
    status = rng.choice(["Active", "Leave", "Terminated"], n, p=[0.9, 0.03, 0.07])
    ids = _ids(0, n)
    frame = pl.DataFrame(
        {
            "employee_id": ids,
            "first_name": _pick(rng, [f"First{i}" for i in range(400)], n),
            "last_name": _pick(rng, [f"Last{i}" for i in range(3000)], n),
            "employee_number": pl.Series(index + 100_000).cast(pl.String),
            "hire_date": pl.Series(rng.integers(8_000, 20_000, n)).cast(pl.Date),
            "job_title": _pick(rng, [f"Title {i}" for i in range(80)], n),
            "department_code": _pick(rng, [f"D{i:03d}" for i in range(40)], n),
            "location_id": _pick(rng, [f"LOC{i:02d}" for i in range(25)], n),
            "employment_status": status,
            "supervisor_id": ids.gather(np.maximum(supervisor, 0)),
            "has_supervisor": supervisor >= 0,
            "company_code": pl.Series(1 + branch % 5).cast(pl.String),
            "pay_group_code": _pick(rng, ["BW", "WK", "SM", "MO"], n),
            "flsa_status": _pick(rng, ["Exempt", "NonExempt"], n),
            "ethnicity": _pick(rng, ["A", "B", "C", "D", "E"], n),
            "gender": _pick(rng, ["F", "M", "X"], n),
            "date_of_birth": pl.Series(rng.integers(-8_000, 5_000, n)).cast(pl.Date),
        }
    )
    return frame.with_columns(
        email_address=pl.format("{}.{}@example.com", "first_name", "employee_number"),
        supervisor_id=pl.when("has_supervisor").then("supervisor_id"),
        company_code=pl.lit("CORP0") + pl.col("company_code"),
        termination_date=pl.when(pl.col("employment_status") == "Terminated").then(
            pl.col("hire_date") + pl.duration(days=700)
        ),
    ).select(EMPLOYEES.schema.names)


def next_snapshot(previous: pl.DataFrame, *, first_new: int, seed: int) -> pl.DataFrame:
    """1% changed (five kinds, equal shares), 0.2% removed, 0.3% hired."""
    import polars as pl

    n = previous.height
    rng = np.random.default_rng(seed)
    order = 1 + rng.permutation(n - 1)  # the top of the tree (row 0) keeps its place
    changed, removed = order[: n // 100], order[n // 100 : n // 100 + n // 500]
    kind = np.full(n, -1)
    kind[changed] = np.arange(changed.size) % 5
    hired = n * 3 // 1000
    ids = previous.get_column("employee_id")
    # Every manager sits in an earlier row (true of the tree, kept by removals and by hires
    # appended at the end): a new manager from an earlier row never closes a cycle.
    new_manager = ids.gather((rng.random(n) * np.arange(n)).astype(np.int64))
    k = pl.Series(kind)
    frame = previous.with_columns(
        department_code=pl.when(k == 0).then(pl.lit("D999")).otherwise("department_code"),
        supervisor_id=pl.when(k == 1).then(new_manager).otherwise("supervisor_id"),
        job_title=pl.when(k == 2).then(pl.lit("Benchmark Lead")).otherwise("job_title"),
        employment_status=pl.when(k == 3).then(pl.lit("Terminated")).otherwise("employment_status"),
        termination_date=pl.when(k == 3).then(pl.date(2026, 1, 2)).otherwise("termination_date"),
        email_address=pl.when(k == 4).then(pl.lit("moved@example.com")).otherwise("email_address"),
    )
    keep = np.ones(n, dtype=bool)
    keep[removed] = False
    hires = base_snapshot(hired, seed=seed + 1).with_columns(
        employee_id=_ids(first_new, hired), supervisor_id=ids.gather(rng.integers(0, n, hired))
    )
    return pl.concat([frame.filter(pl.Series(keep)), hires])


def write_snapshot(out: Path, snapshot_id: str, frame: pl.DataFrame) -> None:
    """Commit ``frame`` as an export would: staged, partitioned by company, journaled."""
    store = SnapshotStore(out)
    staged = store.begin(snapshot_id, {})
    writer = PartitionedParquetWriter(
        staged.table_dir("employees"), EMPLOYEES, file_prefix="part-0", snapshot_id=snapshot_id
    )
    table = frame.to_arrow().cast(EMPLOYEES.schema)
    for batch in table.to_batches(max_chunksize=50_000):
        writer.write(batch)
    staged.record_finished("employees", writer.close(), 0)
    moment = datetime.strptime(snapshot_id, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    store.commit(staged, {"mode": "full", "complete": True}, now=moment)


# -- child processes --------------------------------------------------------------------------


def _status_mb(field: bytes) -> float:
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(field + b":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return _status_mb(b"VmHWM")


def _org_summary_at_commit(out: Path, snapshot_id: str) -> dict[str, Any]:
    """``org_summary`` as at the end of an export (see the module docstring)."""
    import pyarrow.parquet as pq

    staging = Path(tempfile.mkdtemp(prefix="_bench-staging-", dir=out))
    try:
        writer = PartitionedParquetWriter(
            staging / "employees", EMPLOYEES, file_prefix="part-0", snapshot_id=snapshot_id
        )
        folder = out / "employees" / f"snapshot_id={snapshot_id}"
        for path in sorted(folder.rglob("*.parquet")):
            parquet = pq.ParquetFile(path)
            for batch in parquet.iter_batches(batch_size=8192, columns=EMPLOYEES.schema.names):
                writer.write(batch.cast(EMPLOYEES.schema))
        writer.close()
        assert "polars" not in sys.modules
        before = _status_mb(b"VmRSS")
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # resets VmHWM to the current RSS
        from extractor._orgcheck import org_summary

        counts = org_summary(staging / "employees")
        return {
            "employees": counts["employees"],
            "rss_at_call_mb": round(before),
            "peak_rise_mb": round(_peak_rss_mb() - before),
        }
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def child(operation: str, out: Path, args: list[str]) -> None:
    """Run one operation and print ``{"seconds", "peak_rss_mb", "result"}`` as JSON."""
    if operation == "org-summary-at-commit":
        started = time.perf_counter()
        result = _org_summary_at_commit(out, args[0])
        seconds = time.perf_counter() - started
        print(json.dumps({"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "result": result}))
        return

    from extractor._diff import diff_snapshots
    from extractor._history import build_history
    from extractor._orgcheck import check_org, org_summary, write_reporting_lines
    from extractor._read import snapshot_files

    started = time.perf_counter()
    result: dict[str, Any] = {}
    if operation == "diff":
        diff = diff_snapshots(out, *args)
        result = {
            "added": diff.added.height,
            "removed": diff.removed.height,
            "changed": diff.changed_employees,
            "field_changes": diff.changes.height,
        }
    elif operation in ("history", "history-rebuild"):
        history = build_history(out, rebuild=operation == "history-rebuild")
        result = {"folded": len(history.folded), "versions": history.rows}
    elif operation == "check":
        report = check_org(snapshot_files(out, args[0]))
        result = {k: report.counts[k] for k in ("employees", "dangling_supervisor", "max_depth")}
    elif operation == "org-summary":
        result = {
            "employees": org_summary(out / "employees" / f"snapshot_id={args[0]}")["employees"]
        }
    elif operation == "reporting-lines":
        folder = write_reporting_lines(out, args[0])
        result = {"bytes": sum(p.stat().st_size for p in folder.iterdir())}
    elif operation != "baseline":
        raise SystemExit(f"unknown operation {operation}")
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), "result": result}))


def measure(
    operation: str, out: Path, *args: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.diff_bench",
        "--child",
        operation,
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    proc = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{operation} failed:\n{proc.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    report["process_seconds"] = wall
    return report


# -- the run ----------------------------------------------------------------------------------


#: What ``--only`` can measure again on kept snapshots: name -> (row label, arguments).
RERUNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "diff": ("diff A B", ()),
    "history-rebuild": ("history: rebuild from A, B, C", ()),
    "check": ("check C", (SNAPSHOTS[2],)),
    "org-summary": ("org_summary(C folder)", (SNAPSHOTS[2],)),
    "org-summary-at-commit": ("org_summary(C) at commit, after writing C", (SNAPSHOTS[2],)),
    "reporting-lines": ("write_reporting_lines(C)", (SNAPSHOTS[2],)),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.diff_bench", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="employees per snapshot")
    parser.add_argument("--keep", type=Path, help="write the snapshots here and keep them")
    parser.add_argument(
        "--only",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        help=f"with --keep DIR of an earlier run: measure only these ({', '.join(RERUNS)})",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.child:
        child(args.child, args.out, rest)
        return 0
    if args.only is not None:
        unknown = [name for name in args.only if name not in RERUNS]
        if args.keep is None or unknown or not (args.keep / "_snapshots").is_dir():
            parser.error(
                f"--only needs --keep DIR of an earlier run and names from {', '.join(RERUNS)}"
            )
        results = [("interpreter + imports only", measure("baseline", args.keep))]
        for name in args.only:
            label, extra = RERUNS[name]
            results.append((label, measure(name, args.keep, *extra)))
        _print_table(results, rows=None)
        return 0

    out = args.keep or Path(tempfile.mkdtemp(prefix="ukg-diff-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _run(out, args.rows)
    finally:
        if args.keep is None:
            shutil.rmtree(out, ignore_errors=True)


def _run(out: Path, rows: int) -> int:
    started = time.perf_counter()
    a = base_snapshot(rows)
    b = next_snapshot(a, first_new=rows, seed=11)
    write_snapshot(out, SNAPSHOTS[0], a)
    write_snapshot(out, SNAPSHOTS[1], b)
    setup = time.perf_counter() - started
    size = sum(p.stat().st_size for p in (out / "employees").rglob("*.parquet")) / 2**20
    print(f"wrote 2 snapshots of {rows:,} employees ({size:.0f} MB of Parquet) in {setup:.0f} s")

    results: list[tuple[str, dict[str, Any]]] = [
        ("interpreter + imports only", measure("baseline", out))
    ]
    results.append(("diff A B", measure("diff", out)))
    results.append(
        ("diff A B (POLARS_MAX_THREADS=1)", measure("diff", out, env={"POLARS_MAX_THREADS": "1"}))
    )
    results.append(("history: build from A and B", measure("history", out)))
    c = next_snapshot(b, first_new=2 * rows, seed=13)
    del a
    write_snapshot(out, SNAPSHOTS[2], c)
    del b, c
    results.append(("history: fold in C (incremental)", measure("history", out)))
    for name in ("history-rebuild", "check", "org-summary", "org-summary-at-commit"):
        label, extra = RERUNS[name]
        results.append((label, measure(name, out, *extra)))
    label, extra = RERUNS["reporting-lines"]
    results.append((label, measure("reporting-lines", out, *extra)))
    _print_table(results, rows=rows)
    return 0


def _print_table(results: list[tuple[str, dict[str, Any]]], rows: int | None) -> None:
    import polars as pl

    print()
    print(
        f"{'' if rows is None else f'{rows:,} employees per snapshot; '}{os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}; polars {pl.__version__}"
    )
    print()
    baseline = results[0][1]["peak_rss_mb"]
    print(
        "| operation | time in call (s) | process wall (s) | peak RSS (MB) "
        "| above baseline (MB) | result |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for name, r in results:
        detail = ", ".join(f"{k} {v:,}" for k, v in r["result"].items())
        print(
            f"| {name} | {r['seconds']:.2f} | {r['process_seconds']:.2f} | "
            f"{r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - baseline:+.0f} | {detail} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
