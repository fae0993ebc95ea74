"""What every contender script shares: its command line and the tenant's credentials.

A contender is a stand-alone script run as ``python -m benchmarks.contenders.NAME --base-url URL
--out DIR``. It reads the credentials from the same environment variables as ukg-extract, writes
its Parquet under ``DIR`` and, as its last line on stdout, prints one JSON object with what it
knows about its own run (``profiles``, ``requests``, ``retries``, ...). The harness measures
everything else (time, memory, the simulator's view, exactness) from the outside.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

__all__ = [
    "IDS_PATH",
    "PROFILE_PATH",
    "TOKEN_PATH",
    "Credentials",
    "parse_args",
    "report",
]

TOKEN_PATH = "/authentication/v1/token"
IDS_PATH = "/personnel/v1/employee-ids"
PROFILE_PATH = "/personnel/v1/employees/{}"


@dataclass(frozen=True)
class Credentials:
    client_id: str
    client_secret: str
    api_key: str

    @classmethod
    def from_env(cls) -> Credentials:
        try:
            return cls(
                os.environ["UKG_CLIENT_ID"],
                os.environ["UKG_CLIENT_SECRET"],
                os.environ["UKG_API_KEY"],
            )
        except KeyError as exc:
            sys.exit(f"contender: set {exc.args[0]} (and the other UKG_* credentials)")

    def token_form(self) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }


def parse_args(description: str, *, concurrency: int | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--out", required=True, help="folder for the Parquet output")
    parser.add_argument(
        "--limit", type=int, default=None, help="fetch only the first N profiles (probes)"
    )
    if concurrency is not None:
        parser.add_argument("--concurrency", type=int, default=concurrency)
    args = parser.parse_args()
    args.base_url = args.base_url.rstrip("/")
    return args


def report(**numbers: Any) -> None:
    """The contender's own numbers, as the last line on stdout."""
    print(json.dumps(numbers), flush=True)
