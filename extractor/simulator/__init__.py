"""A UKG Pro simulator: a real HTTP server on loopback that behaves like a tenant.

It serves the API of the UKG Pro user-management guide (OAuth client credentials
plus the ``US-API-Key`` header, offset-paged ``employee-ids``, per-employee
profiles and employment details, writes, and the ``employee-changes`` feed) from
deterministic generated data, with knobs that make it a difficult tenant: a
hidden rate limit, an in-flight cap, latency, 5xx, connection resets, truncated
bodies, stalls and background churn.

Tests, benchmarks and the demo use it; the extractor never imports it::

    async with Simulator(SimulatorConfig(employees=10_000, rate_limit=50)) as sim:
        ...  # point a client at sim.base_url with sim.default_account

    with run_in_thread(SimulatorConfig()) as sim:  # from synchronous code
        ...
"""

from ._config import ServiceAccount, SimulatorConfig
from ._simulator import Simulator
from ._thread import SimulatorHandle, run_in_thread

__all__ = [
    "ServiceAccount",
    "Simulator",
    "SimulatorConfig",
    "SimulatorHandle",
    "run_in_thread",
]
