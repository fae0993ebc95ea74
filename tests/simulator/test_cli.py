"""``python -m extractor.simulator``: flags, the announced URL and credentials, clean exit."""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from extractor.simulator import SimulatorConfig
from extractor.simulator.cli import add_arguments, config_from_args, run

ROOT = Path(__file__).resolve().parents[2]


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_no_flags_mean_the_default_config() -> None:
    assert config_from_args(_parse()) == SimulatorConfig()


def test_every_knob_has_a_flag() -> None:
    config = config_from_args(
        _parse(
            *("--port", "8123", "--employees", "77", "--seed", "9", "--companies", "3"),
            *("--token-lifetime", "60", "--rate-limit", "25", "--burst", "50"),
            *("--max-in-flight", "8", "--retry-after", "--latency-ms", "12"),
            *("--jitter-ms", "3", "--slow-tail-prob", "0.01", "--slow-tail-ms", "500"),
            *("--error-rate", "0.02", "--reset-rate", "0.01", "--truncate-rate", "0.01"),
            *("--stall-rate", "0.005", "--stall-seconds", "20", "--churn-rate", "2"),
            *("--churn-mix", "1,2,3,4", "--change-window-days", "14", "--sensitive-access"),
            *("--feed-blind-fields", "jobTitle, locationId", "--churn-blind-share", "0.25"),
        )
    )
    assert config == SimulatorConfig(
        port=8123,
        employees=77,
        seed=9,
        companies=3,
        token_lifetime=60,
        rate_limit=25,
        burst=50,
        max_in_flight=8,
        retry_after=True,
        latency_ms=12,
        jitter_ms=3,
        slow_tail_prob=0.01,
        slow_tail_ms=500,
        error_rate=0.02,
        reset_rate=0.01,
        truncate_rate=0.01,
        stall_rate=0.005,
        stall_seconds=20,
        churn_rate=2,
        churn_mix=(1, 2, 3, 4),
        change_window_days=14,
        default_sensitive_access=True,
        feed_blind_fields=("jobTitle", "locationId"),
        churn_blind_share=0.25,
    )


def test_a_bad_churn_mix_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parse("--churn-mix", "1,2")
    assert exit_info.value.code == 2
    assert "four" in capsys.readouterr().err


def test_an_invalid_knob_value_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_parse("--error-rate", "1.5")) == 2
    assert "error_rate" in capsys.readouterr().err


def test_an_unknown_blind_field_exits_2_naming_the_valid_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(_parse("--feed-blind-fields", "jobTitle,workPhone")) == 2
    err = capsys.readouterr().err
    assert "'workPhone'" in err
    assert "jobTitle, lastName, locationId" in err


def _start(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], list[str]]:
    """Start the CLI and read its first four stdout lines (URL and credentials)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "extractor.simulator", "--employees", "50", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    buffered = b""
    deadline = time.monotonic() + 30
    # os.read on the raw pipe: a buffered readline would hide lines from select().
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while buffered.count(b"\n") < 4 and time.monotonic() < deadline:
            if selector.select(timeout=0.5):
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    break
                buffered += chunk
    return process, buffered.decode().splitlines()


def _token(base_url: str, client_id: str, client_secret: str) -> str:
    form = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
    ).encode()
    with urllib.request.urlopen(f"{base_url}/authentication/v1/token", form, timeout=10) as reply:
        token: str = json.loads(reply.read())["access_token"]
        return token


def _stop(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    return process.returncode, err.decode()


def test_cli_announces_url_and_env_credentials_without_secrets() -> None:
    env = {"UKG_CLIENT_ID": "cli-id", "UKG_CLIENT_SECRET": "s3cr3t-value", "UKG_API_KEY": "K3Y"}
    process, lines = _start(env)
    try:
        assert lines, "no base URL line"
        base_url = lines[0]
        assert base_url.startswith("http://127.0.0.1:")
        printed = "\n".join(lines)
        assert "cli-id" in printed
        assert "s3cr3t-value" not in printed
        assert "K3Y" not in printed
        assert "UKG_CLIENT_SECRET" in printed
        assert _token(base_url, "cli-id", "s3cr3t-value")
    finally:
        code, err = _stop(process)
    assert code == 0
    assert "s3cr3t-value" not in err


def test_cli_prints_made_up_credentials_that_work() -> None:
    env = dict.fromkeys(("UKG_CLIENT_ID", "UKG_CLIENT_SECRET", "UKG_API_KEY"), "")
    process, lines = _start(env)
    try:
        exports = dict(
            line.removeprefix("export ").split("  #")[0].split("=", 1)
            for line in lines[1:]
            if line.startswith("export ")
        )
        assert set(exports) == {"UKG_CLIENT_ID", "UKG_CLIENT_SECRET", "UKG_API_KEY"}
        assert _token(lines[0], exports["UKG_CLIENT_ID"], exports["UKG_CLIENT_SECRET"])
    finally:
        code, _ = _stop(process)
    assert code == 0
