"""``run_in_thread``: the simulator from synchronous code, driven with urllib only."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from extractor.simulator import SimulatorConfig, run_in_thread

IDS = "/personnel/v1/employee-ids"


def _request(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_run_in_thread_serves_synchronous_callers() -> None:
    env = {"UKG_CLIENT_ID": "sync-id", "UKG_CLIENT_SECRET": "sync-secret", "UKG_API_KEY": "K"}
    with run_in_thread(SimulatorConfig(employees=120), env=env) as sim:
        assert sim.default_account.client_id == "sync-id"
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": "sync-id",
                "client_secret": "sync-secret",
            }
        ).encode()
        token = _request(f"{sim.base_url}/authentication/v1/token", data=form)["access_token"]
        headers = {"Authorization": f"Bearer {token}", "US-API-Key": "K"}
        listing = _request(
            f"{sim.base_url}/personnel/v1/employee-ids?per-page=200", headers=headers
        )
        assert listing["total"] == 120
        assert {item["employeeId"] for item in listing["data"]} == set(sim.truth())
        assert len(sim.truth_employment_details()) == 120

        assert sim.stats()["requests"] == 2
        sim.reset_stats()
        assert sim.stats()["requests"] == 0

        records = sim.churn(hires=1)
        assert records[0]["changeType"] == "HIRE"
        sim.set_knobs(default_sensitive_access=True, latency_ms=1)
        assert sim.default_account.sensitive_access
        assert sim.knobs()["latency_ms"] == 1
        with pytest.raises(ValueError, match="employees"):
            sim.set_knobs(employees=3)
        with pytest.raises(urllib.error.HTTPError) as error:
            _request(f"{sim.base_url}{IDS}")
        assert error.value.code == 401
        error.value.close()
    assert not any(thread.name == "ukg-simulator" for thread in threading.enumerate())


def test_run_in_thread_reports_a_start_failure() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with (
            pytest.raises(OSError, match="address"),
            run_in_thread(SimulatorConfig(employees=1, port=port)),
        ):
            pass  # pragma: no cover
