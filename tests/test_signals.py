"""SIGTERM (Slurm preemption, docker stop, kill) is handled like Ctrl-C: a message saying what is
stored and how to continue, the in-cell checkpoint kept, exit 143; a rerun computes only the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import BenchError
from harness.store.results import ResultStore

# 2 cells (tiny-wav2vec2 and tiny-hubert on German), each long enough to be stopped mid-cell,
# a checkpoint every ~0.1 s, one thread so that every run computes the same arithmetic
CELLS = ("--langs", "de", "--set", "train.steps=30", "--set", "run.checkpoint_minutes=0.002",
         "--set", "run.threads=1")


def _bench(config: Path, cache_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.cli.main", "run", "--config", str(config),
                             "--no-progress", *CELLS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "BENCH_CACHE_DIR": str(cache_dir)}, cwd=config.parent)


def _results(store: Path) -> dict:
    try:
        with ResultStore(store, readonly=True) as db:
            return {(c.model, c.language, c.seed): (c.metrics, c.record["train"]["loss_curve"]) for c in db.cells()}
    except BenchError:  # not made yet, or being made right now
        return {}


def _wait_for(condition, what: str, timeout_s: float = 300) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_terminated_maps_to_exit_143():
    from harness.run.signals import Terminated, exit_code, terminate_as_interrupt

    assert exit_code(Terminated(signal.SIGTERM)) == 143 and exit_code(KeyboardInterrupt()) == 130
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as caught, terminate_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at the next bytecode
    assert isinstance(caught.value, Terminated) and caught.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


@pytest.mark.slow
def test_sigterm_mid_cell_keeps_the_checkpoint_and_a_rerun_computes_only_the_rest(small_config, cache_dir, tmp_path):
    store = small_config.parent / "results.sqlite"
    checkpoints = cache_dir / "checkpoints"
    process = _bench(small_config, cache_dir)
    # stop it in the second cell, once that cell has written an in-cell checkpoint
    _wait_for(lambda: len(_results(store)) == 1 and any(checkpoints.glob("*.pt")), "the second cell's checkpoint")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "interrupted (SIGTERM): 1 cell(s) finished in this run; 1 of the 2 planned cells are stored in" in err
    assert f"keeps its in-cell checkpoint in {checkpoints}" in err and "Run the same command again" in err
    assert "Traceback" not in err
    (kept,) = list(checkpoints.glob("*.pt"))
    finished = _results(store)
    with ResultStore(store, readonly=True) as db:
        assert db._db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # released for the next run

    again = _bench(small_config, cache_dir)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert "1 cells computed, 1 already stored" in out
    assert "resumed at update" in err  # from the kept checkpoint, not from the start
    assert not kept.exists()  # removed once the cell is stored
    resumed = _results(store)
    assert {k: resumed[k] for k in finished} == finished

    other = tmp_path / "uninterrupted"
    other.mkdir()
    (other / "bench.toml").write_text(small_config.read_text())
    clean = _bench(other / "bench.toml", cache_dir)
    out, err = clean.communicate(timeout=600)
    assert clean.returncode == 0, err
    assert _results(other / "results.sqlite") == resumed


@pytest.mark.slow
def test_sigterm_stops_local_worker_processes_too(small_config, cache_dir):
    """With worker processes only the ``bench run`` process gets the signal; it ends its workers
    (their checkpoints stay) instead of waiting for their cells."""
    checkpoints = cache_dir / "checkpoints"
    for stale in checkpoints.glob("*.pt"):
        stale.unlink()
    process = _bench(small_config, cache_dir, "--set", "executors.local.workers=2")
    _wait_for(lambda: any(checkpoints.glob("*.pt")), "a worker's checkpoint")
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "interrupted (SIGTERM)" in err and any(checkpoints.glob("*.pt"))
    time.sleep(1.0)
    for pid in children:  # the pool's workers are gone
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()

    again = _bench(small_config, cache_dir, "--set", "executors.local.workers=2")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert "resumed at update" in err
    assert not any(checkpoints.glob("*.pt"))
