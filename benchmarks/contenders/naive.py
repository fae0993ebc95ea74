"""The one-off script people write first: ``requests``, one call at a time.

Pages of 100 ids, one after the other; for each id one profile call; ``sleep(1)`` and try again
on a 429, ``raise_for_status`` on anything else (so a 5xx, an expired token or a reset ends the
run, as it does for such scripts). It keeps one ``requests.Session`` (keep-alive), which is
kinder to it than the ``requests.get`` many first scripts use. Every record is kept in a list and
written once, at the end, with ``pyarrow`` (columns as the API names them).
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import requests

from ._common import IDS_PATH, PROFILE_PATH, TOKEN_PATH, Credentials, parse_args, report

PAGE_SIZE = 100


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    creds = Credentials.from_env()
    base = args.base_url
    session = requests.Session()
    token = session.post(base + TOKEN_PATH, data=creds.token_form(), timeout=30)
    token.raise_for_status()
    session.headers.update(
        {
            "Authorization": "Bearer " + token.json()["access_token"],
            "US-API-Key": creds.api_key,
        }
    )
    requests_sent, throttled = 1, 0

    def get(url: str, **kwargs: object) -> requests.Response:
        nonlocal requests_sent, throttled
        while True:
            requests_sent += 1
            response = session.get(url, timeout=30, **kwargs)  # type: ignore[arg-type]
            if response.status_code != 429:
                response.raise_for_status()
                return response
            throttled += 1
            time.sleep(1)

    records: list[dict[str, object]] = []
    page = 1
    while args.limit is None or len(records) < args.limit:
        listing = get(base + IDS_PATH, params={"page": page, "per-page": PAGE_SIZE}).json()
        if not listing["data"]:
            break
        for row in listing["data"]:
            records.append(get(base + PROFILE_PATH.format(row["employeeId"])).json())
        page += 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), out / "employees.parquet")
    report(profiles=len(records), requests=requests_sent, throttled=throttled, retries=throttled)


if __name__ == "__main__":
    main()
