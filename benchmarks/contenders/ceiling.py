"""The ceiling: a bare aiohttp loop that fetches every profile and parses nothing.

No rate control, no retries, no JSON decoding of profiles, no Parquet: ``concurrency`` workers
pull profile URLs from one iterator and read each body into the void. What it reaches is the most
this machine and this simulator can serve, and every other contender is quoted as a share of it.
It runs on uvloop, as ukg-extract does, so that the event loop is not what tells them apart.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import aiohttp
import orjson

from ._common import IDS_PATH, PROFILE_PATH, TOKEN_PATH, Credentials, parse_args, report

PAGE_SIZE = 200


async def _ids(session: aiohttp.ClientSession, base: str, headers: dict[str, str]) -> list[str]:
    async def page(number: int) -> dict[str, object]:
        params = {"page": str(number), "per-page": str(PAGE_SIZE)}
        async with session.get(base + IDS_PATH, params=params, headers=headers) as response:
            response.raise_for_status()
            return orjson.loads(await response.read())  # type: ignore[no-any-return]

    first = await page(1)
    total = int(first["total"])  # type: ignore[call-overload]
    pages = [first, *await asyncio.gather(*(page(n) for n in range(2, -(-total // PAGE_SIZE) + 1)))]
    return [row["employeeId"] for p in pages for row in p["data"]]  # type: ignore[attr-defined]


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0], concurrency=128)
    creds = Credentials.from_env()
    base = args.base_url
    connector = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(base + TOKEN_PATH, data=creds.token_form()) as response:
            response.raise_for_status()
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}", "US-API-Key": creds.api_key}
        ids = await _ids(session, base, headers)
        if args.limit is not None:
            ids = ids[: args.limit]
        statuses: Counter[int] = Counter()
        urls: Iterator[str] = (base + PROFILE_PATH.format(i) for i in ids)

        async def worker() -> None:
            for url in urls:  # one shared iterator: each URL is taken by exactly one worker
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    statuses[response.status] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
    report(
        profiles=statuses[200],
        profile_seconds=elapsed,
        concurrency=args.concurrency,
        by_status={str(k): v for k, v in sorted(statuses.items())},
    )


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
