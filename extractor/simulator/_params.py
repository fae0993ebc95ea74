"""Query-parameter parsing with the API's rules and 400 messages.

Paging: ``page`` is 1-based (default 1), ``per-page`` defaults to 100 and may not
exceed 200. Change-feed windows: ``startDate``/``endDate`` as ``YYYY-MM-DD`` or an
ISO-8601 datetime; a date-only ``endDate`` means the end of that day, so the
guide's ``startDate=2024-01-01&endDate=2024-01-31`` is exactly a 31-day window.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

from ._problems import bad_request

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Window",
    "instant_micros",
    "parse_instant",
    "parse_paging",
    "parse_window",
]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 200
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY = timedelta(days=1)
_ONE_MICRO = timedelta(microseconds=1)


def _positive_int(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    # str.isdigit accepts other scripts' digits; the API takes ASCII digits only.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12 or int(raw) < 1:
        raise bad_request(f"Query parameter '{name}' must be a positive integer, got {raw[:32]!r}")
    return int(raw)


def parse_paging(query: Mapping[str, str]) -> tuple[int, int]:
    """``(offset, per_page)`` from ``page`` and ``per-page``."""
    page = _positive_int(query, "page", 1)
    per_page = _positive_int(query, "per-page", DEFAULT_PAGE_SIZE)
    if per_page > MAX_PAGE_SIZE:
        raise bad_request(
            f"Query parameter 'per-page' must be between 1 and {MAX_PAGE_SIZE}, got {per_page}"
        )
    return (page - 1) * per_page, per_page


class Window:
    """An inclusive change-feed window in microseconds since the epoch."""

    __slots__ = ("end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end


def parse_instant(raw: str, name: str, *, end_of_day: bool) -> datetime:
    """A date (its first or, with ``end_of_day``, last microsecond) or an ISO-8601 datetime."""
    try:
        if _DATE_ONLY.fullmatch(raw):
            start = datetime.combine(date.fromisoformat(raw), datetime.min.time(), tzinfo=UTC)
            return start + _DAY - _ONE_MICRO if end_of_day else start
        moment = datetime.fromisoformat(raw)
        # A datetime without an offset is read as UTC, the feed's own clock.
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise bad_request(
            f"Query parameter '{name}' must be a date (YYYY-MM-DD) or an ISO-8601 datetime, "
            f"got {raw[:64]!r}"
        ) from None


def instant_micros(moment: datetime) -> int:
    """Microseconds since the epoch; a datetime without an offset is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_MICRO


def parse_window(query: Mapping[str, str], max_days: int) -> Window:
    """The ``startDate``/``endDate`` window; 400 when missing, malformed, reversed or too long."""
    raw_start, raw_end = query.get("startDate"), query.get("endDate")
    if not raw_start or not raw_end:
        raise bad_request("Query parameters 'startDate' and 'endDate' are both required")
    start = parse_instant(raw_start, "startDate", end_of_day=False)
    end = parse_instant(raw_end, "endDate", end_of_day=True)
    if end < start:
        raise bad_request("'endDate' must not be before 'startDate'")
    # Day one's start to day N's end is just under N days: the guide's Jan 1 - Jan 31 fits 31.
    if end - start > timedelta(days=max_days):
        raise bad_request(
            f"The date range may span at most {max_days} days; narrow 'startDate'/'endDate' "
            f"and page through smaller windows"
        )
    return Window(instant_micros(start), instant_micros(end))
