"""Background churn: the tenant keeps changing while a client reads it.

Hires insert new ids into the middle of the sorted listing (shifting later
offset pages forward), deletions remove ids (shifting them back), terminations
flip a status and updates move people between jobs, departments, locations,
managers and pay groups. Every event is a change record in the feed, stamped
with the real UTC clock, so a delta sync can catch up on it.

Events come at ``churn_rate`` per second on average from a background task, or
on demand through ``Simulator.churn``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from ._config import SimulatorConfig
from ._reference import DEPARTMENTS, PAY_GROUPS_HOURLY, PAY_GROUPS_SALARIED
from ._store import EmployeeStore

__all__ = ["ChurnEngine"]

_log = logging.getLogger(__name__)
_TICK = 0.05  # seconds between background batches
_UPDATE_FIELDS = ("jobTitle", "departmentCode", "locationId", "supervisorId", "payGroupCode")


class ChurnEngine:
    """Random hires, updates, terminations and deletions applied to a store."""

    def __init__(self, store: EmployeeStore, seed: int) -> None:
        self._store = store
        self._random = random.Random(seed * 104729 + 3)

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
            supervisor = self._pick(
                lambda other: (
                    other != index
                    and store.record(other)["companyCode"] == record["companyCode"]
                    and not store.would_cycle(index, other)
                )
            )
            if supervisor is None:
                return None
            changes[field] = store.codec.id_of(supervisor)
        return store.update(index, changes)

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

    async def run(self, config: Callable[[], SimulatorConfig], wake: asyncio.Event) -> None:
        """Apply ``churn_rate`` events per second until cancelled; ``wake`` signals a new rate."""
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
