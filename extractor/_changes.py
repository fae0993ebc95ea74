"""The ``employee-changes`` feed: what changed since a moment, read in the windows the
tenant accepts, page by page, each record once however often it is read.

The catch-up passes of an export read it for the time the run spanned, and a sync reads it
from the last snapshot's watermark. The feed is allowed to be missing (403, 404, 400: an
older tenant or a service account without the scope): the reader then notes why, returns
nothing from then on, and the caller falls back to listings only. Records also become rows
of the ``employee_changes`` table (:func:`change_row`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ._config import ApiDialect
from ._errors import ForbiddenError, NotFoundError, RequestError
from ._http import ApiClient

__all__ = ["CHANGE_SKEW", "ChangeFeed", "change_row"]

log = logging.getLogger(__name__)

#: Clock skew allowed between us and the tenant when reading the change feed.
CHANGE_SKEW = timedelta(minutes=5)


class ChangeFeed:
    """Reads change records, each once.

    Args:
        dialect: the API's paths and parameter names.
        page_size: records asked for per page.
        default_since: where :meth:`read` starts when not told (an export's start, less
            :data:`CHANGE_SKEW`).

    ``keys`` holds (employee id, time, change type) of every record returned so far;
    ``available`` turns False, with the reason in ``note``, once the tenant refuses the feed.
    """

    def __init__(self, dialect: ApiDialect, page_size: int, default_since: datetime) -> None:
        self._dialect = dialect
        self._page_size = page_size
        self._default_since = default_since
        self.keys: set[tuple[str, str, str]] = set()
        self.available = True
        self.note = ""

    async def read(self, client: ApiClient, since: datetime | None = None) -> list[dict[str, Any]]:
        """Records of changes at or after ``since`` not returned before, in feed order."""
        if not self.available:
            return []
        dialect = self._dialect
        cutoff = since if since is not None else self._default_since
        start = cutoff.date()
        end = (datetime.now(UTC) + CHANGE_SKEW).date()
        records: list[dict[str, Any]] = []
        try:
            for window_start, window_end in _windows(start, end, dialect.change_window_days):
                page = 1
                while True:
                    params = {
                        dialect.start_date_param: window_start.isoformat(),
                        dialect.end_date_param: window_end.isoformat(),
                        dialect.page_param: str(page),
                        dialect.per_page_param: str(self._page_size),
                    }
                    body = await client.get_json(
                        dialect.changes_path, params, what="employee-changes"
                    )
                    data = body.get("data") if isinstance(body, dict) else None
                    if not isinstance(data, list) or not data:
                        break
                    records.extend(r for r in data if isinstance(r, dict))
                    if len(data) < self._page_size:
                        break
                    page += 1
        except (ForbiddenError, NotFoundError, RequestError) as exc:
            self.available = False
            self.note = f"employee-changes unavailable ({exc}); catch-up used listings only"
            log.warning(self.note)
            return []
        fresh: list[dict[str, Any]] = []
        for record in records:
            employee_id = record.get("employeeId")
            if not isinstance(employee_id, str):
                continue
            when = str(record.get("changedAt") or record.get("changedDate") or "")
            if not _after(when, cutoff):
                continue
            key = (employee_id, when, str(record.get("changeType", "")))
            if key in self.keys:
                continue
            self.keys.add(key)
            fresh.append(record)
        return fresh


def change_row(record: dict[str, Any]) -> dict[str, Any]:
    """A change record as a row of ``employee_changes`` (its key: employee, time, type)."""
    employee_id = str(record.get("employeeId", ""))
    when = str(record.get("changedAt") or record.get("changedDate") or "")
    kind = str(record.get("changeType", ""))
    return {
        "changeId": f"{employee_id}|{when}|{kind}",
        "employeeId": employee_id,
        "changeType": kind,
        "changedDate": record.get("changedDate") or (when[:10] or None),
        "changedAt": when or None,
    }


def _after(when: str, cutoff: datetime) -> bool:
    """Is a change's timestamp (or date) at or after the cutoff? Unknown -> yes."""
    if not when:
        return True
    try:
        if len(when) == 10:
            return date.fromisoformat(when) >= cutoff.date()
        ts = datetime.fromisoformat(when.replace("Z", "+00:00"))
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return ts >= cutoff
    except ValueError:
        return True


def _windows(start: date, end: date, days: int) -> Iterable[tuple[date, date]]:
    """Split [start, end] (inclusive dates) into windows the tenant accepts."""
    span = max(1, days - 1)
    cursor = start
    while cursor <= end:
        stop = min(end, cursor + timedelta(days=span))
        yield cursor, stop
        cursor = stop + timedelta(days=1)
