"""The id pager against the simulator: every id once, however good the size hint is."""

from __future__ import annotations

import pytest

from extractor._auth import TokenProvider
from extractor._config import DEFAULT_DIALECT, RetryPolicy, Timeouts
from extractor._http import ApiClient, open_pool
from extractor._pager import list_employee_ids
from extractor._rate import RateController
from extractor._stats import RequestStats
from extractor.simulator import Simulator, SimulatorConfig
from tests.conftest import API_KEY, CLIENT_ID, CLIENT_SECRET, CREDENTIALS


async def _listing(employees: int, expected: int | None) -> tuple[list[str], int, int, set[str]]:
    config = SimulatorConfig(
        employees=employees, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, api_key=API_KEY
    )
    async with (
        Simulator(config, env={}) as sim,
        open_pool(sim.base_url, Timeouts(), limit=32) as pool,
    ):
        controller = RateController()
        client = ApiClient(
            pool=pool,
            base_url=sim.base_url,
            credentials=CREDENTIALS,
            dialect=DEFAULT_DIALECT,
            tokens=TokenProvider(
                pool=pool,
                token_url=sim.base_url + DEFAULT_DIALECT.token_path,
                credentials=CREDENTIALS,
                retry=RetryPolicy(),
            ),
            controller=controller,
            retry=RetryPolicy(),
            stats=RequestStats(),
        )
        ids: list[str] = []
        totals: list[int] = []

        async def on_page(page: list[str]) -> None:
            ids.extend(page)

        result = await list_employee_ids(
            client,
            DEFAULT_DIALECT,
            on_page,
            concurrency=16,
            on_total=totals.append,
            expected_total=expected,
        )
        assert result.ids == len(ids)
        assert totals == [employees]
        return ids, result.pages, result.total_reported, set(sim.truth())


@pytest.mark.parametrize(
    ("employees", "expected", "pages"),
    [
        (1000, None, 6),  # page 1, pages 2-5, then page 6 is empty
        (1000, 1000, 6),  # pages 1-6 at once: nothing waits on page 1
        (1001, 1001, 7),
        (1000, 200, 6),  # the tenant grew since: the announced pages, then one empty
        (1000, 0, 6),
        (1000, 5000, 26),  # it shrank: the extra pages come back empty
        (150, 150, 2),
        (150, None, 2),
    ],
)
async def test_every_id_once_whatever_the_hint(
    employees: int, expected: int | None, pages: int
) -> None:
    ids, fetched, total, truth = await _listing(employees, expected)
    assert len(ids) == len(set(ids)) == employees
    assert set(ids) == truth
    assert total == employees
    assert fetched == pages
