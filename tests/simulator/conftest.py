"""Fixtures: real simulators on loopback, one aiohttp session per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from extractor.simulator import Simulator, SimulatorConfig

from .helpers import EXTRA_ACCOUNTS, Harness, StartSimulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def start_simulator(session: aiohttp.ClientSession) -> AsyncIterator[StartSimulator]:
    """``await start_simulator(**knobs)``: a running simulator (250 employees unless told)."""
    running: list[Simulator] = []

    async def start(**knobs: Any) -> Harness:
        knobs.setdefault("employees", 250)
        knobs.setdefault("accounts", EXTRA_ACCOUNTS)
        sim = Simulator(SimulatorConfig(**knobs), env={})
        await sim.start()
        running.append(sim)
        return Harness(sim, session)

    yield start
    for sim in running:
        await sim.stop()


@pytest.fixture
async def harness(start_simulator: StartSimulator) -> Harness:
    return await start_simulator()
