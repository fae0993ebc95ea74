"""Listing employee ids: offset pages of the maximum size, fetched concurrently.

Page 1 tells the total; the remaining pages are then fetched at once (bounded by
``concurrency``; the rate controller paces them like any call). A catch-up pass, which
knows about how many ids there are, sends page 1 with the others instead of before them.
Offset pages shift while the tenant hires or deletes, so one pass can miss or repeat an
id: the caller deduplicates, and the pipeline's catch-up pass lists again before commit
to find what a shifting page hid.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from ._config import ApiDialect
from ._errors import BadResponseError
from ._http import ApiClient

__all__ = ["ListingResult", "list_employee_ids"]


@dataclass(frozen=True)
class ListingResult:
    total_reported: int
    pages: int
    ids: int


def _parse_page(body: Any, page: int) -> tuple[list[str], int | None]:
    what = f"employee-ids page {page}"
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise BadResponseError(f"{what}: expected an object with a 'data' list")
    ids: list[str] = []
    for item in body["data"]:
        employee_id = item.get("employeeId") if isinstance(item, dict) else None
        if not isinstance(employee_id, str) or not employee_id:
            raise BadResponseError(f"{what}: an entry has no employeeId")
        ids.append(employee_id)
    total = body.get("total")
    return ids, total if isinstance(total, int) and total >= 0 else None


async def list_employee_ids(
    client: ApiClient,
    dialect: ApiDialect,
    on_page: Callable[[list[str]], Awaitable[None]],
    *,
    page_size: int = 200,
    concurrency: int = 8,
    on_total: Callable[[int], None] | None = None,
    expected_total: int | None = None,
) -> ListingResult:
    """List every employee id, handing each page's ids to ``on_page`` as it arrives.

    Without ``expected_total``, page 1 comes first (it tells the total) and the pages it
    announces follow ``concurrency`` at a time, delivered in completion order. With it (a
    catch-up pass knows how many ids the last listing found), page 1 and every page the
    expected total needs, plus one, go at once: no round trip waits on page 1. Either way
    the pages a larger ``total`` announces are fetched too, and then the next pages until
    one comes back empty, in case the tenant grew meanwhile.
    """
    path = dialect.employee_ids_path
    limiter = anyio.Semaphore(concurrency)
    count = 0
    pages = 0
    total: int | None = None
    empty: set[int] = set()

    async def fetch(page: int) -> list[str]:
        nonlocal count, pages, total
        params = {dialect.page_param: str(page), dialect.per_page_param: str(page_size)}
        body = await client.get_json(path, params, what=f"employee-ids page {page}")
        ids, page_total = _parse_page(body, page)
        pages += 1
        if page == 1:
            total = page_total if page_total is not None else len(ids)
            if on_total is not None:
                on_total(total)
        if not ids:
            empty.add(page)
            return ids
        count += len(ids)
        await on_page(ids)  # may wait on the work queue: backpressure on listing
        return ids

    async def fetch_all(first: int, last: int) -> None:
        async def one(page: int) -> None:
            try:
                await fetch(page)
            finally:
                limiter.release()

        async with anyio.create_task_group() as tg:
            for page in range(first, last + 1):
                await limiter.acquire()  # released by the task: at most `concurrency` live
                tg.start_soon(one, page)

    if expected_total is None:
        fetched = 1
        await fetch(1)
    else:
        fetched = max(1, math.ceil(expected_total / page_size)) + 1
        await fetch_all(1, fetched)
    if 1 in empty:
        return ListingResult(total_reported=total or 0, pages=pages, ids=count)
    announced = max(1, math.ceil((total or 0) / page_size))
    if announced > fetched:
        await fetch_all(fetched + 1, announced)
        fetched = announced
    # The tenant may have grown while we listed: read on until a page is empty.
    while not any(page > announced for page in empty):
        fetched += 1
        await fetch(fetched)
    return ListingResult(total_reported=total or 0, pages=pages, ids=count)
