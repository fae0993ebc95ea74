from pathlib import Path

import pytest

from extractor._config import Credentials, ExportConfig, load_config, resolve_base_url
from extractor._errors import ConfigError

ENV = {
    "UKG_CLIENT_ID": "client-1",
    "UKG_CLIENT_SECRET": "s3cret-value-xyz",
    "UKG_API_KEY": "key-value-abc",
}


def test_region_maps_to_host() -> None:
    assert resolve_base_url(None, "us") == "https://service.ultipro.com"
    assert resolve_base_url(None, "CA") == "https://service.ultipro.ca"


def test_unknown_region_is_a_usage_error() -> None:
    with pytest.raises(ConfigError, match="unknown region 'mars'"):
        resolve_base_url(None, "mars")


def test_eu_needs_an_explicit_host() -> None:
    with pytest.raises(ConfigError, match="EU tenants"):
        resolve_base_url(None, "eu")


@pytest.mark.parametrize(
    "url", ["ftp://x.example", "service.ultipro.com", "https://", "https://h/?a=1"]
)
def test_bad_base_urls_rejected(url: str) -> None:
    with pytest.raises(ConfigError, match="bad base URL"):
        resolve_base_url(url, None)


def test_plain_http_only_for_loopback() -> None:
    assert resolve_base_url("http://127.0.0.1:8080/", None) == "http://127.0.0.1:8080"
    assert resolve_base_url("http://localhost:1", None) == "http://localhost:1"
    with pytest.raises(ConfigError, match="refusing plain http"):
        resolve_base_url("http://service.ultipro.com", None)


def test_credentials_repr_hides_secrets() -> None:
    creds = Credentials(client_id="c", client_secret="topsecret", api_key="apikey123")
    text = repr(creds) + str(creds) + repr(ExportConfig(base_url="https://h", credentials=creds))
    assert "topsecret" not in text
    assert "apikey123" not in text


def test_missing_credentials_named_together() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"base_url": "https://h"}, {"UKG_CLIENT_ID": "x"})
    assert "UKG_CLIENT_SECRET" in str(info.value)
    assert "UKG_API_KEY" in str(info.value)


def test_precedence_flags_env_file(tmp_path: Path) -> None:
    cfg = tmp_path / "ukg.toml"
    cfg.write_text(
        '[ukg-extract]\nbase_url = "https://file.example"\nmax_rate = 50.0\n'
        'out = "from-file"\n[ukg-extract.timeouts]\nread = 5.0\n'
    )
    env = {**ENV, "UKG_BASE_URL": "https://env.example"}
    config = load_config({"max_rate": 75.0}, env, cfg)
    assert config.base_url == "https://env.example"  # env beats the file
    assert config.max_rate == 75.0  # flag beats the file
    assert config.out == Path("from-file")
    assert config.timeouts.read == 5.0
    config = load_config({"base_url": "https://flag.example"}, env, cfg)
    assert config.base_url == "https://flag.example"


def test_config_file_refuses_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "ukg.toml"
    cfg.write_text('base_url = "https://h"\nclient_secret = "oops"\n')
    with pytest.raises(ConfigError, match="secrets belong in the environment") as info:
        load_config({}, ENV, cfg)
    assert "oops" not in str(info.value)


def test_config_file_errors_are_clear(tmp_path: Path) -> None:
    cfg = tmp_path / "ukg.toml"
    cfg.write_text("base_url = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config({}, ENV, cfg)
    cfg.write_text('base_url = "https://h"\nmax_rat = 3\n')
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config({}, ENV, cfg)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config({}, ENV, tmp_path / "missing.toml")


def test_dialect_from_file(tmp_path: Path) -> None:
    cfg = tmp_path / "ukg.toml"
    cfg.write_text('base_url = "https://h"\n[api]\napi_key_header = "X-Api-Key"\n')
    assert load_config({}, ENV, cfg).dialect.api_key_header == "X-Api-Key"


def test_invalid_values() -> None:
    with pytest.raises(ConfigError, match="max-rate"):
        load_config({"base_url": "https://h", "max_rate": -1.0}, ENV)
    with pytest.raises(ConfigError, match="max-concurrency"):
        load_config({"base_url": "https://h", "max_concurrency": 0}, ENV)


def test_pool_stays_within_half_the_open_files_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from extractor import _pipeline
    from extractor._rate import DEFAULT_RATE_SETTINGS

    creds = Credentials(client_id="id", client_secret="secret", api_key="key")
    config = ExportConfig(base_url="https://h", credentials=creds)
    monkeypatch.setattr(_pipeline, "_open_files_limit", lambda: 1 << 20)
    assert _pipeline.rate_settings_for(config) == DEFAULT_RATE_SETTINGS
    monkeypatch.setattr(_pipeline, "_open_files_limit", lambda: 256)
    assert _pipeline.rate_settings_for(config).max_concurrency == 128
    monkeypatch.setattr(_pipeline, "_open_files_limit", lambda: 20)
    assert _pipeline.rate_settings_for(config).max_concurrency == _pipeline.MIN_POOL
    # an explicit ceiling is the admin's call
    explicit = ExportConfig(base_url="https://h", credentials=creds, max_concurrency=300)
    assert _pipeline.rate_settings_for(explicit).max_concurrency == 300
    assert _pipeline._open_files_limit() > 0


def _write(tmp_path: Path, body: str) -> Path:
    cfg = tmp_path / "ukg.toml"
    cfg.write_text('[ukg-extract]\nbase_url = "https://h"\n' + body)
    return cfg


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('employment_details = "false"', 'employment_details must be true or false, got "false"'),
        ('progress = "fancy"', 'progress must be one of auto, bar, log, quiet, got "fancy"'),
        ('log_format = "xml"', 'log_format must be one of text, json, got "xml"'),
        ('max_rate = "fast"', 'max_rate must be a number, got "fast"'),
        ("max_rate = nan", "max_rate must be a number, got NaN"),
        ("max_concurrency = 2.5", "max_concurrency must be a whole number, got 2.5"),
        ("max_concurrency = true", "max_concurrency must be a whole number, got true"),
        ("out = 5", "out must be a path (a string), got 5"),
        ("region = 1", "region must be a string, got 1"),
        (
            '[ukg-extract.retry]\nmax_attempts = "x"',
            '[retry] max_attempts must be a whole number, got "x"',
        ),
        ('[ukg-extract.timeouts]\nread = "5"', '[timeouts] read must be a number, got "5"'),
        (
            "[ukg-extract.api]\nmax_page_size = 2.0",
            "[api] max_page_size must be a whole number, got 2.0",
        ),
        ("[ukg-extract.api]\ntoken_path = 3", "[api] token_path must be a string, got 3"),
    ],
)
def test_config_file_types_are_checked(tmp_path: Path, body: str, message: str) -> None:
    cfg = _write(tmp_path, body + "\n")
    with pytest.raises(ConfigError) as info:
        load_config({}, ENV, cfg)
    assert str(info.value) == f"config {cfg}: {message}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[ukg-extract.timeouts]\nread = -1", "[timeouts] read must be positive, got -1"),
        ("[ukg-extract.timeouts]\nconnect = 0", "[timeouts] connect must be positive, got 0"),
        ("[ukg-extract.retry]\nmax_attempts = 0", "[retry] max_attempts must be at least 1, got 0"),
        ("[ukg-extract.retry]\ncap = -2.5", "[retry] cap must be positive, got -2.5"),
        ("[ukg-extract.api]\nmax_page_size = 0", "[api] max_page_size must be at least 1, got 0"),
    ],
)
def test_config_file_sub_table_ranges(tmp_path: Path, body: str, message: str) -> None:
    cfg = _write(tmp_path, body + "\n")
    with pytest.raises(ConfigError) as info:
        load_config({}, ENV, cfg)
    assert str(info.value) == f"config {cfg}: {message}"


