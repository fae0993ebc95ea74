"""The exception tree of ukg-extract.

Every error the library raises derives from one root, so callers (Airflow tasks,
scripts) can catch ``ExtractError`` and still tell retryable trouble from a
mistake that retrying cannot fix::

    ExtractError
    ├── ConfigError            bad flags, config file or environment (exit code 2)
    ├── TransientError         worth retrying with backoff
    │   ├── ThrottledError     429 (and 503 used as throttling); may carry Retry-After
    │   ├── ServerError        5xx
    │   ├── TimeoutError_      connect or read timeout, stalled response
    │   ├── ConnectionLostError  reset, refused, closed mid-body
    │   └── BadResponseError   truncated or invalid JSON on a 2xx
    ├── PermanentError         retrying cannot fix it
    │   ├── AuthError          401 after a token refresh, bad client credentials
    │   ├── ForbiddenError     403, scope missing
    │   ├── NotFoundError      404 (a vanished employee, an unknown path)
    │   └── RequestError       other 4xx, e.g. 400 for an invalid parameter
    └── SnapshotError          the output folder cannot be written or is inconsistent

Messages never contain secrets: no token, client secret or API key value is ever
formatted into an exception.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BadResponseError",
    "ConfigError",
    "ConnectionLostError",
    "ExtractError",
    "ForbiddenError",
    "NotFoundError",
    "PermanentError",
    "RequestError",
    "ServerError",
    "SnapshotError",
    "ThrottledError",
    "TimeoutError_",
    "TransientError",
]


class ExtractError(Exception):
    """Root of every error raised by ukg-extract."""


class ConfigError(ExtractError):
    """The configuration is unusable; the message says which setting and how to fix it."""


class SnapshotError(ExtractError):
    """The output folder cannot be written, or holds state that does not fit this run."""


class TransientError(ExtractError):
    """A failure that may succeed when retried after a pause."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ThrottledError(TransientError):
    """The server asked us to slow down (429, or 503 used as throttling)."""

    def __init__(
        self, message: str, *, status: int = 429, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ServerError(TransientError):
    """A 5xx response."""


class TimeoutError_(TransientError):
    """Connecting or reading took longer than the configured timeout."""


class ConnectionLostError(TransientError):
    """The connection was refused, reset or closed before the body was complete."""


class BadResponseError(TransientError):
    """A 2xx response whose body is truncated or not the JSON the endpoint promises."""


class PermanentError(ExtractError):
    """A failure that retrying cannot fix."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(PermanentError):
    """Credentials were refused (401 after a fresh token, or the token endpoint said no)."""


class ForbiddenError(PermanentError):
    """403: the service account lacks a scope or a permission."""


class NotFoundError(PermanentError):
    """404: the resource does not exist (for a profile: deleted since it was listed)."""


class RequestError(PermanentError):
    """Another 4xx: the request itself is wrong (bad parameter, page size, window)."""
