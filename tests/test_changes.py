"""The change feed's pure parts: date windows and timestamps against the cutoff."""

from __future__ import annotations

from datetime import UTC, date, datetime

from extractor._changes import _after, _windows, change_row


def test_windows_cover_the_range_once_within_the_limit() -> None:
    windows = list(_windows(date(2026, 1, 1), date(2026, 1, 20), 7))
    assert windows == [
        (date(2026, 1, 1), date(2026, 1, 7)),
        (date(2026, 1, 8), date(2026, 1, 14)),
        (date(2026, 1, 15), date(2026, 1, 20)),
    ]
    assert list(_windows(date(2026, 1, 1), date(2026, 1, 1), 1)) == [
        (date(2026, 1, 1), date(2026, 1, 1))
    ]
    assert list(_windows(date(2026, 1, 2), date(2026, 1, 1), 7)) == []


def test_after_compares_times_dates_and_keeps_what_it_cannot_read() -> None:
    cutoff = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert _after("2026-03-01T12:00:00Z", cutoff)
    assert not _after("2026-03-01T11:59:59Z", cutoff)
    assert _after("2026-03-01T13:00:00+01:00", cutoff)  # 12:00 UTC
    assert _after("2026-03-01T12:30:00", cutoff)  # naive: read as UTC
    assert _after("2026-03-01", cutoff)  # a date alone: same day counts
    assert not _after("2026-02-28", cutoff)
    assert _after("", cutoff)
    assert _after("not a time", cutoff)


def test_change_row_keys_a_record_by_employee_time_and_type() -> None:
    row = change_row(
        {"employeeId": "E1", "changedAt": "2026-03-01T12:00:00Z", "changeType": "hire"}
    )
    assert row == {
        "changeId": "E1|2026-03-01T12:00:00Z|hire",
        "employeeId": "E1",
        "changeType": "hire",
        "changedDate": "2026-03-01",
        "changedAt": "2026-03-01T12:00:00Z",
    }
