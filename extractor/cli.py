"""Command line: parse arguments, build a config object, call the library.

Exit codes (PRODUCT.md): 0 complete snapshot committed; 1 run failed, nothing
committed, state kept for resume; 2 usage or configuration error; 3 committed
with ``--allow-partial`` but incomplete.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
from rich.console import Console
from rich.table import Table

from . import __version__
from ._cli_analysis import add_parsers as add_analysis_parsers
from ._config import ExportConfig, load_config
from ._errors import ConfigError, ExtractError
from ._logging import JsonFormatter, configure_logging
from ._pipeline import ExportResult, export
from ._progress import ProgressReporter, summary_table
from ._rate import RateController
from ._snapshot import list_snapshots
from ._stats import RunStats
from ._sync import SyncOptions, sync

__all__ = ["main"]

log = logging.getLogger("extractor")
T = TypeVar("T")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (measured faster on the fetch hot path)."""
    # Arrow's default allocator (mimalloc) held 30-60 MB more at the peak of a 1M-employee
    # export than the system one; the extractor's buffers are few and large.
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, help="output folder (default: ./output)")
    where = p.add_argument_group("tenant (secrets come from the environment only)")
    where.add_argument("--base-url", help="tenant host, e.g. https://service.ultipro.com")
    where.add_argument("--region", help="us | ca | eu, instead of --base-url")
    where.add_argument("--config", type=Path, help="TOML config file (or UKG_EXTRACT_CONFIG)")
    what = p.add_argument_group("what to export")
    what.add_argument(
        "--employment-details",
        action="store_true",
        default=None,
        help="also export /employment-details per employee (same rate budget)",
    )
    pace = p.add_argument_group("pace (the limit is discovered; these are ceilings)")
    pace.add_argument("--max-rate", type=float, help="never exceed this many requests/s")
    pace.add_argument("--max-concurrency", type=int, help="never exceed this many in flight")
    run = p.add_argument_group("run")
    run.add_argument(
        "--allow-partial",
        action="store_true",
        default=None,
        help="commit even if some employees failed (exit code 3)",
    )
    run.add_argument(
        "--fresh",
        action="store_true",
        default=None,
        help="discard an unfinished snapshot instead of resuming it",
    )
    run.add_argument(
        "--checkpoint-interval", type=float, help="seconds between checkpoints (default 30)"
    )
    run.add_argument("--catch-up-passes", type=int, help="max catch-up passes (default 3)")
    out = p.add_argument_group("output")
    out.add_argument("--quiet", "-q", action="store_true", help="only warnings and errors")
    out.add_argument(
        "--progress",
        choices=["auto", "bar", "log", "quiet"],
        help="live bar on a terminal, log lines otherwise (auto)",
    )
    out.add_argument("--log-format", choices=["text", "json"], help="json for log shippers")
    out.add_argument(
        "--log-interval", type=float, help="seconds between progress log lines (default 10)"
    )


def _config_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> ExportConfig:
    flags = {
        "base_url": args.base_url,
        "region": args.region,
        "out": args.out,
        "employment_details": args.employment_details,
        "max_rate": args.max_rate,
        "max_concurrency": args.max_concurrency,
        "allow_partial": args.allow_partial,
        "fresh": args.fresh,
        "checkpoint_interval": args.checkpoint_interval,
        "catch_up_passes": args.catch_up_passes,
        "progress": "quiet" if args.quiet else args.progress,
        "log_format": args.log_format,
        "log_interval": args.log_interval,
    }
    return load_config(flags, env if env is not None else dict(os.environ), args.config)


OnStart = Callable[[RunStats, RateController], None]
Work = Callable[[RunStats, OnStart], Awaitable[ExportResult]]


async def _with_progress(config: ExportConfig, work: Work) -> ExportResult:
    """Run one export or sync round with its progress display."""
    stats = RunStats()
    try:
        async with anyio.create_task_group() as tg:

            def on_start(stats: RunStats, controller: RateController) -> None:
                reporter = ProgressReporter(
                    stats, controller, mode=config.progress, interval=config.log_interval
                )
                tg.start_soon(reporter.run)

            try:
                result = await work(stats, on_start)
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # the display task never fails the run: the error is the work's own
        raise group.exceptions[0] from None
    return result


async def _until_signal(config: ExportConfig, work: Work) -> ExportResult:
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # finish cleanly: checkpoint what is written, exit 1, a rerun resumes
        loop.add_signal_handler(sig, lambda: main.cancel() if main else None)
    try:
        return await _with_progress(config, work)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _export_with_progress(config: ExportConfig) -> ExportResult:
    return await _until_signal(
        config, lambda stats, on_start: export(config, stats=stats, on_start=on_start)
    )


