"""ukg-extract: bulk-export UKG Pro employees into atomically committed Parquet snapshots.

The public API for orchestrators (Airflow, Dagster)::

    from extractor import ExportConfig, Credentials, export, load_config
    result = asyncio.run(export(load_config({"out": "/data/ukg"})))
    result.exit_code  # 0 complete, 1 failed (resumable), 3 partial

Everything else lives in underscore modules and may change without notice.
"""

__version__ = "0.1.0"

from ._config import (
    ApiDialect,
    Credentials,
    ExportConfig,
    RetryPolicy,
    Timeouts,
    load_config,
)
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
from ._pipeline import ExportResult, export
from ._snapshot import SnapshotInfo, latest_snapshot, list_snapshots

__all__ = [
    "ApiDialect",
    "AuthError",
    "BadResponseError",
    "ConfigError",
    "ConnectionLostError",
    "Credentials",
    "ExportConfig",
    "ExportResult",
    "ExtractError",
    "ForbiddenError",
    "NotFoundError",
    "PermanentError",
    "RequestError",
    "RetryPolicy",
    "ServerError",
    "SnapshotError",
    "SnapshotInfo",
    "ThrottledError",
    "TimeoutError_",
    "Timeouts",
    "TransientError",
    "__version__",
    "export",
    "latest_snapshot",
    "list_snapshots",
    "load_config",
]
