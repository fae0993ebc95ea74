"""The change feed behind ``GET /personnel/v1/employee-changes``.

Every write and every churn event appends one record: who, what kind, when (UTC
wall clock, microseconds). Records are kept in parallel typed arrays rather than
dicts (a long churn run stays small), in time order, so a date window is two
binary searches.
"""

from __future__ import annotations

import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ._ids import IdCodec

__all__ = ["CHANGE_TYPES", "ChangeLog", "format_instant"]

CHANGE_TYPES: tuple[str, ...] = ("HIRE", "UPDATE", "TERMINATION", "DELETE")
_CODE = {name: code for code, name in enumerate(CHANGE_TYPES)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_instant(micros: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` for microseconds since the epoch (exact, no float)."""
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ChangeLog:
    """Append-only, time-ordered change records."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._at = array("q")  # microseconds since the epoch, non-decreasing
        self._kind = array("B")
        self._mixed = array("Q")  # the employee's mixed id (see _ids)
        self._last = 0

    def __len__(self) -> int:
        return len(self._at)

    def append(self, mixed: int, change_type: str) -> int:
        """Record a change now; returns its position. Time never goes backwards in the feed."""
        at = max(int(self._clock() * 1_000_000), self._last)
        self._last = at
        self._at.append(at)
        self._kind.append(_CODE[change_type])
        self._mixed.append(mixed)
        return len(self._at) - 1

    def span(self, start_micros: int, end_micros: int) -> tuple[int, int]:
        """Positions ``[lo, hi)`` of the records with ``start <= changedAt <= end``."""
        return bisect_left(self._at, start_micros), bisect_right(self._at, end_micros)

    def record(self, position: int) -> dict[str, Any]:
        """The API's JSON object for one change record."""
        at = self._at[position]
        stamp = format_instant(at)
        return {
            "employeeId": IdCodec.encode(self._mixed[position]),
            "changeType": CHANGE_TYPES[self._kind[position]],
            "changedDate": stamp[:10],
            "changedAt": stamp,
        }
