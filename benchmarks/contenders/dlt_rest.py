"""dlt's ``rest_api`` source into the ``filesystem`` destination, as Parquet.

Configured as a competent dlt user would:

* client: ``base_url``, dlt's ``OAuth2ClientCredentials`` auth against the token endpoint
  (it refreshes the token when ``expires_in`` runs out) and the ``US-API-Key`` header;
* parent resource ``employee_ids`` (not loaded itself): ``page_number`` paginator from page 1
  with ``per-page=200``, stopping at the first empty page (``total`` counts employees, not pages,
  so it cannot be dlt's ``total_path``);
* child resource ``employees``: path ``personnel/v1/employees/{resources.employee_ids.employeeId}``,
  ``single_page`` paginator, whole body as the record, ``parallelized=True`` so each profile call
  is deferred into dlt's extract thread pool;
* ``extract.workers`` and ``extract.max_parallel_items`` set to ``--concurrency`` (default 64)
  instead of dlt's 5 and 20 (dlt's HTTP session pools 50 connections);
* a 404 on a profile (deleted after it was listed) ignored through ``response_actions``;
* dlt's own retrying ``requests`` session (429, 5xx and connection errors, exponential backoff,
  ``Retry-After`` honoured) with ``runtime.request_max_attempts`` raised from 5 to 10, since the
  default gives up under a steady 429 storm;
* ``write_disposition="replace"``, ``loader_file_format="parquet"``.

What dlt offers no setting for: a body cut short under a 200 (a JSON decode error is not
retried) and an adaptive rate.

dlt names the columns in snake_case itself and adds ``_dlt_load_id`` / ``_dlt_id``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._common import IDS_PATH, PROFILE_PATH, TOKEN_PATH, Credentials, parse_args, report


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], concurrency=64)
    creds = Credentials.from_env()
    out = Path(args.out).resolve()
    # dlt reads its settings from the environment (or .dlt/config.toml); set them before import.
    os.environ.update(
        {
            "EXTRACT__WORKERS": str(args.concurrency),
            "EXTRACT__MAX_PARALLEL_ITEMS": str(args.concurrency),
            "RUNTIME__LOG_LEVEL": "WARNING",
            # dlt's default of 5 attempts gives up under a steady 429 storm.
            "RUNTIME__REQUEST_MAX_ATTEMPTS": "10",
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "DLT_DATA_DIR": str(out / "_dlt_data"),
        }
    )
    import dlt
    from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials
    from dlt.sources.rest_api import rest_api_source

    base = args.base_url
    ids_params: dict[str, object] = {"per-page": 200}
    source = rest_api_source(
        {
            "client": {
                "base_url": base + "/",
                "auth": OAuth2ClientCredentials(
                    access_token_url=base + TOKEN_PATH,
                    client_id=creds.client_id,
                    client_secret=creds.client_secret,
                ),
                "headers": {"US-API-Key": creds.api_key},
            },
            "resource_defaults": {"write_disposition": "replace"},
            "resources": [
                {
                    "name": "employee_ids",
                    "selected": False,
                    "endpoint": {
                        "path": IDS_PATH.lstrip("/"),
                        "params": ids_params,
                        "data_selector": "data",
                        "paginator": {
                            "type": "page_number",
                            "base_page": 1,
                            "page_param": "page",
                            "total_path": None,
                            "stop_after_empty_page": True,
                        },
                    },
                },
                {
                    "name": "employees",
                    "parallelized": True,
                    "endpoint": {
                        "path": PROFILE_PATH.format("{resources.employee_ids.employeeId}").lstrip(
                            "/"
                        ),
                        "paginator": "single_page",
                        "data_selector": "$",
                        # deleted between listing and fetch: skip it instead of failing the run
                        "response_actions": [{"status_code": 404, "action": "ignore"}],
                    },
                },
            ],
        }
    )
    if args.limit is not None:
        source.resources["employees"].add_limit(args.limit)
    pipeline = dlt.pipeline(
        pipeline_name="ukg_bench",
        destination=dlt.destinations.filesystem(bucket_url=(out / "data").as_uri()),
        dataset_name="ukg",
        pipelines_dir=str(out / "_dlt_pipelines"),
    )
    info = pipeline.run(source, loader_file_format="parquet")
    info.raise_on_failed_jobs()
    trace = pipeline.last_trace
    normalized = trace.last_normalize_info if trace is not None else None
    report(profiles=normalized.row_counts.get("employees", 0) if normalized is not None else None)


if __name__ == "__main__":
    main()
