"""The tenant's employees: a compact listing plus the few records that changed.

* The listing is an ``array('Q')`` of mixed ids (see ``_ids``) kept sorted, i.e.
  sorted by ``employeeId``. Offset pages are slices of it, so a hire inserted in the
  middle shifts every later page forward and a deletion shifts them back, exactly
  as a live tenant's offset pages move under a slow reader. 8 bytes per employee.
* Generated employees are recomputed from (seed, index) on every read; only
  changed ones have an entry in ``_overrides`` (the changed fields), and hires
  (indices from ``employees`` up) keep their whole record there.
* Deleted indices are remembered in a set, so their ids answer 404 afterwards.

Mutations here do no validation (``_writes`` does that for the HTTP API); each
one appends its record to the change history and, unless the feed is blind to
it (see ``update``), to the change feed.
"""

from __future__ import annotations

import time
from array import array
from bisect import bisect_left, insort
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime
from typing import Any

from ._changes import ChangeHistory, ChangeLog
from ._generate import EMPLOYMENT_KEYS, PROFILE_KEYS, RecordGenerator
from ._ids import ID_BITS, IdCodec
from ._problems import not_found
from ._reference import Tenant

__all__ = ["MASK", "SENSITIVE_KEYS", "EmployeeStore"]

MASK = "*****"
SENSITIVE_KEYS: tuple[str, ...] = ("dateOfBirth", "ethnicity", "gender")


_BUCKET_BITS = 8
# Employment-only fields that an update sets along with the profile field they follow.
_DERIVED_FROM = {"jobCode": "jobTitle", "hourlyOrSalaried": "flsaStatus"}
_PROFILE = frozenset(PROFILE_KEYS)


def _sorted_ids(codec: IdCodec, employees: int) -> array[int]:
    """The mixed ids of indices ``0..employees-1``, sorted, built without a list of them all.

    Mixed ids are uniform over 62 bits, so splitting them by their top bits into
    256 buckets and sorting bucket by bucket sorts everything while only one
    bucket's worth of Python ints exists at a time: a million employees start in
    about 1.5 s and never hold more than a few MB beyond the 8 MB result.
    """
    buckets = [array("Q") for _ in range(1 << _BUCKET_BITS)]
    appends = [bucket.append for bucket in buckets]
    shift = ID_BITS - _BUCKET_BITS
    for mixed in map(codec.mix, range(employees)):
        appends[mixed >> shift](mixed)
    listing = array("Q")
    for bucket in buckets:
        listing.extend(sorted(bucket))
    return listing


