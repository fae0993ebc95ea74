"""Token endpoint, the two-header rule, token expiry and scopes, over real sockets."""

from __future__ import annotations

import asyncio
import base64

import pytest

from extractor.simulator import Simulator, SimulatorConfig

from .helpers import EMPLOYMENT_ONLY, READ_ONLY, Harness, StartSimulator

IDS = "/personnel/v1/employee-ids"


async def test_token_endpoint_grants_a_bearer_token(harness: Harness) -> None:
    reply = await harness.client.fetch_token()
    assert reply.status == 200
    body = reply.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert isinstance(body["access_token"], str)
    assert len(body["access_token"]) >= 32


@pytest.mark.parametrize(
    ("client_id", "client_secret"),
    [("wrong-client", "whatever"), (None, "wrong-secret"), (None, "")],
)
async def test_token_endpoint_rejects_bad_client_credentials(
    harness: Harness, client_id: str | None, client_secret: str
) -> None:
    account = harness.sim.default_account
    reply = await harness.client.raw(
        "POST",
        "/authentication/v1/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id or account.client_id,
            "client_secret": client_secret,
        },
    )
    assert reply.status == 401
    assert reply.json() == {"error": "invalid_client"}


async def test_token_endpoint_rejects_other_grants(harness: Harness) -> None:
    account = harness.sim.default_account
    form = {"client_id": account.client_id, "client_secret": account.client_secret}
    wrong = await harness.client.raw(
        "POST", "/authentication/v1/token", data={**form, "grant_type": "password"}
    )
    assert wrong.status == 400
    assert wrong.json() == {"error": "unsupported_grant_type"}
    missing = await harness.client.raw("POST", "/authentication/v1/token", data=form)
    assert missing.status == 400
    assert missing.json()["error"] == "invalid_request"
    as_json = await harness.client.raw(
        "POST", "/authentication/v1/token", json={**form, "grant_type": "client_credentials"}
    )
    assert as_json.status == 400


async def test_token_endpoint_accepts_http_basic_client_authentication(harness: Harness) -> None:
    account = harness.sim.default_account
    basic = base64.b64encode(f"{account.client_id}:{account.client_secret}".encode()).decode()
    reply = await harness.client.raw(
        "POST",
        "/authentication/v1/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert reply.status == 200


async def test_every_authentication_failure_gets_the_same_bare_401(harness: Harness) -> None:
    client = harness.client
    token = await client.token()
    other_key = READ_ONLY.api_key  # a real key, but of another account
    cases = {
        "nothing": {},
        "bearer only": {"Authorization": f"Bearer {token}"},
        "key only": {"US-API-Key": client.account.api_key},
        "wrong key": {"Authorization": f"Bearer {token}", "US-API-Key": "WRONG"},
        "another account's key": {"Authorization": f"Bearer {token}", "US-API-Key": other_key},
        "unknown token": {"Authorization": "Bearer nope", "US-API-Key": client.account.api_key},
        "not bearer": {"Authorization": f"Token {token}", "US-API-Key": client.account.api_key},
    }
    replies = {name: await client.raw("GET", IDS, headers=h) for name, h in cases.items()}
    assert {name: reply.status for name, reply in replies.items()} == dict.fromkeys(cases, 401)
    bodies = {reply.body for reply in replies.values()}
    assert bodies == {b'{"message":"Unauthorized"}'}
    challenges = {reply.headers.get("WWW-Authenticate") for reply in replies.values()}
    assert len(challenges) == 1
    # and with both headers right, the same request succeeds
    assert (await client.get(IDS)).status == 200


async def test_tokens_expire_after_their_lifetime(start_simulator: StartSimulator) -> None:
    harness = await start_simulator(token_lifetime=0.3)
    client = harness.client
    first = await client.fetch_token()
    assert first.json()["expires_in"] == 0.3
    assert (await client.get(IDS)).status == 200
    await asyncio.sleep(0.45)
    assert (await client.get(IDS)).status == 401
    client._token = None  # a fresh token works again
    assert (await client.get(IDS)).status == 200


async def test_a_whole_number_lifetime_set_as_a_knob(harness: Harness) -> None:
    harness.sim.set_knobs(token_lifetime=2)  # an int, as JSON or Python may send it
    reply = await harness.client.fetch_token()
    assert reply.status == 200
    assert reply.json()["expires_in"] == 2


async def test_an_account_may_hold_several_valid_tokens(harness: Harness) -> None:
    tokens = [(await harness.client.fetch_token()).json()["access_token"] for _ in range(3)]
    assert len(set(tokens)) == 3
    key = harness.sim.default_account.api_key
    for token in tokens:
        reply = await harness.client.raw(
            "GET", IDS, headers={"Authorization": f"Bearer {token}", "US-API-Key": key}
        )
        assert reply.status == 200


async def test_scopes_are_enforced_per_endpoint(harness: Harness) -> None:
    employee_id = (await harness.client.all_ids())[0]
    profile = f"/personnel/v1/employees/{employee_id}"
    details = f"{profile}/employment-details"

    reader = harness.client_for(READ_ONLY)
    assert (await reader.get(IDS)).status == 200
    assert (await reader.get(profile)).status == 200
    forbidden = await reader.get(details)
    assert forbidden.status == 403
    assert "employment:read" in forbidden.json()["message"]
    assert (await reader.call("PATCH", profile, json={"jobTitle": "X"})).status == 403
    assert (await reader.call("POST", "/personnel/v1/employees", json={})).status == 403

    payroll = harness.client_for(EMPLOYMENT_ONLY)
    assert (await payroll.get(details)).status == 200
    assert (await payroll.get(profile)).status == 403
    assert "people:read" in (await payroll.get(IDS)).json()["message"]


def test_default_credentials_come_from_env_then_config_then_are_made_up() -> None:
    env = {"UKG_CLIENT_ID": "env-id", "UKG_CLIENT_SECRET": "env-secret", "UKG_API_KEY": "ENV"}
    from_env = Simulator(SimulatorConfig(employees=1, client_id="cfg-id"), env=env)
    assert from_env.default_account.client_id == "env-id"
    assert from_env.default_account.client_secret == "env-secret"
    assert from_env.credential_sources == dict.fromkeys(
        ("client_id", "client_secret", "api_key"), "env"
    )
    from_config = Simulator(SimulatorConfig(employees=1, client_id="cfg-id"), env={})
    assert from_config.default_account.client_id == "cfg-id"
    assert from_config.credential_sources["client_id"] == "config"
    assert from_config.credential_sources["api_key"] == "generated"
    made_up = Simulator(SimulatorConfig(employees=1))
    assert made_up.default_account.scopes == frozenset(
        {"people:read", "people:write", "employment:read", "employment:write"}
    )
    account = made_up.default_account
    assert account.client_secret not in repr(account)
    assert account.api_key not in repr(account)
