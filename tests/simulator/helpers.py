"""A small client that speaks the simulator's auth, and the test service accounts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

from extractor.simulator import ServiceAccount, Simulator

READ_ONLY = ServiceAccount(
    client_id="reader",
    client_secret="reader-secret",
    api_key="READER-KEY",
    scopes=frozenset({"people:read"}),
)
EMPLOYMENT_ONLY = ServiceAccount(
    client_id="payroll",
    client_secret="payroll-secret",
    api_key="PAYROLL-KEY",
    scopes=frozenset({"employment:read"}),
)
SENSITIVE = ServiceAccount(
    client_id="hr-admin",
    client_secret="hr-secret",
    api_key="HR-KEY",
    scopes=frozenset({"people:read", "employment:read"}),
    sensitive_access=True,
)
EXTRA_ACCOUNTS = (READ_ONLY, EMPLOYMENT_ONLY, SENSITIVE)


@dataclass
class Reply:
    status: int
    body: bytes
    headers: CIMultiDictProxy[str]

    def json(self) -> Any:
        return orjson.loads(self.body)


class Client:
    """Calls the simulator as one service account, fetching a token on first use."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, account: ServiceAccount):
        self.session = session
        self.base_url = base_url
        self.account = account
        self._token: str | None = None

    async def fetch_token(self) -> Reply:
        return await self.raw(
            "POST",
            "/authentication/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.account.client_id,
                "client_secret": self.account.client_secret,
            },
        )

    async def token(self) -> str:
        if self._token is None:
            reply = await self.fetch_token()
            assert reply.status == 200, reply.body
            self._token = reply.json()["access_token"]
        return self._token

    async def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token()}", "US-API-Key": self.account.api_key}

    async def raw(self, method: str, path: str, **kwargs: Any) -> Reply:
        async with self.session.request(method, self.base_url + path, **kwargs) as response:
            return Reply(response.status, await response.read(), response.headers)

    async def call(self, method: str, path: str, **kwargs: Any) -> Reply:
        headers = {**await self.auth_headers(), **kwargs.pop("headers", {})}
        return await self.raw(method, path, headers=headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("GET", path, **kwargs)

    async def all_ids(self, per_page: int = 200) -> list[str]:
        ids: list[str] = []
        page = 1
        while True:
            reply = await self.get(f"/personnel/v1/employee-ids?page={page}&per-page={per_page}")
            assert reply.status == 200, reply.body
            data = reply.json()["data"]
            if not data:
                return ids
            ids += [item["employeeId"] for item in data]
            page += 1


class Harness:
    """A running simulator plus clients for its accounts."""

    def __init__(self, sim: Simulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session
        self.client = self.client_for(sim.default_account)

    def client_for(self, account: ServiceAccount) -> Client:
        return Client(self.session, self.sim.base_url, account)


StartSimulator = Callable[..., Awaitable[Harness]]
