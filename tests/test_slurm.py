"""The slurm executor against a real Slurm controller (slurmctld + slurmd + munge on this machine,
started by ci/slurm/setup.sh, which .ci/run calls). Skipped where `sinfo` is absent or no node is idle."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.store.results import ResultStore


def _slurm_ready() -> str | None:
    if shutil.which("sinfo") is None:
        return "no Slurm here (`sinfo` not found; ci/slurm/setup.sh installs and starts one)"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"Slurm does not answer ({exc})"
    if "idle" not in states and "mix" not in states:
        return f"no idle Slurm node (sinfo says {states.split() or 'nothing'}; run ci/slurm/setup.sh)"
    return None


_WHY_NOT = _slurm_ready()
if _WHY_NOT is not None and os.environ.get("BENCH_REQUIRE_SLURM"):  # CI: a missing controller is a failure
    raise RuntimeError(f"BENCH_REQUIRE_SLURM is set but {_WHY_NOT}")
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_WHY_NOT is not None, reason=_WHY_NOT or "")]
pytest.importorskip("submitit")

ONE_CELL = ("--models", "tiny-hubert", "--langs", "de", "--set", "run.threads=1")


def _slurm_options(folder: Path, **extra: str) -> list[str]:
    options = {"cpus_per_task": "1", "mem_gb": "1", "gpus_per_node": "0", "timeout_min": "10",
               "poll_seconds": "0.5", "folder": f'"{folder}"', **extra}
    return ["--executor", "slurm"] + [a for k, v in options.items() for a in ("--set", f"executors.slurm.{k}={v}")]


def _cells(path: Path):
    with ResultStore(path, readonly=True) as store:
        return {(c.model, c.language, c.seed): c for c in store.cells()}


def test_rejected_options_are_one_error_before_any_cell(bench, small_config, tmp_path):
    store = tmp_path / "refused.sqlite"
    code, out, err = bench("run", "--config", str(small_config), "--store", str(store), *ONE_CELL,
                           *_slurm_options(tmp_path / "jobs", partition='"no-such-partition"'))
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    (error,) = [line for line in lines if line.startswith("error:")]
    assert "Slurm refused the job" in error and "Invalid partition name" in error
    assert "partition='no-such-partition'" in error
    assert any(line.strip().startswith("hint:") and "sinfo" in line for line in lines)
    assert "Traceback" not in err
    with ResultStore(store, readonly=True) as db:  # nothing computed, nothing left claimed
        assert db.cells() == [] and db.failures() == []
        assert db._db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


@pytest.mark.slow
def test_real_jobs_compute_the_in_process_result(bench, small_config, tmp_path):
    code, out, err = bench("run", "--config", str(small_config), "--store", str(tmp_path / "slurm.sqlite"), *ONE_CELL,
                           *_slurm_options(tmp_path / "jobs"))
    assert code == 0, err
    assert "1 cells computed" in out
    (cell,) = _cells(tmp_path / "slurm.sqlite").values()
    node = cell.record["node"]
    assert node["executor"] == "slurm" and node["job_id"] and node["host"] and node["restarts"] == 0

    assert bench("run", "--config", str(small_config), "--store", str(tmp_path / "here.sqlite"), *ONE_CELL)[0] == 0
    (here,) = _cells(tmp_path / "here.sqlite").values()
    assert cell.metrics == here.metrics and cell.record["train"]["loss_curve"] == here.record["train"]["loss_curve"]


def _job_ids(name_prefix: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i %j"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[1].startswith(name_prefix)]


@pytest.mark.slow
def test_preempted_job_is_requeued_and_resumes_from_its_checkpoint(small_config, cache_dir, tmp_path):
    """Slurm preemption as `scancel --signal=TERM` then `scontrol requeue`: the job starts again and
    the cell resumes from its in-cell checkpoint, with the numbers of an uninterrupted run."""
    # long enough that the requeue's kill comes before the end: the job ignores SIGTERM (submitit) and
    # Slurm kills it only after KillWait (5 s), so a cell finishing within that would never be requeued
    slow = ("--set", "train.steps=300", "--set", "run.checkpoint_minutes=0.002")
    env = {**os.environ, "BENCH_CACHE_DIR": str(cache_dir)}
    store = tmp_path / "preempted.sqlite"
    checkpoints = cache_dir / "checkpoints"
    for stale in checkpoints.glob("*.pt"):
        stale.unlink()
    run = subprocess.Popen([sys.executable, "-m", "harness.cli.main", "run", "--config", str(small_config),
                            "--no-progress", "--store", str(store), *ONE_CELL, *slow,
                            *_slurm_options(tmp_path / "jobs")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=env, cwd=small_config.parent)
    try:
        deadline = time.time() + 300
        while not any(checkpoints.glob("*.pt")):  # the job is mid-cell, past its first checkpoint
            assert run.poll() is None and time.time() < deadline, run.communicate()
            time.sleep(0.1)
        (job,) = _job_ids("bench-tiny-hubert-de")
        subprocess.run(["scancel", "--signal=TERM", job], check=True)
        time.sleep(0.5)
        subprocess.run(["scontrol", "requeue", job], check=True)
        out, err = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    assert "1 cells computed" in out
    (cell,) = _cells(store).values()
    assert cell.record["node"]["job_id"] == job and cell.record["node"]["restarts"] >= 1
    assert cell.record["train"]["resumed_from_update"] > 0
    assert not any(checkpoints.glob("*.pt"))

    here = tmp_path / "here"
    here.mkdir()
    (here / "bench.toml").write_text(small_config.read_text())
    clean = subprocess.run([sys.executable, "-m", "harness.cli.main", "run", "--config", str(here / "bench.toml"),
                            "--no-progress", *ONE_CELL, *slow], capture_output=True, text=True, env=env, cwd=here)
    assert clean.returncode == 0, clean.stderr
    (reference,) = _cells(here / "results.sqlite").values()
    assert cell.metrics == reference.metrics
    assert cell.record["train"]["loss_curve"] == reference.record["train"]["loss_curve"]
