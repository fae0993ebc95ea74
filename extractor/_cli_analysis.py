"""The analysis commands: ``diff``, ``history`` and ``check`` (arguments in, library call, output).

Wired into ``cli.build_parser`` with :func:`add_parsers`. Each handler returns the exit code:
0 success (``diff``: also when there are differences, unless ``--exit-code``); 1 differences
with ``diff --exit-code``, or problems with ``check --strict``; 2 usage errors (an unknown
snapshot id, an unknown column, ``--format parquet`` without ``--output``). Errors reading the
output folder propagate as ``ExtractError`` (``cli.main`` turns them into exit code 1).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import orjson
from rich.console import Console
from rich.table import Table

from ._errors import ConfigError

if TYPE_CHECKING:
    from ._diff import DiffResult, SnapshotSide
    from ._orgcheck import OrgReport

__all__ = ["add_parsers", "cmd_check", "cmd_diff", "cmd_history"]

EXIT_OK, EXIT_DIFFERENT, EXIT_USAGE = 0, 1, 2
DEFAULT_OUT = Path("output")


def _columns(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``diff``, ``history`` and ``check`` to the subparsers of ``ukg-extract``."""
    p = sub.add_parser(
        "diff",
        help="field-level difference of two snapshots",
        description="Compare two committed snapshots keyed by employee_id (default: the latest "
        "two complete ones): hires, removals and field changes, summarised by kind and field.",
    )
    p.add_argument("a", nargs="?", metavar="A", help="older snapshot id")
    p.add_argument("b", nargs="?", metavar="B", help="newer snapshot id (default: latest)")
    p.add_argument("--out", type=Path, help="output folder (default: ./output)")
    p.add_argument(
        "--format",
        choices=["table", "csv", "json", "parquet"],
        default="table",
        help="table (terminal), csv/parquet (one row per change), json (summary and rows)",
    )
    p.add_argument("--output", type=Path, help="write to this file instead of stdout")
    p.add_argument("--fields", type=_columns, help="compare only these columns (a,b,c)")
    p.add_argument("--ignore", type=_columns, help="leave these columns out (a,b,c)")
    p.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 1 when there are differences (as git diff --exit-code)",
    )
    p.add_argument("--limit", type=int, default=20, help="field changes shown in the table")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser(
        "history",
        help="fold snapshots into the employee_history table (SCD type 2)",
        description="Add every new complete snapshot to <out>/employee_history: one row per "
        "version of an employee with valid_from/valid_to. Incremental unless --rebuild.",
    )
    p.add_argument("--out", type=Path, help="output folder (default: ./output)")
    p.add_argument("--rebuild", action="store_true", help="rebuild from every snapshot")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser(
        "check",
        help="org-graph checks of a snapshot (dangling managers, cycles, ...)",
        description="Check the reporting graph of one snapshot (default: the latest complete "
        "one): dangling supervisor ids, cycles, active employees reporting to terminated "
        "managers, cross-company lines, depth.",
    )
    p.add_argument("snapshot", nargs="?", metavar="SNAPSHOT", help="snapshot id")
    p.add_argument("--out", type=Path, help="output folder (default: ./output)")
    p.add_argument(
        "--reporting-lines",
        action="store_true",
        help="also write <out>/reporting_lines/snapshot_id=<id> (employee, manager, level)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when any problem is found")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--limit", type=int, default=10, help="examples shown of each problem")
    p.set_defaults(func=cmd_check)


def _usage_error(exc: ConfigError) -> int:
    print(f"ukg-extract: error: {exc}", file=sys.stderr)
    return EXIT_USAGE


