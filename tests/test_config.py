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
