"""ukg-extract: bulk-export UKG Pro employees into atomically committed Parquet snapshots.

The public API for orchestrators (Airflow, Dagster)::

    from extractor import ExportConfig, Credentials, export, load_config
    result = asyncio.run(export(load_config({"out": "/data/ukg"})))
    result.exit_code  # 0 complete, 1 failed (resumable), 3 partial

Everything else lives in underscore modules and may change without notice.
"""

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._config import (
        ApiDialect,
        Credentials,
        ExportConfig,
        RetryPolicy,
        Timeouts,
        load_config,
    )
    from ._diff import DiffResult, diff_snapshots
    from ._errors import (
        AuthError,
        BadResponseError,
        ConfigError,
        ConnectionLostError,
        ExtractError,
        ForbiddenError,
        NotFoundError,
        PermanentError,
        RequestError,
        ServerError,
        SnapshotError,
        ThrottledError,
        TimeoutError_,
        TransientError,
    )
    from ._history import HistoryResult, build_history
    from ._orgcheck import OrgReport, check_org, org_summary, write_reporting_lines
    from ._pipeline import ExportResult, export
    from ._snapshot import SnapshotInfo, latest_snapshot, list_snapshots
    from ._sync import NoBaseSnapshotError, SyncOptions, sync

# Imported on first use: ``python -m extractor.simulator`` must not pay for pyarrow and
# polars (about 40 MB and most of a second per simulator process).
_LAZY = {
    "DiffResult": "._diff",
    "diff_snapshots": "._diff",
    "HistoryResult": "._history",
    "build_history": "._history",
    "OrgReport": "._orgcheck",
    "check_org": "._orgcheck",
    "org_summary": "._orgcheck",
    "write_reporting_lines": "._orgcheck",
    "ApiDialect": "._config",
    "AuthError": "._errors",
    "BadResponseError": "._errors",
    "ConfigError": "._errors",
    "ConnectionLostError": "._errors",
    "Credentials": "._config",
    "ExportConfig": "._config",
    "ExportResult": "._pipeline",
    "ExtractError": "._errors",
    "ForbiddenError": "._errors",
    "NoBaseSnapshotError": "._sync",
    "NotFoundError": "._errors",
    "PermanentError": "._errors",
    "RequestError": "._errors",
    "RetryPolicy": "._config",
    "ServerError": "._errors",
    "SnapshotError": "._errors",
    "SnapshotInfo": "._snapshot",
    "SyncOptions": "._sync",
    "ThrottledError": "._errors",
    "TimeoutError_": "._errors",
    "Timeouts": "._config",
    "TransientError": "._errors",
    "export": "._pipeline",
    "latest_snapshot": "._snapshot",
    "list_snapshots": "._snapshot",
    "load_config": "._config",
    "sync": "._sync",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'extractor' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "ApiDialect",
    "AuthError",
    "BadResponseError",
    "ConfigError",
    "ConnectionLostError",
    "Credentials",
    "DiffResult",
    "ExportConfig",
    "ExportResult",
    "ExtractError",
    "ForbiddenError",
    "HistoryResult",
    "NoBaseSnapshotError",
    "NotFoundError",
    "OrgReport",
    "PermanentError",
    "RequestError",
    "RetryPolicy",
    "ServerError",
    "SnapshotError",
    "SnapshotInfo",
    "SyncOptions",
    "ThrottledError",
    "TimeoutError_",
    "Timeouts",
    "TransientError",
    "__version__",
    "build_history",
    "check_org",
    "diff_snapshots",
    "export",
    "latest_snapshot",
    "list_snapshots",
    "load_config",
    "org_summary",
    "sync",
    "write_reporting_lines",
]
