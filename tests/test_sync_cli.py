"""`ukg-extract sync` as a scheduler runs it: real subprocesses, real signals."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from extractor._snapshot import list_snapshots
from extractor.simulator import run_in_thread
from tests.conftest import ENV, assert_same_rows, expected_frame, sim_config, snapshot_frame


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "extractor", *args]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV}
    env.pop("UKG_BASE_URL", None)
    return subprocess.run(command(*args), capture_output=True, text=True, env=env, timeout=timeout)


def snapshot_of(stdout: str) -> str:
    return Path(stdout.strip().splitlines()[-1]).name.split("=", 1)[1]


def test_sync_without_a_base_exits_2_and_says_what_to_do(tmp_path: Path) -> None:
    with run_in_thread(sim_config(employees=50, seed=3), env={}) as sim:
        done = run("sync", "--out", str(tmp_path), "--base-url", sim.base_url, "--quiet")
    assert done.returncode == 2, done.stderr
    assert "ukg-extract export" in done.stderr
    assert "--full-if-missing" in done.stderr


def _fetched_files_journaled(out: Path) -> int:
    """Journaled files of fetched (not carried) rows in the sync being staged."""
    count = 0
    for journal in out.glob("_staging/*/journal.jsonl"):
        for line in journal.read_text().splitlines():
            with contextlib.suppress(ValueError):
                count += json.loads(line).get("pass", 0) >= 1
    return count


def test_kill_9_during_sync_then_rerun(tmp_path: Path) -> None:
    knobs: dict[str, Any] = {"latency_ms": 2, "rate_limit": 400, "burst": 50}
    with run_in_thread(sim_config(employees=3000, seed=9, **knobs), env={}) as sim:
        out = str(tmp_path)
        where = ["--out", out, "--base-url", sim.base_url, "--quiet"]
        assert run("export", *where).returncode == 0
        first = run("sync", *where, "--full-every", "never")
        assert first.returncode == 0, first.stderr
        state = tmp_path / "_state" / "sync.json"
        state_before = state.read_bytes()

        sim.churn(hires=50, updates=1500, deletions=30)
        sim.reset_stats()
        args = command("sync", *where, "--full-every", "never", "--checkpoint-interval", "0.3")
        proc = subprocess.Popen(
            args, env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if _fetched_files_journaled(tmp_path) >= 1:  # a checkpoint of fetched rows landed
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the sync finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        assert state.read_bytes() == state_before, "the state moved before a commit"
        assert len(list_snapshots(tmp_path)) == 2

        again = run("sync", *where, "--full-every", "never")
        assert again.returncode == 0, again.stderr
        truth = sim.truth()
    snapshot_id = snapshot_of(again.stdout)
    assert_same_rows(snapshot_frame(tmp_path, snapshot_id), expected_frame(truth))
    assert snapshot_id in state.read_text()
    manifest = list_snapshots(tmp_path)[-1].manifest
    assert manifest["mode"] == "incremental"
    assert manifest["counts"]["resumed_from_checkpoint"] > 0


def test_watch_syncs_on_a_schedule_until_sigterm(tmp_path: Path) -> None:
    with run_in_thread(sim_config(employees=200, seed=4), env={}) as sim:
        where = ["--out", str(tmp_path), "--base-url", sim.base_url, "--quiet"]
        assert run("export", *where).returncode == 0
        proc = subprocess.Popen(
            command("sync", *where, "--watch", "0.5s"),
            env={**os.environ, **ENV},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list_snapshots(tmp_path)) >= 3:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        truth = sim.truth()
    snapshots = list_snapshots(tmp_path)
    assert len(snapshots) >= 3
    assert all(s.complete for s in snapshots)
    assert {s.mode for s in snapshots[1:]} == {"incremental"}
    # each round printed where its snapshot is
    assert len(stdout.decode().strip().splitlines()) == len(snapshots) - 1
    assert_same_rows(snapshot_frame(tmp_path, snapshots[-1].snapshot_id), expected_frame(truth))
