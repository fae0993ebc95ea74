"""``python -m benchmarks [--quick] [--only S,..] [--contenders C,..]``: run, report, exit 0."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._deps import INSTALL_HINT, missing_modules
from ._scenarios import SCENARIOS, Mode, Scenario
from .contenders import CONTENDERS

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"
# A run longer than this is not repeated: its own length already averages out the noise.
REPEAT_CUTOFF = 30.0


def _names(text: str, known: Mapping[str, object], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})"
        )
    return names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark ukg-extract against other ways of exporting the same tenant.",
    )
    p.add_argument(
        "--quick", action="store_true", help="smaller tenants, one run each, no large/1M"
    )
    # The full set used to cut tenant sizes to fit its budget; it runs the issue's sizes now.
    p.add_argument("--issue-sizes", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--only", help="scenarios, comma-separated (see --list)")
    p.add_argument("--contenders", help="contenders, comma-separated (see --list)")
    p.add_argument(
        "--repeats",
        type=int,
        help="timed runs for a median where runs are repeated (full 3, quick 1)",
    )
    p.add_argument(
        "--results",
        type=Path,
        help=f"where reports go (default {RESULTS}; with --render, the JSON's own folder)",
    )
    p.add_argument("--keep-work", action="store_true", help="keep logs and outputs of every run")
    p.add_argument("--list", action="store_true", help="list scenarios and contenders, then exit")
    p.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="run nothing: write the report (markdown, chart) again from a results JSON",
    )
    return p


def _list() -> None:
    print("scenarios (full: the sizes issues 3 and 4 name):")
    for s in SCENARIOS.values():
        quick = f"{s.quick_employees:,}" if s.in_quick else "skipped"
        print(f"  {s.name:23} full {s.employees:>9,}  quick {quick:>9}  {s.description}")
    print("contenders:")
    for c in CONTENDERS.values():
        cap = f"stopped at {c.patience:.0f} s, run once" if c.patience else "no cap"
        if c.patience and c.quick_patience != c.patience:
            cap += " (quick: " + (f"{c.quick_patience:.0f} s)" if c.quick_patience else "none)")
        print(f"  {c.name:12} {c.label:24} {cap}")


def _render_again(path: Path, folder: Path) -> int:
    missing = missing_modules(())
    if missing:
        print(f"benchmarks: missing {', '.join(missing)}: {INSTALL_HINT}", file=sys.stderr)
        return 2
    from ._results_json import from_json

    results, machine, label, elapsed = from_json(path.read_text())
    _write_reports(results, machine, label, elapsed, folder, path.name[:10], latest=False)
    return 0


def _write_reports(
    results: list[Any],
    machine: dict[str, str],
    label: str,
    elapsed: float,
    folder: Path,
    date: str,
    *,
    latest: bool = True,
) -> None:
    """``<date>-<label>.md/.json/-rate.png`` (and ``latest.*``) in ``folder``; print the table."""
    from ._chart import draw_rate_chart
    from ._report import evaluate_targets, render_markdown
    from ._results_json import to_json

    targets = evaluate_targets(results)
    stem = f"{date}-{label}"
    folder.mkdir(parents=True, exist_ok=True)
    chart = draw_rate_chart(results, folder / f"{stem}-rate.png")
    markdown = render_markdown(results, targets, machine, mode=label, chart=chart, elapsed=elapsed)
    (folder / f"{stem}.md").write_text(markdown)
    if latest:
        (folder / "latest.md").write_text(markdown)
    raw = to_json(results, targets, machine, mode=label, elapsed=elapsed)
    (folder / f"{stem}.json").write_text(raw)
    if chart is not None and latest:
        shutil.copyfile(chart, folder / "latest-rate.png")
    print(markdown)
    print(f"benchmarks: report in {folder / (stem + '.md')}", file=sys.stderr)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        _list()
        return 0
    if args.render:
        return _render_again(args.render, args.results or args.render.parent)
    try:
        only = _names(args.only, SCENARIOS, "scenario") if args.only else None
        wanted = _names(args.contenders, CONTENDERS, "contender") if args.contenders else None
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.issue_sizes:
        print("benchmarks: --issue-sizes is the default now (ignored)", file=sys.stderr)
    mode: Mode = "quick" if args.quick else "full"
    scenarios: list[Scenario] = [
        s
        for s in SCENARIOS.values()
        if (only is None or s.name in only) and (only is not None or mode != "quick" or s.in_quick)
    ]
    used = {c for s in scenarios for c in (s.contenders if wanted is None else wanted)}
    missing = missing_modules(m for c in used for m in CONTENDERS[c].requires)
    if missing:
        print(
            f"benchmarks: missing dependencies: {', '.join(missing)}\n"
            f"install the benchmark requirements first:\n    {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 2

    # Imported only now: these need the benchmark-only dependencies checked above.
    from ._machine import describe_machine
    from ._suite import SuiteConfig, run_suite

    # Stopped from outside (SIGTERM, or Ctrl-C even when started in the background): unwind, so
    # that every simulator and contender this run started is stopped by its PID on the way out.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    repeats = args.repeats or (1 if mode == "quick" else 3)
    work = Path(tempfile.mkdtemp(prefix="ukg-bench-"))
    started = time.monotonic()
    print(f"benchmarks: {mode} mode, work folder {work}", file=sys.stderr, flush=True)
    try:
        results = run_suite(
            SuiteConfig(
                mode=mode,
                scenarios=scenarios,
                contenders=wanted,
                repeats=repeats,
                repeat_cutoff=REPEAT_CUTOFF,
                work_dir=work,
            )
        )
    finally:
        if args.keep_work:
            print(f"benchmarks: logs and outputs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    label = mode
    _write_reports(
        results,
        describe_machine(),
        label,
        elapsed,
        args.results or RESULTS,
        dt.date.today().isoformat(),
    )
    return 0