def test_zero_max_page_size_named_before_page_size() -> None:
    from extractor._config import ApiDialect

    creds = Credentials(client_id="c", client_secret="s", api_key="k")
    with pytest.raises(ConfigError, match=r"^\[api\] max_page_size must be at least 1, got 0$"):
        ExportConfig(base_url="https://h", credentials=creds, dialect=ApiDialect(max_page_size=0))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"log_interval": 0.0}, "--log-interval must be positive, got 0.0"),
        ({"log_interval": -5.0}, "--log-interval must be positive, got -5.0"),
        ({"checkpoint_interval": 0.0}, "--checkpoint-interval must be positive, got 0.0"),
        ({"catch_up_passes": -1}, "--catch-up-passes must be 0 or more, got -1"),
    ],
)
def test_interval_and_pass_flags_checked(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"base_url": "https://h", **flags}, ENV)
    assert str(info.value) == message


def test_direct_construction_is_type_checked() -> None:
    creds = Credentials(client_id="c", client_secret="s", api_key="k")
    with pytest.raises(ConfigError, match=r"^max_concurrency must be a whole number, got 2\.5$"):
        ExportConfig(base_url="https://h", credentials=creds, max_concurrency=2.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:99999", "http://127.0.0.1:abc", "http://127.0.0.1:0/x"]
)
def test_bad_ports_rejected(url: str) -> None:
    with pytest.raises(ConfigError, match="port must be a number from 1 to 65535"):
        resolve_base_url(url, None)


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2pw@service.ultipro.com",
        "http://user:hunter2pw@127.0.0.1:8080",
        "ftp://user:hunter2pw@h",
        "https://user:hunter2pw@h:99999",
        "https://hunter2pw@h",
    ],
)
def test_user_info_in_base_url_refused_without_echo(url: str) -> None:
    with pytest.raises(ConfigError, match="must not contain a user name or password") as info:
        load_config({"base_url": url}, ENV)
    assert "hunter2pw" not in str(info.value)
    assert "UKG_CLIENT_SECRET" in str(info.value)


def test_unreadable_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({}, ENV, tmp_path)
    assert str(info.value).startswith(f"config file {tmp_path} cannot be read")
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes('base_url = "https://h"\n# caf\xe9\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="is not UTF-8 text") as info:
        load_config({}, ENV, cfg)
    assert str(cfg) in str(info.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[ukg-extract.credentials]\nclient_secret = "topsecret-99"',
            "secrets belong in the environment",
        ),
        (
            '[ukg-extract.credentials]\napi_key = "topsecret-99"',
            "secrets belong in the environment",
        ),
        ('[ukg-extract.dialect]\ntoken_path = "/t"', "go in [api]"),
    ],
)
def test_credentials_and_dialect_keys_refused(tmp_path: Path, body: str, message: str) -> None:
    cfg = _write(tmp_path, body + "\n")
    with pytest.raises(ConfigError) as info:
        load_config({}, ENV, cfg)
    assert message in str(info.value)
    assert "topsecret-99" not in str(info.value)


def test_unknown_key_list_omits_credentials_and_dialect(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({}, ENV, _write(tmp_path, "nope = 1\n"))
    known = str(info.value).partition("known: ")[2].split(", ")
    assert "credentials" not in known
    assert "dialect" not in known
    assert "log_interval" in known
