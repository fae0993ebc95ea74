"""TokenProvider against the simulator: single flight, refresh on a stale token."""

from __future__ import annotations

import asyncio

import pytest

from extractor._auth import TokenProvider
from extractor._config import Credentials, RetryPolicy, Timeouts
from extractor._errors import AuthError
from extractor._http import open_pool
from extractor._wire import ConnectionPool
from extractor.simulator import Simulator, SimulatorConfig
from tests.conftest import API_KEY, CLIENT_ID, CLIENT_SECRET, CREDENTIALS


def _config(**knobs: float) -> SimulatorConfig:
    return SimulatorConfig(
        employees=10, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, api_key=API_KEY, **knobs
    )


def provider(
    pool: ConnectionPool, sim: Simulator, credentials: Credentials = CREDENTIALS
) -> TokenProvider:
    return TokenProvider(
        pool=pool,
        token_url=sim.base_url + "/authentication/v1/token",
        credentials=credentials,
        retry=RetryPolicy(),
    )


def token_requests(sim: Simulator) -> int:
    return sum(sim.stats()["by_endpoint"].get("token", {}).values())


async def test_one_refresh_however_many_workers_wait() -> None:
    async with (
        Simulator(_config(latency_ms=20), env={}) as sim,
        open_pool(sim.base_url, Timeouts(), limit=8) as pool,
    ):
        tokens = provider(pool, sim)
        first = await asyncio.gather(*(tokens.get() for _ in range(50)))
        assert len(set(first)) == 1
        assert token_requests(sim) == 1
        # fifty workers all saw a 401 with the same token: one refresh between them
        second = await asyncio.gather(*(tokens.refresh(stale=first[0]) for _ in range(50)))
        assert len(set(second)) == 1
        assert second[0] != first[0]
        assert token_requests(sim) == 2
        # a worker reporting an already-replaced token does not trigger another
        assert await tokens.refresh(stale=first[0]) == second[0]
        assert token_requests(sim) == 2
        assert CLIENT_SECRET not in repr(tokens)


async def test_refreshes_ahead_of_expiry() -> None:
    async with (
        Simulator(_config(token_lifetime=0.5), env={}) as sim,
        open_pool(sim.base_url, Timeouts(), limit=8) as pool,
    ):
        tokens = provider(pool, sim)
        first = await tokens.get()
        await asyncio.sleep(0.5)  # past lifetime minus the 10% margin
        assert await tokens.get() != first
        assert token_requests(sim) == 2


async def test_bad_secret_is_an_auth_error_without_the_secret() -> None:
    wrong = Credentials(client_id=CLIENT_ID, client_secret="wrong-secret-77", api_key=API_KEY)
    async with (
        Simulator(_config(), env={}) as sim,
        open_pool(sim.base_url, Timeouts(), limit=8) as pool,
    ):
        tokens = provider(pool, sim, wrong)
        with pytest.raises(AuthError) as info:
            await tokens.get()
    assert "UKG_CLIENT_SECRET" in str(info.value)
    assert "wrong-secret-77" not in str(info.value)