class EmployeeStore:
    """Current employees of one tenant, their records and their change log."""

    def __init__(
        self,
        *,
        seed: int,
        employees: int,
        companies: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenant = Tenant(companies)
        self.codec = IdCodec(seed)
        self.generator = RecordGenerator(seed, self.tenant, self.codec)
        self.changes = ChangeLog(clock)  # the feed: what employee-changes reports
        self.history = ChangeHistory(clock)  # every change, reported or not
        self._clock = clock
        self._base_count = employees
        self._next_index = employees
        self._deleted: set[int] = set()
        self._overrides: dict[int, dict[str, Any]] = {}
        self._listing = _sorted_ids(self.codec, employees)

    # ---- reads -----------------------------------------------------------------

    @property
    def count(self) -> int:
        """How many employees are listed now (deleted ones are not)."""
        return len(self._listing)

    def index_of(self, employee_id: str) -> int | None:
        """The index of a current employee's id; None for malformed, unknown or deleted ids."""
        index = self.codec.index_of(employee_id)
        if index is None or index >= self._next_index or index in self._deleted:
            return None
        return index

    def require(self, employee_id: str) -> int:
        index = self.index_of(employee_id)
        if index is None:
            raise not_found(f"Employee '{employee_id[:64]}' was not found")
        return index

    def record(self, index: int) -> dict[str, Any]:
        """The full current record (profile and employment fields) of a current employee."""
        if index >= self._base_count:
            return dict(self._overrides[index])
        record = self.generator.record(index)
        changed = self._overrides.get(index)
        if changed:
            record.update(changed)
        return record

    def profile(self, index: int, *, sensitive: bool) -> dict[str, Any]:
        """``GET /employees/{id}``: every profile key, sensitive ones masked unless allowed."""
        record = self.record(index)
        profile = {key: record[key] for key in PROFILE_KEYS}
        if not sensitive:
            for key in SENSITIVE_KEYS:
                if profile[key] is not None:
                    profile[key] = MASK
        return profile

    def employment_details(self, index: int) -> dict[str, Any]:
        record = self.record(index)
        record["originalHireDate"] = record["hireDate"]
        return {key: record[key] for key in EMPLOYMENT_KEYS}

    def page_ids(self, offset: int, limit: int) -> list[str]:
        """Ids of one offset page of the listing (ordered by employeeId)."""
        encode = IdCodec.encode
        return [encode(mixed) for mixed in self._listing[offset : offset + limit]]

    def indices(self) -> Iterator[int]:
        """Current employees in listing order (a snapshot: safe while the store changes)."""
        unmix = self.codec.unmix
        for mixed in array("Q", self._listing):
            yield unmix(mixed)

    def random_index(self, draw: float) -> int | None:
        """The current employee at a uniformly drawn position (``draw`` in [0, 1))."""
        if not self._listing:
            return None
        return self.codec.unmix(self._listing[int(draw * len(self._listing))])

    def supervisor_of(self, index: int) -> int | None:
        """The current supervisor's index, None at the top or when it points at nobody current."""
        changed = self._overrides.get(index)
        if changed is not None and "supervisorId" in changed:
            supervisor_id = changed["supervisorId"]
            return None if supervisor_id is None else self.index_of(supervisor_id)
        supervisor = self.generator.supervisor_index(index)
        if supervisor is None or supervisor in self._deleted:
            return None
        return supervisor

    def would_cycle(self, index: int, supervisor: int) -> bool:
        """Whether making ``supervisor`` the manager of ``index`` would close a loop."""
        current: int | None = supervisor
        for _ in range(self._next_index + 1):  # a bound, in case the data already had a loop
            if current is None:
                return False
            if current == index:
                return True
            current = self.supervisor_of(current)
        return True

    def today(self) -> str:
        """Today's date in UTC, the date churn and writes are stamped with."""
        return datetime.fromtimestamp(self._clock(), UTC).date().isoformat()

    # ---- mutations: each records one change ----------------------------------------

    def hire(self, record: dict[str, Any] | None = None) -> tuple[int, int]:
        """Add an employee; returns ``(index, change position)``.

        ``record`` holds every record key but ``employeeId`` (a POST); None hires a
        generated person (churn) with today's hire date.
        """
        index = self._next_index
        self._next_index += 1
        if record is None:
            record = self.generator.record(index)
            today = self.today()
            record.update(
                hireDate=today,
                lastHireDate=today,
                employmentStatus="Active",
                terminationDate=None,
            )
            supervisor = self.generator.supervisor_index(index)
            if supervisor is not None and supervisor in self._deleted:
                record["supervisorId"] = None
        mixed = self.codec.mix(index)
        record = {**record, "employeeId": IdCodec.encode(mixed)}
        self._overrides[index] = record
        insort(self._listing, mixed)
        return index, self._log(mixed, "HIRE")

    def update(
        self, index: int, changes: dict[str, Any], *, blind: Collection[str] = ()
    ) -> int | None:
        """Apply field changes; the position of the feed's UPDATE record, None if it has none.

        The feed is blind to an update when every profile field it sets to a new
        value is in ``blind`` (``jobCode`` counts as ``jobTitle``, ``hourlyOrSalaried``
        as ``flsaStatus``): the record changes, the history has the change
        (``reported: false``), the feed does not. An update that sets one field
        outside ``blind`` to a new value is reported as usual, and so is a write
        that changes no value at all (the feed reports whole records, not fields).
        """
        changed = self._changed_fields(index, changes)
        self._overrides.setdefault(index, {}).update(changes)
        mixed = self.codec.mix(index)
        if changed and changed <= set(blind):
            self.history.append(mixed, "UPDATE", changed, reported=False)
            return None
        return self._log(mixed, "UPDATE", changed)

    def terminate(self, index: int, termination_date: str) -> int:
        changes = {"employmentStatus": "Terminated", "terminationDate": termination_date}
        changed = self._changed_fields(index, changes)
        self._overrides.setdefault(index, {}).update(changes)
        return self._log(self.codec.mix(index), "TERMINATION", changed)

    def delete(self, index: int) -> int:
        """Remove an employee: gone from the listing, 404 afterwards.

        Direct reports keep the deleted supervisorId, as after a purge in a real
        tenant, until someone reassigns them.
        """
        mixed = self.codec.mix(index)
        position = bisect_left(self._listing, mixed)
        if position < len(self._listing) and self._listing[position] == mixed:
            del self._listing[position]
        self._deleted.add(index)
        self._overrides.pop(index, None)
        return self._log(mixed, "DELETE")

    def _changed_fields(self, index: int, changes: dict[str, Any]) -> set[str]:
        """The profile fields that ``changes`` would set to a new value."""
        current = self.record(index)
        changed: set[str] = set()
        for key, value in changes.items():
            if current.get(key) != value:
                field = _DERIVED_FROM.get(key, key)
                if field in _PROFILE:
                    changed.add(field)
        return changed

    def _log(self, mixed: int, change_type: str, fields: Collection[str] = ()) -> int:
        """Append to the history and to the feed, at the same instant; the feed position."""
        position = self.history.append(mixed, change_type, fields, reported=True)
        return self.changes.append(mixed, change_type, at=self.history.at(position))
