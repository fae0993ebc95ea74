"""``GET /personnel/v1/employee-ids``: page rules, full coverage, id shape."""

from __future__ import annotations

import re

import pytest

from .helpers import Harness, StartSimulator

IDS = "/personnel/v1/employee-ids"


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ("per-page=201", "200"),
        ("per-page=1000", "200"),
        ("per-page=0", "per-page"),
        ("per-page=-5", "per-page"),
        ("per-page=abc", "per-page"),
        ("per-page=1.5", "per-page"),
        ("page=0", "page"),
        ("page=x", "page"),
        ("page=", "page"),
    ],
)
async def test_bad_paging_parameters_get_400_with_a_message(
    harness: Harness, query: str, mentions: str
) -> None:
    reply = await harness.client.get(f"{IDS}?{query}")
    assert reply.status == 400
    assert mentions in reply.json()["message"]


async def test_default_page_is_100_and_max_is_200(start_simulator: StartSimulator) -> None:
    harness = await start_simulator(employees=450)
    default = (await harness.client.get(IDS)).json()
    assert len(default["data"]) == 100
    assert default["total"] == 450
    biggest = (await harness.client.get(f"{IDS}?page=1&per-page=200")).json()
    assert len(biggest["data"]) == 200
    assert biggest["data"][:100] == default["data"]


async def test_paging_covers_every_id_exactly_once(start_simulator: StartSimulator) -> None:
    harness = await start_simulator(employees=1234)
    seen: list[str] = []
    for page in range(1, 8):
        body = (await harness.client.get(f"{IDS}?page={page}&per-page=200")).json()
        assert body["total"] == 1234
        seen += [item["employeeId"] for item in body["data"]]
    assert len(seen) == 1234
    assert len(set(seen)) == 1234
    assert seen == sorted(seen)  # ordered by employeeId
    assert set(seen) == set(harness.sim.truth())


async def test_past_the_end_is_an_empty_page_with_the_total(harness: Harness) -> None:
    body = (await harness.client.get(f"{IDS}?page=999&per-page=200")).json()
    assert body == {"data": [], "total": 250}
    huge = (await harness.client.get(f"{IDS}?page=999999999999")).json()
    assert huge == {"data": [], "total": 250}


async def test_ids_are_opaque_and_distinct_from_employee_numbers(harness: Harness) -> None:
    ids = await harness.client.all_ids()
    assert all(re.fullmatch(r"[0-9A-Z]{12}", employee_id) for employee_id in ids)
    truth = harness.sim.truth()
    numbers = {profile["employeeNumber"] for profile in truth.values()}
    assert not numbers & set(ids)
    assert all(re.fullmatch(r"\d{6,}", number) for number in numbers)
