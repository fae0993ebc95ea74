"""Background churn: the tenant keeps changing while a client reads it.

Hires insert new ids into the middle of the sorted listing (shifting later
offset pages forward), deletions remove ids (shifting them back), terminations
flip a status and updates move people between jobs, departments, locations,
managers and pay groups. Every event is a change record in the feed, stamped
with the real UTC clock, so a delta sync can catch up on it.

Events come at ``churn_rate`` per second on average from a background task, or
on demand through ``Simulator.churn``.

With ``feed_blind_fields`` set, a share (``churn_blind_share``) of the updates
changes one blind field and nothing else, so the feed misses them; the other
updates are the usual moves, which the feed misses too when all they change
happens to be blind. ``Simulator.blind_changes`` lists every miss.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from ._config import SimulatorConfig
from ._reference import (
    DEPARTMENTS,
    FIRST_NAMES,
    FLSA_STATUSES,
    LAST_NAMES,
    PAY_GROUPS_HOURLY,
    PAY_GROUPS_SALARIED,
    email_safe,
)
from ._store import EmployeeStore

__all__ = ["ChurnEngine"]

_log = logging.getLogger(__name__)
_TICK = 0.05  # seconds between background batches
_UPDATE_FIELDS = ("jobTitle", "departmentCode", "locationId", "supervisorId", "payGroupCode")
_JOB_TITLES = tuple(job.title for department in DEPARTMENTS for job in department.jobs)
_FLSA = tuple(sorted(FLSA_STATUSES))


class ChurnEngine:
    """Random hires, updates, terminations and deletions applied to a store."""

    def __init__(
        self, store: EmployeeStore, seed: int, config: Callable[[], SimulatorConfig]
    ) -> None:
        self._store = store
        self._random = random.Random(seed * 104729 + 3)
        self._config = config  # the current knobs: they change at runtime

    def apply(
        self, *, hires: int = 0, updates: int = 0, terminations: int = 0, deletions: int = 0
    ) -> list[int]:
        """Apply that many events now; the positions of their change records, in order."""
        positions: list[int] = []
        for count, event in (
            (hires, self.hire),
            (updates, self.update),
            (terminations, self.terminate),
            (deletions, self.delete),
        ):
            for _ in range(count):
                position = event()
                if position is not None:
                    positions.append(position)
        return positions

    def random_event(self, mix: tuple[float, float, float, float]) -> int | None:
        event = self._random.choices(
            (self.hire, self.update, self.terminate, self.delete), weights=mix
        )[0]
        return event()

    def hire(self) -> int:
        return self._store.hire()[1]

    def _pick(self, accept: Callable[[int], bool] = lambda index: True) -> int | None:
        for _ in range(20):
            index = self._store.random_index(self._random.random())
            if index is None:
                return None
            if accept(index):
                return index
        return None

    def update(self) -> int | None:
        config = self._config()
        blind = config.feed_blind_fields
        if blind and self._random.random() < config.churn_blind_share:
            return self._blind_update(blind)
        store = self._store
        index = self._pick()
        if index is None:
            return None
        record = store.record(index)
        tenant = store.tenant
        company = tenant.company_index[record["companyCode"]]
        field = self._random.choice(_UPDATE_FIELDS)
        changes: dict[str, object] = {}
        if field == "jobTitle":
            department = self._random.choice(DEPARTMENTS)
            job = self._random.choice(department.jobs)
            changes.update(jobTitle=job.title, jobCode=job.code, flsaStatus=job.flsa_status)
            changes["hourlyOrSalaried"] = "S" if job.flsa_status == "Exempt" else "H"
            changes["departmentCode"] = tenant.department_codes[company][
                1 + DEPARTMENTS.index(department)
            ]
        elif field == "departmentCode":
            changes[field] = self._random.choice(tenant.department_codes[company][1:])
        elif field == "locationId":
            changes[field] = self._random.choice(tenant.company_locations[company])
        elif field == "payGroupCode":
            salaried = record["hourlyOrSalaried"] == "S"
            groups = PAY_GROUPS_SALARIED if salaried else PAY_GROUPS_HOURLY
            changes[field] = self._random.choice(groups)
        else:
            supervisor = self._supervisor(index, record)
            if supervisor is None:
                return None
            changes[field] = supervisor
        return store.update(index, changes, blind=blind)

    def _supervisor(
        self, index: int, record: dict[str, Any], *, not_current: bool = False
    ) -> str | None:
        """A manager in the same company that keeps the tree a tree, None if none found."""
        store = self._store
        current = record["supervisorId"]
        supervisor = self._pick(
            lambda other: (
                other != index
                and store.record(other)["companyCode"] == record["companyCode"]
                and not store.would_cycle(index, other)
                and not (not_current and store.codec.id_of(other) == current)
            )
        )
        return None if supervisor is None else store.codec.id_of(supervisor)

    def _blind_update(self, blind: tuple[str, ...]) -> int | None:
        """Set one blind field of a random employee to a new value, and nothing else."""
        index = self._pick()
        if index is None:
            return None
        changes = self._new_value(self._random.choice(blind), index)
        if changes is None:
            return None
        return self._store.update(index, changes, blind=blind)

    def _new_value(self, field: str, index: int) -> dict[str, Any] | None:
        """``{field: a valid value other than the current one}`` plus what derives from it."""
        store = self._store
        tenant = store.tenant
        record = store.record(index)
        company = tenant.company_index[record["companyCode"]]
        current = record[field]
        value: str | None
        if field == "firstName":
            value = self._other(FIRST_NAMES, current)
        elif field == "lastName":
            value = self._other(LAST_NAMES, current)
        elif field == "emailAddress":
            local = f"{email_safe(record['firstName'])}.{email_safe(record['lastName'])}"
            value = f"{local}{self._random.randrange(1, 10**6)}@{tenant.domains[company]}"
        elif field == "employeeNumber":
            value = f"{self._random.randrange(1, 10**6):06d}"
        elif field == "jobTitle":
            value = self._other(_JOB_TITLES, current)
            return None if value is None else {field: value, "jobCode": tenant.job_code(value)}
        elif field == "departmentCode":
            value = self._other(tenant.department_codes[company][1:], current)
        elif field == "locationId":
            value = self._other(tenant.company_locations[company], current)
        elif field == "payGroupCode":
            salaried = record["hourlyOrSalaried"] == "S"
            value = self._other(PAY_GROUPS_SALARIED if salaried else PAY_GROUPS_HOURLY, current)
        elif field == "flsaStatus":
            value = self._other(_FLSA, current)
            basis = "S" if value == "Exempt" else "H"
            return None if value is None else {field: value, "hourlyOrSalaried": basis}
        elif field == "supervisorId":
            value = self._supervisor(index, record, not_current=True)
        else:  # pragma: no cover - BLINDABLE_FIELDS and this list are kept in step
            raise ValueError(f"churn cannot change {field!r}")
        return None if value is None or value == current else {field: value}

    def _other(self, options: Sequence[str], current: object) -> str | None:
        choices = [option for option in options if option != current]
        return self._random.choice(choices) if choices else None

    def terminate(self) -> int | None:
        store = self._store
        index = self._pick(lambda i: store.record(i)["employmentStatus"] != "Terminated")
        if index is None:
            return None
        return store.terminate(index, store.today())

    def delete(self) -> int | None:
        index = self._pick()
        if index is None:
            return None
        return self._store.delete(index)

    async def run(self, wake: asyncio.Event) -> None:
        """Apply ``churn_rate`` events per second until cancelled; ``wake`` signals a new rate."""
        config = self._config
        loop = asyncio.get_running_loop()
        last, carry = loop.time(), 0.0
        while True:
            rate = config().churn_rate
            if rate <= 0:
                wake.clear()
                await wake.wait()
                last, carry = loop.time(), 0.0
                continue
            await asyncio.sleep(_TICK)
            now = loop.time()
            carry += rate * (now - last)
            last = now
            due = int(carry)
            carry -= due
            for _ in range(due):
                try:
                    self.random_event(config().churn_mix)
                except Exception:  # a bug in one event must not stop the churn
                    _log.exception("churn event failed")
