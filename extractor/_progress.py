"""What the person running an export sees.

On a terminal: a live bar (done/total, rate, 429s, retries, ETA). Otherwise (cron,
Airflow): one plain log line every ``interval`` seconds. ``quiet``: nothing but
errors. The reporter only reads :class:`RunStats` and the controller's snapshot.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from typing import IO, Any

import anyio
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from ._rate import RateController
from ._stats import RunStats

__all__ = ["ProgressReporter", "summary_table"]

log = logging.getLogger("extractor")


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class _RateWindow:
    """Profiles per second over the last few seconds (steadier than an overall mean)."""

    def __init__(self, span: float = 5.0) -> None:
        self._span = span
        self._points: deque[tuple[float, int]] = deque()

    def add(self, now: float, value: int) -> float:
        self._points.append((now, value))
        while len(self._points) > 2 and now - self._points[0][0] > self._span:
            self._points.popleft()
        t0, v0 = self._points[0]
        return (value - v0) / (now - t0) if now > t0 else 0.0


class ProgressReporter:
    """Runs beside the export as a task; ``mode`` is auto, bar, log or quiet."""

    def __init__(
        self,
        stats: RunStats,
        controller: RateController | None,
        *,
        mode: str = "auto",
        interval: float = 10.0,
        stream: IO[str] | None = None,
    ) -> None:
        self.stats = stats
        self.controller = controller
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "log"
        self.mode = mode
        self.interval = interval
        self._window = _RateWindow()

    def line(self) -> dict[str, Any]:
        s = self.stats
        now = time.monotonic()
        done = s.fetched + s.skipped_done
        total = s.total_reported or s.listed or None
        rate = self._window.add(now, s.fetched)
        remaining = max(0, (total or 0) - done - s.vanished - s.failed)
        eta = remaining / rate if rate > 0 and total else None
        fields: dict[str, Any] = {
            "phase": s.phase,
            "done": done,
            "total": total,
            "rate": round(rate, 1),
            "throttled": s.requests.throttled,
            "retries": s.requests.retries,
            "failed": s.failed,
            "vanished": s.vanished,
            "eta_seconds": None if eta is None else round(eta),
        }
        if self.controller is not None:
            snap = self.controller.snapshot()
            fields["limit_rate"] = snap.get("rate")
            fields["limit_concurrency"] = snap.get("concurrency")
        return fields

    async def run(self) -> None:
        """Show progress until cancelled. A display failure is logged, never fatal to the run."""
        try:
            await self._run()
        except Exception:
            log.warning("progress display failed; the export goes on", exc_info=True)
            await anyio.sleep_forever()

    async def _run(self) -> None:
        if self.mode == "quiet":
            await anyio.sleep_forever()
        if self.mode == "log":
            # A first point at the start: the first line then has a rate and an ETA.
            self._window.add(time.monotonic(), self.stats.fetched)
            while True:
                await anyio.sleep(self.interval)
                self._log()
        console = Console(file=self.stream)
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.completed:,.0f}/{task.fields[total_text]}"),
            TextColumn("{task.fields[rate]:>7,.0f}/s"),
            TextColumn("429s {task.fields[throttled]:,}"),
            TextColumn("retries {task.fields[retries]:,}"),
            TextColumn("ETA {task.fields[eta]}"),
        )
        with Progress(*columns, console=console, transient=False, refresh_per_second=4) as bar:
            task = bar.add_task(
                "starting",
                total=None,
                total_text="?",
                rate=0.0,
                throttled=0,
                retries=0,
                eta="--:--",
            )
            try:
                while True:
                    f = self.line()
                    bar.update(
                        task,
                        description=f["phase"],
                        completed=f["done"],
                        total=f["total"],
                        total_text=f"{f['total']:,}" if f["total"] else "?",
                        rate=f["rate"],
                        throttled=f["throttled"],
                        retries=f["retries"],
                        eta=_fmt_eta(f["eta_seconds"]),
                    )
                    await anyio.sleep(0.25)
            finally:
                bar.refresh()

    def _log(self) -> None:
        f = self.line()
        total = f"{f['total']:,}" if f["total"] else "?"
        log.info(
            "%s: %s/%s employees, %.0f/s, 429s %d, retries %d, failed %d, ETA %s",
            f["phase"],
            f"{f['done']:,}",
            total,
            f["rate"],
            f["throttled"],
            f["retries"],
            f["failed"],
            _fmt_eta(f["eta_seconds"]),
            extra={"progress": f},
        )


def summary_table(manifest: dict[str, Any], *, committed: bool) -> Table:
    """The final summary, as a rich table."""
    counts = manifest.get("counts", {})
    requests = manifest.get("requests", {})
    command = "sync" if "sync" in manifest else "export"  # every sync manifest has one
    table = Table(title=f"ukg-extract {command}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    rows: list[tuple[str, str]] = [
        ("snapshot", str(manifest.get("snapshot_id", "-"))),
        ("status", "complete" if manifest.get("complete") else "INCOMPLETE"),
        ("committed", "yes" if committed else "no (rerun to resume)"),
    ]
    for name, info in (manifest.get("tables") or {}).items():
        rows.append((f"rows in {name}", f"{info.get('rows', 0):,}"))
    rows += [
        ("listed", f"{counts.get('listed', 0):,}"),
        ("fetched this run", f"{counts.get('fetched_this_run', 0):,}"),
        ("from checkpoint", f"{counts.get('resumed_from_checkpoint', 0):,}"),
        ("vanished (404)", f"{counts.get('vanished', 0):,}"),
        ("removed during run", f"{counts.get('removed_during_run', 0):,}"),
        ("failed", f"{counts.get('failed', 0):,}"),
        ("requests", f"{requests.get('requests', 0):,}"),
        ("429s", f"{requests.get('throttled', 0):,}"),
        ("retries", f"{requests.get('retries', 0):,}"),
        ("achieved rate", f"{requests.get('achieved_rate', 0):,.0f} req/s"),
        ("catch-up passes", str(len(manifest.get("catch_up", [])))),
        ("duration", f"{manifest.get('duration_seconds', 0):.1f} s"),
    ]
    for what, value in rows:
        table.add_row(what, value)
    return table
