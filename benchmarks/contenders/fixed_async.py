"""A fixed-concurrency asyncio script: ``aiohttp`` + ``asyncio.gather`` under a semaphore of 64.

What a careful engineer writes next: the id pages (200 each) concurrently once the total is
known, then one task per profile, at most 64 in flight. Any 429, 5xx, reset or unreadable body
is retried after a fixed 1 s (up to 10 attempts); a 401 fetches a new token once for everyone.
There is no adaptive control: the script never learns the tenant's limit, it only waits.
Records are kept in memory and written once with ``pyarrow`` (columns as the API names them).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq

from ._common import IDS_PATH, PROFILE_PATH, TOKEN_PATH, Credentials, parse_args, report

PAGE_SIZE = 200
ATTEMPTS = 10
RETRY_SLEEP = 1.0


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str, creds: Credentials) -> None:
        self.session, self.base, self.creds = session, base, creds
        self.semaphore = asyncio.Semaphore(64)
        self.headers: dict[str, str] = {}
        self._token_lock = asyncio.Lock()
        self.requests = self.retries = self.throttled = 0

    async def refresh_token(self, stale: dict[str, str] | None) -> None:
        async with self._token_lock:
            if stale is not None and self.headers is not stale:
                return  # someone else already refreshed it
            async with self.session.post(
                self.base + TOKEN_PATH, data=self.creds.token_form()
            ) as response:
                response.raise_for_status()
                token = (await response.json())["access_token"]
            self.headers = {"Authorization": f"Bearer {token}", "US-API-Key": self.creds.api_key}

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        for attempt in range(ATTEMPTS):
            if attempt:
                self.retries += 1
                await asyncio.sleep(RETRY_SLEEP)
            headers = self.headers
            async with self.semaphore:
                self.requests += 1
                try:
                    async with self.session.get(
                        self.base + path, params=params, headers=headers
                    ) as response:
                        if response.status == 401:
                            await self.refresh_token(headers)
                            continue
                        if response.status == 429:
                            self.throttled += 1
                            continue
                        if response.status >= 500:
                            continue
                        response.raise_for_status()
                        return await response.json()
                except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, ValueError):
                    continue  # reset connection or truncated body: same fixed retry
        raise RuntimeError(f"giving up on {path} after {ATTEMPTS} attempts")


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    creds = Credentials.from_env()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        client = Client(session, args.base_url, creds)
        await client.refresh_token(None)

        def page(n: int) -> Any:
            return client.get(IDS_PATH, {"page": str(n), "per-page": str(PAGE_SIZE)})

        first = await page(1)
        pages = [
            first,
            *await asyncio.gather(
                *(page(n) for n in range(2, -(-first["total"] // PAGE_SIZE) + 1))
            ),
        ]
        ids = list(dict.fromkeys(row["employeeId"] for p in pages for row in p["data"]))
        if args.limit is not None:
            ids = ids[: args.limit]
        results = await asyncio.gather(
            *(client.get(PROFILE_PATH.format(i)) for i in ids), return_exceptions=True
        )
    records = [r for r in results if isinstance(r, dict)]
    failures = [r for r in results if isinstance(r, BaseException)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), out / "employees.parquet")
    report(
        profiles=len(records),
        failed=len(failures),
        requests=client.requests + 1,
        retries=client.retries,
        throttled=client.throttled,
        first_failure=str(failures[0]) if failures else None,
    )


if __name__ == "__main__":
    asyncio.run(main())
