"""Settings, built once at the edge (CLI, environment, TOML file) and passed down.

Precedence: command-line flags > environment > config file > defaults. Secrets
(client secret, API key) come from the environment only: a flag would show them
in ``ps`` and a config file tends to end up in version control.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from ._errors import ConfigError

__all__ = [
    "DEFAULT_DIALECT",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "REGIONS",
    "ApiDialect",
    "Credentials",
    "ExportConfig",
    "RetryPolicy",
    "Timeouts",
    "load_config",
    "resolve_base_url",
]

#: Regional hosts from the UKG guide. EU tenants are served from a tenant-specific
#: host that UKG gives you; it must be set as the base URL.
REGIONS: Mapping[str, str | None] = {
    "us": "https://service.ultipro.com",
    "ca": "https://service.ultipro.ca",
    "eu": None,
}

ENV_BASE_URL = "UKG_BASE_URL"
ENV_CLIENT_ID = "UKG_CLIENT_ID"
ENV_CLIENT_SECRET = "UKG_CLIENT_SECRET"
ENV_API_KEY = "UKG_API_KEY"
ENV_CONFIG = "UKG_EXTRACT_CONFIG"

Seconds = float | timedelta


def _seconds(value: Seconds) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """Client credentials and the tenant API key. ``repr`` never shows the secrets."""

    client_id: str
    client_secret: str = field(repr=False)
    api_key: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Credentials(client_id={self.client_id!r}, client_secret=***, api_key=***)"

    @property
    def secrets(self) -> tuple[str, str]:
        """The values that must never appear in logs, errors or manifests."""
        return (self.client_secret, self.api_key)


@dataclass(frozen=True, kw_only=True)
class ApiDialect:
    """Paths, header and parameter spellings: tenants differ, the code does not fork."""

    token_path: str = "/authentication/v1/token"
    employee_ids_path: str = "/personnel/v1/employee-ids"
    employee_path: str = "/personnel/v1/employees/{employee_id}"
    employment_details_path: str = "/personnel/v1/employees/{employee_id}/employment-details"
    changes_path: str = "/personnel/v1/employee-changes"
    api_key_header: str = "US-API-Key"
    page_param: str = "page"
    per_page_param: str = "per-page"
    start_date_param: str = "startDate"
    end_date_param: str = "endDate"
    max_page_size: int = 200
    #: Longest window ``employee-changes`` accepts, in days.
    change_window_days: int = 31


DEFAULT_DIALECT = ApiDialect()


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Per-request timeouts in seconds."""

    connect: float = 10.0
    #: Longest wait for the response (headers and body); a stalled response is transient.
    read: float = 30.0


