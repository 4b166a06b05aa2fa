"""Faults: failing cells, out-of-memory retries, kills, resumption and concurrent runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness.store.results import ResultStore
from conftest import install_fake_distribution

BROKEN_PLUGIN = '''
import os
from harness.api import ModelSpec
from harness.hookspecs import hookimpl
from plugins.models.hf import TINY_ARCHITECTURES, build_tiny


def build(request):
    if os.environ.get("BENCH_TEST_BREAK"):
        raise RuntimeError("planted failure in a model plugin")
    return build_tiny("wav2vec2", request)


@hookimpl
def bench_register_models(register):
    register(ModelSpec("sometimes-broken", build, version="1"))
'''


@pytest.fixture()
def broken_plugin(tmp_path, monkeypatch) -> Path:
    return install_fake_distribution(tmp_path, monkeypatch, "broken_bench", BROKEN_PLUGIN, "broken-bench", "broken")


def _metrics(store_path: Path) -> dict:
    with ResultStore(store_path) as store:
        return {(c.model, c.language, c.seed): c.metrics for c in store.cells()}


def test_a_failing_cell_is_recorded_and_the_matrix_goes_on(bench, small_config, broken_plugin, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_BREAK", "1")
    args = ("run", "--config", str(small_config), "--models", "sometimes-broken,tiny-wav2vec2", "--langs", "de")
    code, out, err = bench(*args)
    assert code == 3, err
    assert "1 cells computed" in out and "FAILED sometimes-broken / synthetic:de / seed 0" in err
    assert "planted failure in a model plugin" in err and "--retry-failed" in err
    with ResultStore(small_config.parent / "results.sqlite") as store:
        (failure,) = store.failures()
        assert failure.kind == "error" and failure.attempts == 1 and "Traceback" in failure.detail
        assert [c.model for c in store.cells()] == ["tiny-wav2vec2"]

    code, out, err = bench(*args)  # not retried unless asked
    assert code == 3 and "0 cells computed" in out and "failed before (not retried" in err
    code, out, _ = bench("failures", *args[1:])  # the failures of the selected cells
    assert code == 0 and "planted failure" in out and "Traceback" in out
    code, out, _ = bench("failures", "--config", str(small_config))  # another selection: not shown
    assert code == 0 and "planted failure" not in out and "1 other failure(s)" in out and "--all" in out
    code, out, _ = bench("failures", "--config", str(small_config), "--all")
    assert code == 0 and "planted failure" in out

    monkeypatch.delenv("BENCH_TEST_BREAK")  # "fixed"
    code, out, err = bench(*args, "--retry-failed")
    assert code == 0, err
    assert "1 cells computed, 1 already stored" in out
    with ResultStore(small_config.parent / "results.sqlite") as store:
        assert store.failures() == [] and len(store.cells()) == 2


def test_out_of_memory_retries_with_smaller_micro_batches(bench, small_config, monkeypatch):
    from plugins.protocols import finetune

    real = finetune.fine_tune
    seen = []

    def tight_memory(request, *args, **kwargs):
        seen.append((request.train.batch_seconds, request.train.grad_accum))
        if request.train.batch_seconds > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (planted)")
        return real(request, *args, **kwargs)

    monkeypatch.setattr(finetune, "fine_tune", tight_memory)
    args = ("run", "--config", str(small_config), "--models", "tiny-wav2vec2", "--langs", "de")
    code, out, err = bench(*args)
    assert code == 0, err
    assert seen == [(8.0, 1), (4.0, 2), (2.0, 4)]  # the same effective batch each time
    assert "out of memory in tiny-wav2vec2" in err
    with ResultStore(small_config.parent / "results.sqlite") as store:
        (cell,) = store.cells()
    assert cell.record["oom_retries"] == 2
    assert cell.record["effective_batching"] == {"batch_seconds": 2.0, "grad_accum": 4, "eval_batch_seconds": 15.0}
    assert cell.record["identity"]["train"]["batch_seconds"] == 8.0  # the cell (and its key) is unchanged

    seen.clear()
    code, out, err = bench(*args, "--seeds", "2", "--set", "run.oom_retries=1")
    assert code == 3 and seen == [(8.0, 1), (4.0, 2)]
    with ResultStore(small_config.parent / "results.sqlite") as store:
        (failure,) = store.failures()
    assert failure.kind == "oom" and "out of memory" in failure.message
    # the message says where it ran out and which setting to lower
    assert "on cpu while training with 4 s micro-batches x 2, after 1 retry" in failure.message
    assert "lower train.batch_seconds (now 8;" in failure.message


def test_out_of_memory_while_decoding_names_the_evaluation_batch():
    from harness.run.cell import out_of_memory_message
    from harness.plan.config import RunConfig, RuntimeSettings

    def evaluate():  # where the loop decodes
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB (planted)\nmore lines")

    config = RunConfig()
    try:
        evaluate()
    except torch.OutOfMemoryError as exc:
        message = out_of_memory_message(exc, config.train, RuntimeSettings(device="cpu", eval_batch_seconds=15.0),
                                        2, config)
    assert "while decoding with 15 s evaluation batches, after 2 retries" in message
    assert "Tried to allocate 9.00 GiB (planted) --" in message and "more lines" not in message
    assert "lower run.eval_batch_seconds (now 60)" in message


def test_training_resumes_exactly_from_its_checkpoint(tmp_path, monkeypatch, cache_dir):
    """A cell stopped right after a checkpoint ends with the numbers of an uninterrupted one."""
    from harness.api import DatasetRequest
    from harness.plan.config import RuntimeSettings, TrainSettings
    from harness.plugins import load_registry
    from harness.engine import Checkpointer, fine_tune_and_evaluate

    registry = load_registry()
    data = registry.dataset("synthetic").spec.load(DatasetRequest(
        "de", 0, {"train_minutes": 0.3, "dev_minutes": 0.1, "test_minutes": 0.1}, cache_dir / "datasets" / "synthetic"))
    build = registry.model("tiny-hubert").spec.build
    train = TrainSettings(steps=30, batch_seconds=8.0, mask_time_prob=0.1)  # masking: the NumPy RNG matters too
    runtime = RuntimeSettings(checkpoint_minutes=1e-9)  # a checkpoint after every update
    metrics = [registry.metric("cer").spec]

    def run(path):
        return fine_tune_and_evaluate(build, data, "de", 0, train, runtime, metrics, checkpoint=path)

    reference = run(tmp_path / "a.pt")

    class Killed(BaseException):
        pass

    saves = []
    original = Checkpointer.save

    def save_then_die(self, state):
        original(self, state)
        saves.append(state.update)
        if state.update == 17:
            raise Killed()

    monkeypatch.setattr(Checkpointer, "save", save_then_die)
    with pytest.raises(Killed):
        run(tmp_path / "b.pt")
    monkeypatch.setattr(Checkpointer, "save", original)
    resumed = run(tmp_path / "b.pt")
    assert resumed.train_info["resumed_from_update"] == 17
    assert resumed.train_info["loss_curve"] == reference.train_info["loss_curve"]
    for split in ("dev", "test"):
        assert resumed.splits[split].metrics == reference.splits[split].metrics
        assert resumed.splits[split].hypotheses == reference.splits[split].hypotheses


def _bench_process(config: Path, *args: str, env_extra=None) -> subprocess.Popen:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "harness.cli.main", "run", "--config", str(config), "--no-progress",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=config.parent)


SLOW_CELLS = ("--set", "train.steps=40", "--set", "run.checkpoint_minutes=0.002", "--set", "run.threads=1")


@pytest.mark.slow
def test_sigkill_mid_matrix_loses_nothing_and_resumes_to_the_same_result(small_config, cache_dir, tmp_path):
    env = {"BENCH_CACHE_DIR": str(cache_dir)}
    store = small_config.parent / "results.sqlite"
    process = _bench_process(small_config, *SLOW_CELLS, env_extra=env)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it once a cell is stored and the next is under way
        if store.exists() and len(_metrics(store)) >= 1:
            break
        time.sleep(0.2)
    time.sleep(2.0)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before_kill = _metrics(store)
    assert 1 <= len(finished_before_kill) < 4

    again = _bench_process(small_config, *SLOW_CELLS, env_extra=env)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert f"{4 - len(finished_before_kill)} cells computed, {len(finished_before_kill)} already stored" in out
    resumed = _metrics(store)
    for key, value in finished_before_kill.items():
        assert resumed[key] == value  # finished cells were kept, not recomputed

    other = tmp_path / "uninterrupted"
    other.mkdir()
    (other / "bench.toml").write_text(small_config.read_text())
    clean = _bench_process(other / "bench.toml", *SLOW_CELLS, env_extra=env)
    out, err = clean.communicate(timeout=600)
    assert clean.returncode == 0, err
    assert _metrics(other / "results.sqlite") == resumed


@pytest.mark.slow
def test_two_runs_on_one_store_share_the_work(small_config, cache_dir):
    env = {"BENCH_CACHE_DIR": str(cache_dir)}
    first = _bench_process(small_config, "--seeds", "2", *SLOW_CELLS[:2], env_extra=env)
    time.sleep(0.5)
    second = _bench_process(small_config, "--seeds", "2", *SLOW_CELLS[:2], env_extra=env)
    outputs = [p.communicate(timeout=600) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    computed = [int(out.split(" cells computed")[0].split()[-1]) for out, _ in outputs]
    assert sum(computed) == 8  # every cell once, none twice
    with ResultStore(small_config.parent / "results.sqlite") as store:
        assert len(store.cells()) == 8 and store.failures() == []
        assert store._db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