def cmd_export(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    configure_logging(
        log_format=config.log_format,
        level=logging.WARNING if config.progress == "quiet" else logging.INFO,
        secrets=config.credentials.secrets,
    )
    try:
        result = run_async(_export_with_progress(config))
    except asyncio.CancelledError:
        log.error("interrupted; written work is kept: rerun the same command to resume")
        return EXIT_FAILED
    return report_result(result, config)


def _duration(text: str) -> float:
    """Seconds from ``900``, ``900s``, ``15m``, ``2h`` or ``1d``."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    raw = text.strip().lower()
    scale = units.get(raw[-1:])
    number = raw[:-1] if scale is not None else raw
    try:
        value = float(number) * (scale or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: use seconds (900) or 900s, 15m, 2h, 1d"
        ) from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: a duration must be 0 or more")
    return value


def _days_or_never(text: str) -> float | None:
    if text.strip().lower() in ("never", "off", "0"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of days, or never") from None


def _add_sync_arguments(p: argparse.ArgumentParser) -> None:
    _add_export_arguments(p)
    s = p.add_argument_group("sync")
    s.add_argument(
        "--base", metavar="SNAPSHOT_ID", help="start from this snapshot (default: latest complete)"
    )
    s.add_argument(
        "--full-if-missing",
        action="store_true",
        help="run a full export when there is no complete snapshot yet",
    )
    s.add_argument(
        "--overlap",
        type=_duration,
        default=900.0,
        help="read the change feed this far before the watermark (default 15m)",
    )
    s.add_argument(
        "--verify-sample",
        type=int,
        default=100,
        metavar="K",
        help="refetch K unchanged employees and compare them with the carried rows (default 100)",
    )
    s.add_argument(
        "--max-miss-rate",
        type=float,
        default=0.02,
        help="above this sampled miss rate, refetch everyone in the same round (default 0.02)",
    )
    s.add_argument(
        "--full-every",
        type=_days_or_never,
        default=7.0,
        metavar="DAYS",
        help="full export when the last full snapshot is older than DAYS (default 7; 0 or "
        "'never': never)",
    )
    s.add_argument("--sample-seed", type=int, help="seed for the verify sample (reproducible runs)")
    s.add_argument(
        "--watch",
        type=_duration,
        metavar="INTERVAL",
        help="keep syncing every INTERVAL (e.g. 15m) until SIGTERM",
    )


def _sync_options(args: argparse.Namespace) -> SyncOptions:
    return SyncOptions(
        base=args.base,
        full_if_missing=args.full_if_missing,
        overlap=args.overlap,
        verify_sample=args.verify_sample,
        max_miss_rate=args.max_miss_rate,
        full_every_days=args.full_every,
        sample_seed=args.sample_seed,
    )


def cmd_sync(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    options = _sync_options(args)
    configure_logging(
        log_format=config.log_format,
        level=logging.WARNING if config.progress == "quiet" else logging.INFO,
        secrets=config.credentials.secrets,
    )

    def work(stats: RunStats, on_start: OnStart) -> Awaitable[ExportResult]:
        return sync(config, options, stats=stats, on_start=on_start)

    if args.watch is not None:
        return run_async(_watch(config, work, args.watch))
    try:
        result = run_async(_until_signal(config, work))
    except asyncio.CancelledError:
        log.error("interrupted; written work is kept: rerun the same command to resume")
        return EXIT_FAILED
    return report_result(result, config)


#: Rounds in a row that may fail before ``--watch`` gives up.
WATCH_MAX_FAILURES = 3


async def _watch(config: ExportConfig, work: Work, interval: float) -> int:
    """Sync every ``interval`` seconds until SIGTERM/SIGINT.

    A signal between rounds exits at once; during a round it cancels the round, which
    checkpoints what it wrote (the next start resumes it). Either way the exit code is 0.
    A round that fails is logged and retried at the next interval; after
    ``WATCH_MAX_FAILURES`` failures in a row the watch exits 1.
    """
    stop = anyio.Event()
    current: list[anyio.CancelScope] = []

    def on_signal() -> None:
        stop.set()
        for scope in current:
            scope.cancel()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    failures = 0
    try:
        while not stop.is_set():
            began = time.monotonic()
            with anyio.CancelScope() as scope:
                current.append(scope)
                result = await _with_progress(config, work)
            current.clear()
            if scope.cancelled_caught:
                log.info("stopped during a round; its written work resumes on the next start")
                break
            report_result(result, config)
            failures = 0 if result.committed else failures + 1
            if failures >= WATCH_MAX_FAILURES:
                log.error("%d rounds in a row failed; stopping the watch", failures)
                return EXIT_FAILED
            with anyio.move_on_after(max(0.0, interval - (time.monotonic() - began))):
                await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("watch stopped")
    return EXIT_OK


def report_result(result: ExportResult, config: ExportConfig) -> int:
    if config.progress != "quiet" and config.log_format == "text":
        console = Console(file=sys.stderr)
        console.print(summary_table(result.manifest, committed=result.committed))
    if result.error:
        log.error("%s", result.error, extra={"snapshot_id": result.snapshot_id})
    if result.committed:
        where = config.out / "employees" / f"snapshot_id={result.snapshot_id}"
        log.info(
            "committed snapshot %s (%s)",
            result.snapshot_id,
            "complete" if result.complete else f"INCOMPLETE: {len(result.failed)} failed",
            extra={"snapshot_id": result.snapshot_id, "path": str(where)},
        )
        print(where)
    if result.failed and not result.committed:
        shown = sorted(result.failed.items())[:5]
        for employee_id, reason in shown:
            log.error("failed %s: %s", employee_id, reason)
    return result.exit_code


def cmd_snapshots(args: argparse.Namespace) -> int:
    out: Path = args.out_option or args.out or Path("output")
    if not out.is_dir():
        raise ConfigError(f"no output folder at {out}: pass the --out of your exports")
    snapshots = list_snapshots(out)
    if args.json:
        import orjson

        sys.stdout.write(
            orjson.dumps([s.manifest for s in snapshots], option=orjson.OPT_INDENT_2).decode()
            + "\n"
        )
        return EXIT_OK
    table = Table(title=f"snapshots in {out}", title_justify="left")
    for column in ("snapshot_id", "mode", "status", "employees", "started", "duration"):
        table.add_column(column, justify="right" if column == "employees" else "left")
    for s in snapshots:
        m = s.manifest
        rows = (m.get("tables") or {}).get("employees", {}).get("rows", 0)
        table.add_row(
            s.snapshot_id,
            str(m.get("mode", "?")),
            "complete" if m.get("complete") else "incomplete",
            f"{rows:,}",
            str(m.get("started_at", "")),
            f"{m.get('duration_seconds', 0):.0f} s",
        )
    # Off a terminal (a pipe, a log) rich would cut the table to 80 columns, snapshot ids
    # included: lay it out as wide as it needs.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table if snapshots else f"no committed snapshots in {out}")
    return EXIT_OK


def cmd_simulate(argv: Sequence[str]) -> int:
    # Built here, not in build_parser: the simulator (aiohttp's server) is not imported by
    # the commands that talk to a tenant.
    from .simulator import cli as sim_cli

    parser = argparse.ArgumentParser(
        prog="ukg-extract simulate", description="Run the built-in UKG Pro simulator on loopback."
    )
    sim_cli.add_arguments(parser)
    return sim_cli.run(parser.parse_args(argv))


def cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(args)


_ENVIRONMENT_AND_EXIT_CODES = """\
environment:
  UKG_CLIENT_ID, UKG_CLIENT_SECRET   the service account (client credentials)
  UKG_API_KEY                        the tenant's US-API-Key
  UKG_BASE_URL                       the tenant's host, unless --base-url or --region

exit codes:
  0  committed, complete
  1  failed: nothing committed; rerun the same command to resume
  2  usage: bad flags, config file, environment or output folder
  3  committed without some employees (--allow-partial)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ukg-extract",
        description="Bulk-export UKG Pro employees into partitioned Parquet snapshots.",
    )
    parser.add_argument("--version", action="version", version=f"ukg-extract {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "export",
        help="full snapshot of every employee",
        description="Export every employee of the tenant into a new Parquet snapshot.",
        epilog=_ENVIRONMENT_AND_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_export_arguments(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "sync",
        help="new complete snapshot from the latest one plus changes",
        description="A new complete snapshot: the latest one plus what changed since.",
        epilog=_ENVIRONMENT_AND_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_sync_arguments(p)
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("snapshots", help="list committed snapshots")
    p.add_argument("out", nargs="?", type=Path, help="output folder (default: ./output)")
    p.add_argument(
        "--out", dest="out_option", type=Path, help="the same, as the other commands take it"
    )
    p.add_argument("--json", action="store_true", help="print the manifests as JSON")
    p.set_defaults(func=cmd_snapshots)

    add_analysis_parsers(sub)  # diff, history, check

    # Listed for --help only: main() hands `simulate ...` to cmd_simulate before parsing.
    sub.add_parser("simulate", help="run the built-in UKG Pro simulator on loopback")

    p = sub.add_parser("demo", help="simulator + export in one go (what `make run` does)")
    p.add_argument("--out", type=Path, default=Path("output"), help="output folder")
    p.add_argument("--employees", type=int, default=20_000, help="simulated tenant size")
    p.add_argument("--rate-limit", type=float, default=1500.0, help="hidden limit, req/s")
    p.add_argument("--latency-ms", type=float, default=10.0, help="simulated latency")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["simulate"]:
        return cmd_simulate(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    as_json = getattr(args, "log_format", None) == "json"
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE, as_json=as_json)
    except ExtractError as exc:
        return _fail(str(exc), EXIT_FAILED, as_json=as_json)
    except KeyboardInterrupt:
        if not as_json:
            print("ukg-extract: interrupted", file=sys.stderr)
            return EXIT_FAILED
        return _fail("interrupted", EXIT_FAILED, as_json=True)
    return code


def _fail(message: str, code: int, *, as_json: bool) -> int:
    """The last line of a failed command, on stderr: JSON too when --log-format json."""
    if as_json:
        record = logging.makeLogRecord(
            {
                "name": "extractor",
                "levelname": "ERROR",
                "levelno": logging.ERROR,
                "msg": message,
                "exit_code": code,
            }
        )
        print(JsonFormatter().format(record), file=sys.stderr)
    else:
        print(f"ukg-extract: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