DEFAULT_TIMEOUTS = Timeouts()


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff with full jitter for transient failures.

    UKG's advice is to back off from 1 s exponentially; full jitter (AWS
    architecture blog, "Exponential Backoff and Jitter") keeps many workers from
    retrying in lock step. A ``Retry-After`` header overrides the computed pause.
    """

    max_attempts: int = 8
    base: float = 1.0
    cap: float = 30.0


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    """Everything an export run needs. Build it with :func:`load_config` or directly."""

    base_url: str
    credentials: Credentials = field(repr=True)
    out: Path = Path("output")
    employment_details: bool = False
    max_rate: float | None = None
    max_concurrency: int | None = None
    allow_partial: bool = False
    #: Discard an unfinished snapshot instead of resuming it.
    fresh: bool = False
    page_size: int = 200
    catch_up_passes: int = 3
    checkpoint_interval: float = 30.0
    timeouts: Timeouts = DEFAULT_TIMEOUTS
    retry: RetryPolicy = DEFAULT_RETRY
    dialect: ApiDialect = DEFAULT_DIALECT
    progress: Literal["auto", "bar", "log", "quiet"] = "auto"
    log_format: Literal["text", "json"] = "text"
    #: Seconds between progress lines when not on a terminal.
    log_interval: float = 10.0

    def __post_init__(self) -> None:
        _check_types(ExportConfig, {f.name: getattr(self, f.name) for f in fields(self)}, "")
        object.__setattr__(self, "base_url", resolve_base_url(self.base_url, None))
        object.__setattr__(self, "out", Path(self.out))
        if self.dialect.max_page_size < 1:
            raise ConfigError(
                f"[api] max_page_size must be at least 1, got {self.dialect.max_page_size}"
            )
        if not 1 <= self.page_size <= self.dialect.max_page_size:
            raise ConfigError(
                f"page size must be between 1 and {self.dialect.max_page_size}, "
                f"got {self.page_size}"
            )
        if self.max_rate is not None and self.max_rate <= 0:
            raise ConfigError(f"--max-rate must be positive, got {self.max_rate}")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ConfigError(f"--max-concurrency must be at least 1, got {self.max_concurrency}")
        if self.catch_up_passes < 0:
            raise ConfigError(f"--catch-up-passes must be 0 or more, got {self.catch_up_passes}")
        if self.checkpoint_interval <= 0:
            raise ConfigError(
                f"--checkpoint-interval must be positive, got {self.checkpoint_interval}"
            )
        if self.log_interval <= 0:
            raise ConfigError(f"--log-interval must be positive, got {self.log_interval}")

    def with_changes(self, **changes: Any) -> ExportConfig:
        return replace(self, **changes)


def resolve_base_url(base_url: str | None, region: str | None) -> str:
    """Validate the base URL (or derive it from a region) before any request is made."""
    if not base_url:
        if region is None:
            raise ConfigError(
                f"no tenant host: set {ENV_BASE_URL} (or --base-url) or pass --region us|ca|eu"
            )
        key = region.strip().lower()
        if key not in REGIONS:
            raise ConfigError(
                f"unknown region {region!r}: choose one of {', '.join(REGIONS)} "
                f"or set {ENV_BASE_URL} to your tenant's host"
            )
        host = REGIONS[key]
        if host is None:
            raise ConfigError(
                f"EU tenants have their own host: set {ENV_BASE_URL} (or --base-url) "
                "to the service URL UKG gave you"
            )
        base_url = host
    parts = urlsplit(base_url.strip())
    if "@" in parts.netloc:
        # Checked first: every other message here echoes the URL, and this one must not.
        raise ConfigError(
            "the base URL must not contain a user name or password; credentials go in "
            f"{ENV_CLIENT_ID} / {ENV_CLIENT_SECRET} / {ENV_API_KEY}"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"bad base URL {base_url!r}: expected something like https://service.ultipro.com"
        )
    try:
        bad_port = parts.port == 0
    except ValueError:  # not a number, or above 65535
        bad_port = True
    if bad_port:
        raise ConfigError(f"bad base URL {base_url!r}: the port must be a number from 1 to 65535")
    if parts.query or parts.fragment:
        raise ConfigError(f"bad base URL {base_url!r}: it must not have a query or fragment")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"refusing plain http:// for {parts.hostname}: credentials would cross the "
            "network unencrypted; use https:// (http is allowed for loopback only)"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credentials_from_env(env: Mapping[str, str], file_values: Mapping[str, Any]) -> Credentials:
    """Read credentials; name every missing one in a single error."""
    client_id = env.get(ENV_CLIENT_ID) or file_values.get("client_id")
    secret = env.get(ENV_CLIENT_SECRET)
    api_key = env.get(ENV_API_KEY)
    missing = [
        name
        for name, value in (
            (ENV_CLIENT_ID, client_id),
            (ENV_CLIENT_SECRET, secret),
            (ENV_API_KEY, api_key),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"missing credentials: set {', '.join(missing)} in the environment "
            "(secrets are never taken from flags or config files)"
        )
    assert client_id
    assert secret
    assert api_key
    return Credentials(client_id=str(client_id), client_secret=secret, api_key=api_key)


def _type_problem(value: Any, hint: Any) -> str | None:
    """Say what is wrong with ``value`` for a field annotated ``hint``; ``None`` if it fits."""
    if isinstance(hint, types.UnionType):  # ``float | None``: None means "not set"
        if value is None:
            return None
        (hint,) = [h for h in get_args(hint) if h is not type(None)]
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        return None if value in choices else f"must be one of {', '.join(choices)}"
    if hint is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "must be a whole number"
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok and math.isfinite(value) else "must be a number"
    if hint is str:
        return None if isinstance(value, str) else "must be a string"
    if hint is Path:
        return None if isinstance(value, str | os.PathLike) else "must be a path (a string)"
    return None  # tables (timeouts, retry, api) are checked by ``_sub``


def _check_types(cls: type[Any], values: Mapping[str, Any], where: str) -> None:
    """Refuse a value whose type does not match ``cls``'s field, naming it as the user wrote it."""
    hints = {**get_type_hints(cls), **_EXTRA_FILE_KEYS}
    for key, value in values.items():
        problem = _type_problem(value, hints[key]) if key in hints else None
        if problem:
            shown = json.dumps(value, default=str, ensure_ascii=False)
            if len(shown) > 60:
                shown = shown[:57] + "..."
            raise ConfigError(f"{where}{key} {problem}, got {shown}")


