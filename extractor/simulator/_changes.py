"""The change feed behind ``GET /personnel/v1/employee-changes``, and its ground truth.

Every write and every churn event appends one record to the ``ChangeHistory``:
who, what kind, when (UTC wall clock, microseconds), which profile fields it set
to a new value and whether the feed reports it. The feed (``ChangeLog``) holds
the reported ones only: with ``feed_blind_fields`` set, an update that changes
nothing but blind fields is in the history and not in the feed.

Records are kept in parallel typed arrays rather than dicts (a long churn run
stays small), in time order, so a date window is two binary searches.
"""

from __future__ import annotations

import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from ._generate import PROFILE_KEYS
from ._ids import IdCodec

__all__ = ["CHANGE_TYPES", "ChangeHistory", "ChangeLog", "format_instant"]

CHANGE_TYPES: tuple[str, ...] = ("HIRE", "UPDATE", "TERMINATION", "DELETE")
_CODE = {name: code for code, name in enumerate(CHANGE_TYPES)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIELD_BIT = {key: 1 << bit for bit, key in enumerate(PROFILE_KEYS)}
# Hires and deletions change the whole record: their history records list no fields.
_WHOLE_RECORD = frozenset({"HIRE", "DELETE"})


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

    def append(self, mixed: int, change_type: str, *, at: int | None = None) -> int:
        """Record a change now (or at ``at`` microseconds); returns its position.

        Time never goes backwards in the feed.
        """
        if at is None:
            at = int(self._clock() * 1_000_000)
        at = max(at, self._last)
        self._last = at
        self._at.append(at)
        self._kind.append(_CODE[change_type])
        self._mixed.append(mixed)
        return len(self._at) - 1

    def at(self, position: int) -> int:
        """When the record at ``position`` happened, in microseconds since the epoch."""
        return self._at[position]

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


class ChangeHistory:
    """Every change, reported in the feed or not: the ground truth for tests.

    A record is the feed's record plus ``reported`` and ``fields``: the profile
    fields the change set to a new value, in profile order (empty for a write
    that changed nothing; None for hires and deletions, which change the whole
    record). A reported change has the same ``changedAt`` as its feed record.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._log = ChangeLog(clock)
        self._fields = array("L")  # bit i: PROFILE_KEYS[i] changed
        self._reported = array("B")

    def __len__(self) -> int:
        return len(self._log)

    def append(
        self, mixed: int, change_type: str, fields: Collection[str] = (), *, reported: bool
    ) -> int:
        """Record a change now; returns its position (``at`` gives its time)."""
        position = self._log.append(mixed, change_type)
        self._fields.append(sum(_FIELD_BIT[key] for key in set(fields)))
        self._reported.append(reported)
        return position

    def at(self, position: int) -> int:
        return self._log.at(position)

    def span(self, start_micros: int, end_micros: int) -> tuple[int, int]:
        """Positions ``[lo, hi)`` of the records with ``start <= changedAt <= end``."""
        return self._log.span(start_micros, end_micros)

    def reported(self, position: int) -> bool:
        return bool(self._reported[position])

    def record(self, position: int) -> dict[str, Any]:
        record = self._log.record(position)
        record["reported"] = bool(self._reported[position])
        if record["changeType"] in _WHOLE_RECORD:
            record["fields"] = None
        else:
            mask = self._fields[position]
            record["fields"] = [key for key in PROFILE_KEYS if mask & _FIELD_BIT[key]]
        return record
