"""The command line as a scheduler runs it: real subprocesses, real signals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extractor.simulator import SimulatorConfig, run_in_thread
from tests.conftest import (
    API_KEY,
    CLIENT_SECRET,
    ENV,
    assert_same_rows,
    expected_frame,
    snapshot_frame,
)
from tests.conftest import (
    sim_config as shared_sim_config,
)


def sim_config(**knobs: Any) -> SimulatorConfig:
    return shared_sim_config(**{"employees": 400, "seed": 5, **knobs})


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **ENV, **(env or {})}
    full_env.pop("UKG_BASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "extractor", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


@pytest.fixture
def sim() -> Iterator[Any]:
    with run_in_thread(sim_config(), env={}) as handle:
        yield handle


def test_export_exit_0_and_no_secret_anywhere(sim: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = cli("export", "--out", str(out), "--base-url", sim.base_url, "--log-format", "json")
    assert proc.returncode == 0, proc.stderr
    snapshot_dir = Path(proc.stdout.strip().splitlines()[-1])
    assert snapshot_dir.is_dir()
    for line in proc.stderr.splitlines():
        json.loads(line)  # every log line is JSON for the shipper
    texts = [proc.stdout, proc.stderr]
    texts += [p.read_text() for p in out.rglob("*.json")]
    texts += [p.read_text() for p in out.rglob("*.jsonl")]
    for text in texts:
        assert CLIENT_SECRET not in text
        assert API_KEY not in text


def test_help_names_the_environment_and_the_exit_codes() -> None:
    for command in ("export", "sync"):
        proc = cli(command, "--help")
        assert proc.returncode == 0
        for text in ("UKG_CLIENT_SECRET", "UKG_API_KEY", "exit codes", "--allow-partial"):
            assert text in proc.stdout


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    proc = cli("export", "--out", str(tmp_path), "--region", "mars")
    assert proc.returncode == 2
    assert "unknown region" in proc.stderr
    proc = cli("export", "--out", str(tmp_path), "--base-url", "http://example.com")
    assert proc.returncode == 2
    assert "refusing plain http" in proc.stderr
    proc = cli("export", "--out", str(tmp_path), "--base-url", "https://h", env={"UKG_API_KEY": ""})
    assert proc.returncode == 2
    assert "UKG_API_KEY" in proc.stderr


def test_an_unusable_output_folder_is_a_usage_error(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    proc = cli("export", "--out", str(a_file), "--base-url", "https://h")
    assert proc.returncode == 2, proc.stderr
    assert "is a file (or under one), not a folder: choose another with --out" in proc.stderr
    assert "Traceback" not in proc.stderr
    # with --log-format json the last word is a JSON line too
    proc = cli("export", "--out", str(a_file), "--base-url", "https://h", "--log-format", "json")
    assert proc.returncode == 2
    error = json.loads(proc.stderr.strip().splitlines()[-1])
    assert error["level"] == "error"
    assert error["exit_code"] == 2
    assert "not a folder" in error["message"]


def test_a_port_that_does_not_speak_http_fails_at_once_with_a_hint(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_garbage() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:  # a banner, then silence, as an SSH server on the wrong port
                    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                    conn.settimeout(5)
                    with contextlib.suppress(OSError):
                        while conn.recv(65536):
                            pass

    threading.Thread(target=answer_garbage, daemon=True).start()
    try:
        proc = cli("export", "--out", str(tmp_path), "--base-url", f"http://127.0.0.1:{port}")
    finally:
        listener.close()
    assert proc.returncode == 1, proc.stderr
    assert "did not answer in HTTP" in proc.stderr
    assert "check the base URL and its port" in proc.stderr


def test_bad_key_exit_1_names_both_credentials(sim: Any, tmp_path: Path) -> None:
    proc = cli(
        "export",
        "--out",
        str(tmp_path),
        "--base-url",
        sim.base_url,
        env={"UKG_API_KEY": "not-the-key-42"},
    )
    assert proc.returncode == 1
    assert "UKG_API_KEY" in proc.stderr
    assert "bearer" in proc.stderr.lower()
    assert "not-the-key-42" not in proc.stderr + proc.stdout
    assert CLIENT_SECRET not in proc.stderr + proc.stdout


def test_snapshots_command_lists_committed(sim: Any, tmp_path: Path) -> None:
    assert cli("export", "--out", str(tmp_path), "--base-url", sim.base_url).returncode == 0
    proc = cli("snapshots", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    manifests = json.loads(proc.stdout)
    assert len(manifests) == 1
    assert manifests[0]["complete"] is True
    # --out as every other command takes it; piped, the id is printed whole
    proc = cli("snapshots", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert manifests[0]["snapshot_id"] in proc.stdout
    proc = cli("snapshots", "--out", str(tmp_path / "typo"))
    assert proc.returncode == 2
    assert "no output folder" in proc.stderr


def _journal_lines(out: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in out.glob("_staging/*/journal.jsonl"))


def test_kill_9_half_way_then_resume(tmp_path: Path) -> None:
    config = sim_config(employees=3000, latency_ms=2, rate_limit=1000, burst=50)
    with run_in_thread(config, env={}) as sim:
        out = tmp_path / "out"
        env = {**os.environ, **ENV}
        args = [
            sys.executable,
            "-m",
            "extractor",
            "export",
            "--out",
            str(out),
            "--base-url",
            sim.base_url,
            "--checkpoint-interval",
            "0.3",
            "--quiet",
        ]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while _journal_lines(out) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the export finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout and proc.stdout.close()
        proc.stderr and proc.stderr.close()
        assert (
            not list((out / "_snapshots").glob("*.json")) if (out / "_snapshots").exists() else True
        )

        before = sum(sim.stats()["by_endpoint"]["employee"].values())
        sim.reset_stats()
        again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        refetched = sum(sim.stats()["by_endpoint"]["employee"].values())
        truth = sim.truth()

    snapshot_id = Path(again.stdout.strip().splitlines()[-1]).name.split("=", 1)[1]
    frame = snapshot_frame(out, snapshot_id)
    assert_same_rows(frame, expected_frame(truth))
    manifest = json.loads((out / "_snapshots" / f"{snapshot_id}.json").read_text())
    resumed = manifest["counts"]["resumed_from_checkpoint"]
    assert resumed > 0, "the rerun should have continued the killed snapshot"
    # only what had not been written is fetched again
    assert refetched <= 3000 - resumed + 50
    assert before + refetched >= 3000


def test_failed_employees_exit_1_then_allow_partial_exit_3(tmp_path: Path) -> None:
    knobs = sim_config(error_rate=0.5, fault_endpoints=("employee",))
    config = tmp_path / "ukg.toml"
    config.write_text("[ukg-extract.retry]\nmax_attempts = 1\nbase = 0.01\ncap = 0.01\n")
    out = tmp_path / "out"
    with run_in_thread(knobs, env={}) as sim:
        base = ["export", "--out", str(out), "--base-url", sim.base_url, "--config", str(config)]
        failed = cli(*base)
        assert failed.returncode == 1, failed.stderr
        assert "could not be fetched" in failed.stderr
        assert "--allow-partial" in failed.stderr
        assert not (out / "_snapshots").exists() or not list((out / "_snapshots").iterdir())

        # the rerun resumes and retries only the failed ones; now every retry fails too
        sim.set_knobs(error_rate=1.0)
        partial = cli(*base, "--allow-partial")
        assert partial.returncode == 3, partial.stderr
    manifests = list((out / "_snapshots").glob("*.json"))
    assert len(manifests) == 1
    manifest = json.loads(manifests[0].read_text())
    assert manifest["complete"] is False
    failed_count = manifest["counts"]["failed"]
    assert failed_count > 0
    assert len(manifest["failed_ids"]) == failed_count
    assert manifest["tables"]["employees"]["rows"] + failed_count == 400
    assert manifest["counts"]["resumed_from_checkpoint"] == 400 - failed_count


def test_sigterm_checkpoints_exits_1_and_the_rerun_resumes(tmp_path: Path) -> None:
    config = sim_config(employees=3000, latency_ms=2, rate_limit=800, burst=50)
    with run_in_thread(config, env={}) as sim:
        out = tmp_path / "out"
        env = {**os.environ, **ENV}
        args = [
            sys.executable, "-m", "extractor", "export", "--out", str(out),
            "--base-url", sim.base_url, "--checkpoint-interval", "60", "--quiet",
        ]  # fmt: skip
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            fetched = sum(sim.stats()["by_endpoint"].get("employee", {}).values())
            if fetched >= 500:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the export finished before it could be stopped"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 1, stderr
        assert b"rerun the same command to resume" in stderr
        # the long checkpoint interval never fired: what was written got journaled on the way out
        assert _journal_lines(out) >= 1
        again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        truth = sim.truth()
    snapshot_id = Path(again.stdout.strip().splitlines()[-1]).name.split("=", 1)[1]
    assert_same_rows(snapshot_frame(out, snapshot_id), expected_frame(truth))
    manifest = json.loads((out / "_snapshots" / f"{snapshot_id}.json").read_text())
    assert manifest["counts"]["resumed_from_checkpoint"] > 0