#: File keys that are not ``ExportConfig`` fields but are read by :func:`load_config`.
_EXTRA_FILE_KEYS: Mapping[str, Any] = {"region": str, "client_id": str}
_FILE_SECRET_KEYS = {"client_secret", "api_key"}
_TOP_KEYS = (
    {f.name for f in fields(ExportConfig)} - {"credentials", "dialect"}
    | set(_EXTRA_FILE_KEYS)
    | {"api"}
)


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse the TOML config file; unknown keys, secrets and wrong types are errors."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except OSError as exc:  # a directory, no permission, ...
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    section = data.get("ukg-extract", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [ukg-extract] must be a table")
    secrets = _FILE_SECRET_KEYS & section.keys()
    if secrets:
        raise ConfigError(
            f"config file {path} holds {', '.join(sorted(secrets))}: secrets belong in the "
            f"environment ({ENV_CLIENT_SECRET}, {ENV_API_KEY}), never in files"
        )
    if "credentials" in section:
        raise ConfigError(
            f"config file {path} holds credentials: secrets belong in the environment "
            f"({ENV_CLIENT_SECRET}, {ENV_API_KEY}), never in files; "
            "client_id may be set as a top-level key"
        )
    if "dialect" in section:
        raise ConfigError(
            f"config file {path}: unknown setting dialect; API paths and names go in [api]"
        )
    unknown = set(section) - _TOP_KEYS - {"timeouts", "retry"}
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_TOP_KEYS | {'timeouts', 'retry'}))}"
        )
    _check_types(ExportConfig, section, f"config {path}: ")
    return dict(section)


def _sub(cls: type[Any], values: Any, name: str, path: Path | None) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"config {path}: [{name}] must be a table")
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(
            f"config {path}: unknown key(s) in [{name}]: {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )
    where = f"config {path}: [{name}] "
    _check_types(cls, values, where)
    # Every number in these tables is a count (at least 1) or a time or size (positive).
    hints = get_type_hints(cls)
    for key, value in values.items():
        if hints[key] is int and value < 1:
            raise ConfigError(f"{where}{key} must be at least 1, got {value}")
        if hints[key] is float and value <= 0:
            raise ConfigError(f"{where}{key} must be positive, got {value}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"config {path}: [{name}]: {exc}") from None


def load_config(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_path: Path | None = None,
) -> ExportConfig:
    """Merge flags > environment > config file > defaults into one :class:`ExportConfig`.

    ``flags`` holds only the options the user actually gave (``None`` means not given).
    """
    env = os.environ if env is None else env
    path = config_path or (Path(env[ENV_CONFIG]) if env.get(ENV_CONFIG) else None)
    file_values = read_config_file(path) if path else {}

    def pick(name: str) -> Any:
        value = flags.get(name)
        return value if value is not None else file_values.get(name)

    base_url = flags.get("base_url") or env.get(ENV_BASE_URL) or file_values.get("base_url")
    region = flags.get("region") or file_values.get("region")
    if flags.get("region"):
        base_url = flags.get("base_url")  # an explicit --region beats the environment
    resolved = resolve_base_url(base_url, region)
    credentials = credentials_from_env(env, file_values)

    kwargs: dict[str, Any] = {"base_url": resolved, "credentials": credentials}
    for f in fields(ExportConfig):
        if f.name in ("base_url", "credentials", "timeouts", "retry", "dialect"):
            continue
        value = pick(f.name)
        if value is not None:
            kwargs[f.name] = value
    if "timeouts" in file_values:
        kwargs["timeouts"] = _sub(Timeouts, file_values["timeouts"], "timeouts", path)
    if "retry" in file_values:
        kwargs["retry"] = _sub(RetryPolicy, file_values["retry"], "retry", path)
    if "api" in file_values:
        kwargs["dialect"] = _sub(ApiDialect, file_values["api"], "api", path)
    if "out" in kwargs:
        kwargs["out"] = Path(kwargs["out"])
    try:
        return ExportConfig(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