@contextlib.contextmanager
def _text_output(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8") as fh:
        yield fh


# -- diff -----------------------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> int:
    from ._diff import diff_snapshots

    out: Path = args.out or DEFAULT_OUT
    if args.format == "parquet" and args.output is None:
        return _usage_error(ConfigError("--format parquet needs --output PATH"))
    try:
        result = diff_snapshots(out, args.a, args.b, fields=args.fields, ignore=args.ignore)
    except ConfigError as exc:
        return _usage_error(exc)
    if args.format == "parquet":
        result.to_frame().write_parquet(args.output)
    elif args.format == "csv":
        with _text_output(args.output) as fh:
            fh.write(result.to_frame().write_csv())
    elif args.format == "json":
        data = orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode()
        with _text_output(args.output) as fh:
            fh.write(data + "\n")
    else:
        with _text_output(args.output) as fh:
            _print_diff(Console(file=fh, soft_wrap=True, markup=False), result, args.limit)
    if args.exit_code and result.has_differences:
        return EXIT_DIFFERENT
    return EXIT_OK


def _side_text(side: SnapshotSide) -> str:
    notes = [f"{side.rows:,} employees", f"schema {side.schema_version}"]
    if not side.complete:
        notes.append("INCOMPLETE")
    return f"{side.snapshot_id} ({', '.join(notes)})"


def _print_diff(console: Console, result: DiffResult, limit: int) -> None:
    console.print(f"A {_side_text(result.a)}\nB {_side_text(result.b)}")
    if not result.has_differences:
        console.print("no differences")
    kinds = Table(title="changes by kind (employees)", title_justify="left")
    kinds.add_column("kind")
    kinds.add_column("employees", justify="right")
    for kind, count in result.by_kind.items():
        if count:
            kinds.add_row(kind, f"{count:,}")
    fields = Table(title="changes by field", title_justify="left")
    fields.add_column("field")
    fields.add_column("changes", justify="right")
    for name, count in result.by_field.items():
        fields.add_row(name, f"{count:,}")
    if result.has_differences:
        console.print(kinds)
    if result.by_field:
        console.print(fields)
    changes = result.changes
    if changes.height and limit > 0:
        shown = Table(
            title=f"field changes (first {min(limit, changes.height):,} of {changes.height:,})",
            title_justify="left",
        )
        for column in ("employee_id", "kind", "field", "old", "new"):
            shown.add_column(column, overflow="fold")
        for row in changes.head(limit).iter_rows(named=True):
            shown.add_row(
                *(
                    "(null)" if row[c] is None else str(row[c])
                    for c in ("employee_id", "kind", "field", "old", "new")
                )
            )
        console.print(shown)
    if result.skipped:
        skipped = ", ".join(f"{c} ({why})" for c, why in result.skipped.items())
        console.print(f"not compared (schema differs): {skipped}")
    if result.compared_as_text:
        console.print(f"compared as text (types differ): {', '.join(result.compared_as_text)}")
    if result.ignored:
        console.print(f"ignored: {', '.join(result.ignored)}")
    for side in (result.a, result.b):
        if not side.complete:
            console.print(
                f"snapshot {side.snapshot_id} is incomplete: employees that failed to "
                "export look removed or added",
                style="yellow",
            )


# -- history --------------------------------------------------------------------------------------


def cmd_history(args: argparse.Namespace) -> int:
    from ._history import build_history

    out: Path = args.out or DEFAULT_OUT
    try:
        result = build_history(out, rebuild=args.rebuild)
    except ConfigError as exc:
        return _usage_error(exc)
    if args.json:
        sys.stdout.write(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
        return EXIT_OK
    console = Console(soft_wrap=True, markup=False)
    if not result.folded and not result.rebuilt:
        console.print(
            f"{result.path} is up to date: {len(result.snapshots)} snapshot(s), "
            f"{result.rows:,} versions ({result.current:,} current)"
        )
    else:
        how = f"rebuilt ({result.reason})" if result.rebuilt else "folded in incrementally"
        console.print(f"{result.path}: {how}")
        for snapshot_id in result.folded:
            console.print(f"  + {snapshot_id}")
        console.print(
            f"{result.opened:,} versions opened, {result.closed:,} closed; the table holds "
            f"{len(result.snapshots)} snapshot(s), {result.rows:,} versions "
            f"({result.current:,} current)"
        )
    if result.skipped_incomplete:
        console.print(f"incomplete snapshots left out: {', '.join(result.skipped_incomplete)}")
    return EXIT_OK


# -- check ----------------------------------------------------------------------------------------


_COUNT_LABELS = {
    "employees": "employees",
    "with_supervisor": "with a supervisor",
    "top_level": "without a supervisor (top level)",
    "dangling_supervisor": "dangling supervisor id",
    "self_supervised": "own supervisor",
    "on_cycle": "on a reporting cycle",
    "cycles": "cycles",
    "under_cycle": "reporting into a cycle",
    "active_reporting_to_terminated": "active, reporting to a terminated manager",
    "cross_company": "manager in another company",
    "max_depth": "levels (max depth)",
}


def cmd_check(args: argparse.Namespace) -> int:
    from ._orgcheck import check_org, write_reporting_lines
    from ._read import resolve_snapshot, snapshot_files

    out: Path = args.out or DEFAULT_OUT
    try:
        info = resolve_snapshot(out, args.snapshot)
    except ConfigError as exc:
        return _usage_error(exc)
    files = snapshot_files(out, info.snapshot_id)
    report = check_org(files, sample=max(args.limit, 0))
    lines_path = (
        write_reporting_lines(out, info.snapshot_id, files) if args.reporting_lines else None
    )
    code = EXIT_DIFFERENT if args.strict and report.problems else EXIT_OK
    if args.json:
        data = {
            "snapshot_id": info.snapshot_id,
            "complete": info.complete,
            "counts": report.counts,
            "depth_histogram": {str(k): v for k, v in report.depth_histogram.items()},
            "dangling": report.dangling.to_dicts(),
            "cycles": [
                {"length": n, "members": m}
                for m, n in zip(report.cycles, report.cycle_lengths, strict=True)
            ],
            "reporting_to_terminated": report.reporting_to_terminated.to_dicts(),
            "cross_company": report.cross_company.to_dicts(),
            "reporting_lines": None if lines_path is None else str(lines_path),
        }
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        return code
    _print_check(Console(soft_wrap=True, markup=False), info.snapshot_id, info.complete, report)
    if lines_path is not None:
        Console(soft_wrap=True, markup=False).print(f"reporting lines written to {lines_path}")
    return code


def _print_check(console: Console, snapshot_id: str, complete: bool, report: OrgReport) -> None:
    state = "" if complete else " (INCOMPLETE snapshot: missing employees look dangling)"
    counts = Table(title=f"org graph of snapshot {snapshot_id}{state}", title_justify="left")
    counts.add_column("check")
    counts.add_column("count", justify="right")
    for key, label in _COUNT_LABELS.items():
        counts.add_row(label, f"{report.counts[key]:,}")
    console.print(counts)
    if report.depth_histogram:
        levels = ", ".join(f"{k}: {v:,}" for k, v in report.depth_histogram.items())
        console.print(f"employees by level: {levels}")
    for title, frame in (
        ("dangling supervisor ids", report.dangling),
        ("active employees reporting to terminated managers", report.reporting_to_terminated),
        ("cross-company reporting lines", report.cross_company),
    ):
        if frame.height:
            table = Table(title=f"{title} (examples)", title_justify="left")
            for column in frame.columns:
                table.add_column(column, overflow="fold")
            for row in frame.iter_rows():
                table.add_row(*("(null)" if v is None else str(v) for v in row))
            console.print(table)
    if report.cycles:
        console.print("cycles (examples):")
        for members, length in zip(report.cycles, report.cycle_lengths, strict=True):
            chain = " -> ".join(members)
            more = f" -> ... ({length} employees)" if length > len(members) else f" -> {members[0]}"
            console.print(f"  {chain}{more}")
    if not report.problems:
        console.print("no problems found")
