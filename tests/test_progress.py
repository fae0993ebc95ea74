import io
import logging

import anyio
import pytest
from rich.console import Console

from extractor._progress import ProgressReporter, summary_table
from extractor._stats import RunStats


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_bar_renders_on_a_terminal() -> None:
    stats = RunStats(total_reported=1000, fetched=250, phase="fetching")
    stream = _Terminal()
    reporter = ProgressReporter(stats, None, mode="auto", stream=stream)
    assert reporter.mode == "bar"
    with anyio.move_on_after(0.6):
        await reporter._run()  # the inner loop: a rendering error would escape here
    text = stream.getvalue()
    assert "fetching" in text
    assert "250/1,000" in text


async def test_log_lines_when_not_a_terminal() -> None:
    stats = RunStats(total_reported=10, fetched=5, phase="fetching")
    reporter = ProgressReporter(stats, None, mode="auto", interval=0.05, stream=io.StringIO())
    assert reporter.mode == "log"
    line = reporter.line()
    assert line["done"] == 5
    assert line["total"] == 10


def test_summary_table_has_the_counts() -> None:
    manifest = {
        "snapshot_id": "20240101T000000Z",
        "complete": True,
        "tables": {"employees": {"rows": 42}},
        "counts": {"listed": 42, "failed": 0},
        "requests": {"requests": 50, "throttled": 3, "retries": 4, "achieved_rate": 10.0},
    }
    out = io.StringIO()
    from rich.console import Console

    Console(file=out, width=100).print(summary_table(manifest, committed=True))
    text = out.getvalue()
    assert "20240101T000000Z" in text
    assert "42" in text


async def test_the_first_log_line_already_has_a_rate(caplog: pytest.LogCaptureFixture) -> None:
    stats = RunStats(total_reported=1000, fetched=0, phase="fetching")
    reporter = ProgressReporter(stats, None, mode="log", interval=0.2, stream=io.StringIO())

    async def work() -> None:
        await anyio.sleep(0.05)
        stats.fetched = 100

    with caplog.at_level(logging.INFO, logger="extractor"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(work)
            with anyio.move_on_after(0.3):
                await reporter._run()
    first = next(r for r in caplog.records if r.getMessage().startswith("fetching"))
    progress = first.progress  # type: ignore[attr-defined]
    assert progress["rate"] > 0
    assert progress["eta_seconds"] is not None


def test_summary_title_names_the_command() -> None:
    console = Console(file=io.StringIO(), width=120)
    console.print(summary_table({"mode": "full", "sync": {"full_reason": "x"}}, committed=True))
    console.print(summary_table({"mode": "full"}, committed=True))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "ukg-extract sync" in text
    assert "ukg-extract export" in text
