"""Listing employee ids: offset pages of the maximum size, fetched concurrently.

Page 1 tells the total; the remaining pages are then fetched at once (bounded by
``concurrency``; the rate controller paces them like any call). Offset pages
shift while the tenant hires or deletes, so one pass can miss or repeat an id:
the caller deduplicates, and the pipeline's catch-up pass lists again before
commit to find what a shifting page hid.
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
) -> ListingResult:
    """List every employee id, handing each page's ids to ``on_page`` as it arrives.

    Pages after the first are fetched ``concurrency`` at a time and delivered in
    completion order. After the pages that ``total`` announced, the next pages
    are read until one comes back empty, in case the tenant grew meanwhile.
    """
    path = dialect.employee_ids_path

    async def fetch(page: int) -> tuple[list[str], int | None]:
        params = {dialect.page_param: str(page), dialect.per_page_param: str(page_size)}
        body = await client.get_json(path, params, what=f"employee-ids page {page}")
        return _parse_page(body, page)

    first, total = await fetch(1)
    if total is None:
        total = len(first)
    if on_total is not None:
        on_total(total)
    await on_page(first)
    count = len(first)
    pages = 1
    last_page = max(1, math.ceil(total / page_size))

    next_page = 2
    limiter = anyio.Semaphore(concurrency)

    async def fetch_and_deliver(page: int) -> None:
        nonlocal count, pages
        try:
            ids, _ = await fetch(page)
            pages += 1
            count += len(ids)
            await on_page(ids)  # may wait on the work queue: backpressure on listing
        finally:
            limiter.release()

    if len(first) > 0:
        async with anyio.create_task_group() as tg:
            for page in range(next_page, last_page + 1):
                await limiter.acquire()  # released by the task: at most `concurrency` live
                tg.start_soon(fetch_and_deliver, page)
        next_page = last_page + 1
        # The tenant may have grown while we listed: read on until a page is empty.
        while True:
            ids, _ = await fetch(next_page)
            pages += 1
            if not ids:
                break
            count += len(ids)
            await on_page(ids)
            next_page += 1
    return ListingResult(total_reported=total, pages=pages, ids=count)
