"""``GET /personnel/v1/employee-changes``: fed by writes and churn, window-limited, paged."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from .helpers import Harness, StartSimulator

CHANGES = "/personnel/v1/employee-changes"
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def _window(days_back: int = 1, days_ahead: int = 1) -> str:
    today = datetime.now(UTC).date()
    start = today - timedelta(days=days_back)
    end = today + timedelta(days=days_ahead)
    return f"startDate={start}&endDate={end}"


async def test_the_feed_records_every_write_in_order(harness: Harness) -> None:
    client = harness.client
    created = await client.call(
        "POST",
        "/personnel/v1/employees",
        json={
            "firstName": "Ada",
            "lastName": "Lovelace",
            "emailAddress": "ada@example.com",
            "hireDate": _today(),
            "companyCode": "CORP03",
        },
    )
    new_id = created.json()["employeeId"]
    assert (
        await client.call(
            "PATCH", f"/personnel/v1/employees/{new_id}", json={"jobTitle": "Analyst"}
        )
    ).status == 200
    terminated = await client.call(
        "POST",
        f"/personnel/v1/employees/{new_id}/terminations",
        json={"terminationDate": _today(), "terminationReasonCode": "CONTRACT_END"},
    )
    assert terminated.status == 200

    body = (await client.get(f"{CHANGES}?{_window()}")).json()
    assert body["total"] == 3
    assert [(c["employeeId"], c["changeType"]) for c in body["data"]] == [
        (new_id, "HIRE"),
        (new_id, "UPDATE"),
        (new_id, "TERMINATION"),
    ]
    for change in body["data"]:
        assert set(change) == {"employeeId", "changeType", "changedDate", "changedAt"}
        assert STAMP.fullmatch(change["changedAt"])
        assert change["changedDate"] == change["changedAt"][:10] == _today()
    stamps = [change["changedAt"] for change in body["data"]]
    assert stamps == sorted(stamps)


async def test_failed_writes_are_not_changes(harness: Harness) -> None:
    reply = await harness.client.call("POST", "/personnel/v1/employees", json={"firstName": "X"})
    assert reply.status == 400
    assert (await harness.client.get(f"{CHANGES}?{_window()}")).json() == {"data": [], "total": 0}


async def test_the_guides_31_day_window_is_allowed_and_one_more_day_is_not(
    harness: Harness,
) -> None:
    ok = await harness.client.get(f"{CHANGES}?startDate=2024-01-01&endDate=2024-01-31")
    assert ok.status == 200
    assert ok.json() == {"data": [], "total": 0}
    too_long = await harness.client.get(f"{CHANGES}?startDate=2024-01-01&endDate=2024-02-01")
    assert too_long.status == 400
    assert "31 days" in too_long.json()["message"]


async def test_the_window_limit_is_a_knob(start_simulator: StartSimulator) -> None:
    harness = await start_simulator(change_window_days=7)
    ok = await harness.client.get(f"{CHANGES}?startDate=2024-01-01&endDate=2024-01-07")
    assert ok.status == 200
    too_long = await harness.client.get(
        f"{CHANGES}?startDate=2024-01-01T00:00:00Z&endDate=2024-01-08T00:00:01Z"
    )
    assert too_long.status == 400
    assert "7 days" in too_long.json()["message"]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "startDate=2024-01-01",
        "endDate=2024-01-01",
        "startDate=2024-01-10&endDate=2024-01-01",
        "startDate=yesterday&endDate=2024-01-01",
        "startDate=2024-13-01&endDate=2024-12-01",
        "startDate=2024-01-01&endDate=2024-01-02&per-page=500",
        "startDate=2024-01-01&endDate=2024-01-02&page=0",
    ],
)
async def test_bad_windows_get_400(harness: Harness, query: str) -> None:
    reply = await harness.client.get(f"{CHANGES}?{query}")
    assert reply.status == 400
    assert reply.json()["message"]


async def test_datetimes_with_offsets_bound_the_window_exactly(harness: Harness) -> None:
    records = harness.sim.churn(updates=4)
    instants = [
        datetime.strptime(r["changedAt"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        for r in records
    ]
    start, end = instants[1], instants[2]
    new_york = timezone(timedelta(hours=-5))
    params = {"startDate": start.astimezone(new_york).isoformat(), "endDate": end.isoformat()}
    body = (await harness.client.get(CHANGES, params=params)).json()
    expected = [r for r, at in zip(records, instants, strict=True) if start <= at <= end]
    assert body["data"] == expected
    assert records[1] in expected
    assert records[2] in expected


async def test_a_date_only_end_date_covers_the_whole_day(harness: Harness) -> None:
    harness.sim.churn(hires=1, terminations=1)
    today = _today()
    body = (await harness.client.get(f"{CHANGES}?startDate={today}&endDate={today}")).json()
    assert body["total"] == 2


async def test_the_feed_pages_like_the_listing(harness: Harness) -> None:
    records = harness.sim.churn(hires=2, updates=3)
    seen = []
    for page in (1, 2, 3, 4):
        body = (await harness.client.get(f"{CHANGES}?{_window()}&page={page}&per-page=2")).json()
        assert body["total"] == 5
        seen += body["data"]
    assert seen == records
