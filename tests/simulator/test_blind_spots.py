"""``feed_blind_fields``: updates the change feed misses, and the ground truth that lists them."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from extractor.simulator import SimulatorConfig, run_in_thread

from .helpers import Harness, StartSimulator

EMPLOYEES = "/personnel/v1/employees"
CHANGES = "/personnel/v1/employee-changes"
FEED_KEYS = {"employeeId", "changeType", "changedDate", "changedAt"}


def _window() -> str:
    today = datetime.now(UTC).date()
    return f"startDate={today - timedelta(days=1)}&endDate={today + timedelta(days=1)}"


async def _feed(harness: Harness) -> list[dict[str, Any]]:
    reply = await harness.client.get(f"{CHANGES}?{_window()}&per-page=200")
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["total"] == len(body["data"])
    data: list[dict[str, Any]] = body["data"]
    return data


def _as_feed(event: dict[str, Any]) -> dict[str, Any]:
    """A ground-truth change as the feed shows it (without ``reported`` and ``fields``)."""
    return {key: value for key, value in event.items() if key in FEED_KEYS}


def _employee(harness: Harness, company: str = "CORP02") -> dict[str, Any]:
    return next(
        profile
        for profile in harness.sim.truth().values()
        if profile["companyCode"] == company and profile["employmentStatus"] == "Active"
    )


async def test_a_patch_of_only_blind_fields_is_missing_from_the_feed(
    start_simulator: StartSimulator,
) -> None:
    harness = await start_simulator(feed_blind_fields=("jobTitle", "locationId"))
    target = _employee(harness)
    path = f"{EMPLOYEES}/{target['employeeId']}"
    new_location = "REMOTE" if target["locationId"] != "REMOTE" else "SEA01"
    change = {"jobTitle": "Head of Blind Spots", "locationId": new_location}
    reply = await harness.client.call("PATCH", path, json=change)
    assert reply.json() == {"employeeId": target["employeeId"], "status": "updated"}

    profile = (await harness.client.get(path)).json()
    assert {key: profile[key] for key in change} == change
    details = (await harness.client.get(f"{path}/employment-details")).json()
    assert details["jobCode"] == "OTHER"  # derived fields change with their blind field
    assert await _feed(harness) == []
    [blind] = harness.sim.blind_changes()
    assert blind["employeeId"] == target["employeeId"]
    assert blind["changeType"] == "UPDATE"
    assert blind["fields"] == ["jobTitle", "locationId"]  # profile order
    assert blind["reported"] is False
    assert blind["changedDate"] == blind["changedAt"][:10]


def _value(target: dict[str, Any], key: str, value: str) -> str:
    if value == "<same>":
        return str(target[key])
    if value == "<other>":
        return {"Exempt": "Non-Exempt", "Non-Exempt": "Exempt"}[target[key]]
    return value


@pytest.mark.parametrize(
    ("change", "reported", "fields"),
    [
        # a blind and a non-blind field changed: reported, as a whole record
        (
            {"jobTitle": "Head of Blind Spots", "lastName": "Okafor-Smith"},
            True,
            ["lastName", "jobTitle"],
        ),
        # the non-blind field is written with the value it had: only blind fields changed
        ({"jobTitle": "Head of Blind Spots", "firstName": "<same>"}, False, ["jobTitle"]),
        # a write that changes nothing is reported, as before
        ({"jobTitle": "<same>"}, True, []),
        # flsaStatus is not blind; hourlyOrSalaried follows it
        ({"flsaStatus": "<other>"}, True, ["flsaStatus"]),
    ],
)
async def test_the_feed_reports_an_update_unless_it_changed_only_blind_fields(
    start_simulator: StartSimulator, change: dict[str, str], reported: bool, fields: list[str]
) -> None:
    harness = await start_simulator(feed_blind_fields=("jobTitle",))
    target = _employee(harness)
    body = {key: _value(target, key, value) for key, value in change.items()}
    reply = await harness.client.call("PATCH", f"{EMPLOYEES}/{target['employeeId']}", json=body)
    assert reply.status == 200, reply.body
    feed = await _feed(harness)
    [event] = harness.sim.changes()
    assert event["fields"] == fields
    assert event["reported"] is reported
    if reported:
        assert feed == [_as_feed(event)]  # the same record at the same instant
        assert set(feed[0]) == FEED_KEYS  # the feed's format does not change
        assert harness.sim.blind_changes() == []
    else:
        assert feed == []
        assert harness.sim.blind_changes() == [event]


async def test_blind_churn_updates_change_one_blind_field_each(
    start_simulator: StartSimulator,
) -> None:
    blind = ("jobTitle", "firstName", "supervisorId", "flsaStatus")
    harness = await start_simulator(feed_blind_fields=blind, churn_blind_share=1.0)
    before = harness.sim.truth()
    assert harness.sim.churn(updates=40) == []  # nothing the feed would show
    assert await _feed(harness) == []
    misses = harness.sim.blind_changes()
    assert len(misses) >= 35  # a pick may find no valid value (rare): no event then
    assert {miss["fields"][0] for miss in misses} == set(blind)
    after = harness.sim.truth()
    hits = Counter(miss["employeeId"] for miss in misses)
    for miss in (miss for miss in misses if hits[miss["employeeId"]] == 1):
        old, new = before[miss["employeeId"]], after[miss["employeeId"]]
        assert [key for key in old if old[key] != new[key]] == miss["fields"]
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {miss["employeeId"] for miss in misses}


async def test_with_the_default_share_churn_mixes_misses_and_reported_updates(
    start_simulator: StartSimulator,
) -> None:
    harness = await start_simulator(feed_blind_fields=("locationId",))
    before = harness.sim.truth()
    records = harness.sim.churn(updates=80)
    after = harness.sim.truth()
    history = harness.sim.changes()
    misses = harness.sim.blind_changes()
    assert 20 <= len(misses) <= 60
    assert all(miss["fields"] == ["locationId"] for miss in misses)
    assert [_as_feed(event) for event in history if event["reported"]] == records
    assert await _feed(harness) == records
    changed = {key for key in before if before[key] != after[key]}
    touched = {event["employeeId"] for event in history}
    assert changed <= touched
    missed_only = touched - {record["employeeId"] for record in records}
    assert missed_only  # employees whose only changes the feed never showed
    assert all(before[key]["locationId"] != after[key]["locationId"] for key in missed_only)
    assert all(
        {k for k in before[key] if before[key][k] != after[key][k]} == {"locationId"}
        for key in missed_only
    )


async def test_without_blind_fields_the_history_is_the_feed(harness: Harness) -> None:
    records = harness.sim.churn(hires=3, updates=20, terminations=3, deletions=3)
    history = harness.sim.changes()
    assert [_as_feed(event) for event in history] == records
    assert all(event["reported"] for event in history)
    assert harness.sim.blind_changes() == []
    kinds = {event["changeType"]: event["fields"] for event in history}
    assert kinds["HIRE"] is None
    assert kinds["DELETE"] is None
    assert kinds["TERMINATION"] == ["employmentStatus", "terminationDate"]


async def test_changes_since_a_moment_are_exactly_the_employees_changed_after_it(
    start_simulator: StartSimulator,
) -> None:
    harness = await start_simulator(feed_blind_fields=("payGroupCode",))
    harness.sim.churn(hires=5, updates=20, deletions=5)
    await asyncio.sleep(0.002)
    moment = datetime.now(UTC)
    await asyncio.sleep(0.002)
    later = harness.sim.churn(hires=2, updates=30, terminations=2, deletions=2)
    since = harness.sim.changes(since=moment)
    assert [_as_feed(event) for event in since if event["reported"]] == later
    assert harness.sim.blind_changes(since=moment) == [e for e in since if not e["reported"]]
    assert harness.sim.changes(until=moment) + since == harness.sim.changes()
    stamp = since[0]["changedAt"]  # strings as the feed writes them work too
    assert harness.sim.changes(since=stamp)[0] == since[0]
    assert harness.sim.changes(since=moment.replace(tzinfo=None)) == since  # naive = UTC

    reply = await harness.client.raw(
        "GET", "/_sim/truth", params={"kind": "changes", "since": moment.isoformat()}
    )
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/x-ndjson")
    assert [orjson.loads(line) for line in reply.body.splitlines()] == since
    unreported = await harness.client.raw(
        "GET", "/_sim/truth", params={"kind": "changes", "reported": "false"}
    )
    lines = [orjson.loads(line) for line in unreported.body.splitlines()]
    assert lines == harness.sim.blind_changes()
    assert lines


@pytest.mark.parametrize(
    "query",
    [
        {"kind": "changes", "since": "yesterday"},
        {"kind": "changes", "until": ""},
        {"kind": "changes", "reported": "no"},
        {"kind": "profiles", "since": "2024-01-01"},
        {"kind": "history"},
    ],
)
async def test_bad_ground_truth_queries_get_400(harness: Harness, query: dict[str, str]) -> None:
    reply = await harness.client.raw("GET", "/_sim/truth", params=query)
    assert reply.status == 400
    assert reply.json()["message"]


def test_bad_times_in_python_are_value_errors(harness: Harness) -> None:
    with pytest.raises(ValueError, match="since"):
        harness.sim.changes(since="last week")


async def test_blind_fields_are_a_runtime_knob(harness: Harness) -> None:
    target = _employee(harness)
    path = f"{EMPLOYEES}/{target['employeeId']}"
    reply = await harness.client.raw(
        "POST", "/_sim/knobs", json={"feed_blind_fields": ["jobTitle"]}
    )
    assert reply.status == 200
    assert reply.json()["feed_blind_fields"] == ["jobTitle"]
    assert harness.sim.config.feed_blind_fields == ("jobTitle",)
    await harness.client.call("PATCH", path, json={"jobTitle": "Blind Spot"})
    assert await _feed(harness) == []

    bad = await harness.client.raw(
        "POST", "/_sim/knobs", json={"feed_blind_fields": ["jobTitle", "workPhone"]}
    )
    assert bad.status == 400
    assert "'workPhone'" in bad.json()["message"]
    assert "locationId" in bad.json()["message"]  # the valid ones are listed
    assert harness.sim.config.feed_blind_fields == ("jobTitle",)

    harness.sim.set_knobs(feed_blind_fields=())
    await harness.client.call("PATCH", path, json={"jobTitle": "Seen Again"})
    assert [c["employeeId"] for c in await _feed(harness)] == [target["employeeId"]]
    assert len(harness.sim.blind_changes()) == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (("workPhone",), "choose from departmentCode, emailAddress"),
        (("employmentStatus",), "'employmentStatus' is not a profile field"),  # via terminations
        ("jobTitle", "list of profile field names"),
        ((1,), "list of profile field names"),
    ],
)
def test_blind_fields_are_validated(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatorConfig(feed_blind_fields=value)  # type: ignore[arg-type]


def test_blind_fields_are_kept_in_order_without_repeats() -> None:
    config = SimulatorConfig(feed_blind_fields=["locationId", "jobTitle", "locationId"])  # type: ignore[arg-type]
    assert config.feed_blind_fields == ("locationId", "jobTitle")
    with pytest.raises(ValueError, match="churn_blind_share"):
        SimulatorConfig(churn_blind_share=1.5)


def test_the_thread_handle_reads_the_ground_truth_too() -> None:
    config = SimulatorConfig(employees=50, feed_blind_fields=("locationId",), churn_blind_share=1)
    with run_in_thread(config, env={}) as sim:
        assert sim.churn(updates=5) == []
        misses = sim.blind_changes()
        assert [miss["fields"] for miss in misses] == [["locationId"]] * len(misses)
        assert misses
        assert sim.changes(reported=False) == misses
        assert sim.changes(until="2000-01-01") == []
