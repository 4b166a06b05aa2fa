"""The shared feature store and the local executor's workers: same numbers, less work."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.api import DatasetRequest, ProtocolRequest
from harness.engine import fine_tune
from harness.engine.feature_store import FeatureStore, tensor_digest
from harness.plan.config import RuntimeSettings, TrainSettings
from harness.plugins import load_registry
from harness.run.executors.local import MIN_UPDATES_FOR_WORKERS, LocalExecutor, available_cores, cpu_workers

from conftest import install_fake_distribution


def _data(cache_dir: Path):
    spec = load_registry().dataset("synthetic").spec
    options = {"train_minutes": 0.4, "dev_minutes": 0.1, "test_minutes": 0.1}
    return spec.load(DatasetRequest("es", 0, options, cache_dir / "datasets" / "synthetic"))


def _cell(data, store: Path | None, freeze: bool = True, gigabytes: float = 1.0):
    build = load_registry().model("tiny-wav2vec2").spec.build
    train = TrainSettings(steps=6, lr=2e-3, batch_seconds=8.0, mask_time_prob=0.0, freeze_feature_encoder=freeze)
    runtime = RuntimeSettings(device="cpu", checkpoint_minutes=0, feature_store_gb=gigabytes)
    request = ProtocolRequest(build_model=build, data=data, language="es", seed=0, train=train, runtime=runtime,
                              options={}, feature_store=store)
    return fine_tune(request)


def _same(a, b) -> None:
    assert a.train_info["loss_curve"] == b.train_info["loss_curve"]
    for split in ("dev", "test"):
        assert a.splits[split].hypotheses == b.splits[split].hypotheses
        for key, value in a.splits[split].log_probs.items():
            np.testing.assert_array_equal(value, b.splits[split].log_probs[key])


def test_a_stored_split_gives_exactly_the_numbers_of_computing_it(cache_dir, tmp_path):
    data = _data(cache_dir)
    store = tmp_path / "features"
    first = _cell(data, store)
    assert first.train_info["features_shared"] == {"train": False, "dev": False, "test": False}
    assert len(list(store.glob("*.pt"))) == 3  # train, dev and test of this encoder
    again = _cell(data, store)
    assert again.train_info["features_shared"] == {"train": True, "dev": True, "test": True}
    assert again.train_info["encode_seconds"] < first.train_info["encode_seconds"]
    plain = _cell(data, None)
    assert "features_shared" not in plain.train_info
    _same(first, again)
    _same(first, plain)


def test_a_trainable_encoder_or_a_zero_budget_stores_nothing(cache_dir, tmp_path):
    data = _data(cache_dir)
    _cell(data, tmp_path / "trainable", freeze=False)
    assert not list((tmp_path / "trainable").glob("*.pt"))
    _cell(data, tmp_path / "off", gigabytes=0.0)
    assert not (tmp_path / "off").exists()


def test_keys_change_with_the_encoder_the_audio_and_the_arithmetic():
    weights = [torch.ones(3, 2)]
    audio = [torch.zeros(5)]
    cpu = torch.device("cpu")
    key = FeatureStore.key(tensor_digest(weights), tensor_digest(audio), "fp32", cpu)
    assert key == FeatureStore.key(tensor_digest([torch.ones(3, 2)]), tensor_digest([torch.zeros(5)]), "fp32", cpu)
    assert key != FeatureStore.key(tensor_digest([torch.ones(3, 2) * 2]), tensor_digest(audio), "fp32", cpu)
    assert key != FeatureStore.key(tensor_digest(weights), tensor_digest([torch.zeros(6)]), "fp32", cpu)
    assert key != FeatureStore.key(tensor_digest(weights), tensor_digest(audio), "bf16", cpu)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert key != FeatureStore.key(tensor_digest(weights), tensor_digest(audio), "fp32", cpu)
    finally:
        torch.set_num_threads(threads)


def test_the_store_keeps_to_its_budget_and_ignores_broken_entries(tmp_path):
    row = torch.zeros(1000, 4)  # 16 kB
    store = FeatureStore(tmp_path, budget_bytes=40_000)
    for key in ("a", "b", "c"):
        store.save(key, [row, row[:500]])  # 24 kB each (and the file's few hundred bytes): only the newest fits
    assert [p.stem for p in tmp_path.glob("*.pt")] == ["c"]
    assert [len(r) for r in store.load("c", [1000, 500])] == [1000, 500]
    assert store.load("c", [1000, 499]) is None  # other utterances: recompute
    (tmp_path / "c.pt").write_bytes(b"half a file")
    assert store.load("c", [1000, 500]) is None


def test_auto_workers_on_cpu_follow_the_cores_and_the_size_of_the_run(small_config):
    from harness.plan.config import load_config

    assert cpu_workers(cores=2) == 2 and cpu_workers(cores=16) == 4 and cpu_workers(cores=1) == 1
    assert cpu_workers(threads=4, cores=16) == 4 and cpu_workers(threads=8, cores=8) == 1
    config = load_config(small_config)
    executor = LocalExecutor({}, config)
    executor.expect(cells=2, updates_per_cell=3)
    assert executor._devices() == ["cpu"]  # a small run stays in this process
    executor.expect(cells=36, updates_per_cell=150)
    assert len(executor._devices()) == cpu_workers()
    assert MIN_UPDATES_FOR_WORKERS <= 36 * 150
    assert LocalExecutor({"workers": 3}, config)._devices() == ["cpu"] * 3


PLUGIN = '''
from pathlib import Path

from harness.api import ModelSpec
from harness.errors import BenchError
from harness.hookspecs import hookimpl
from plugins.models.hf import build_tiny


def _made(context):
    marker = Path(context.cache_dir) / "made-model.txt"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(context.threads))
    return {"summary": "made here", "seconds": 0.0, "prepared_now": True}


def _broken(context):
    raise BenchError("broken-model: its corpus is missing", "put the corpus in place")


@hookimpl
def bench_register_models(register):
    register(ModelSpec("made-model", lambda request: build_tiny("wav2vec2", request), prepare=_made))
    register(ModelSpec("broken-model", lambda request: build_tiny("wav2vec2", request), prepare=_broken))
'''


@pytest.mark.slow
def test_models_are_made_in_the_workers_and_a_failed_one_costs_only_its_cells(bench, small_config, tmp_path,
                                                                              monkeypatch, cache_dir):
    install_fake_distribution(tmp_path, monkeypatch, "made_models", PLUGIN, "made-models", "made_models")
    store = tmp_path / "r.sqlite"
    code, out, err = bench("run", "--config", str(small_config), "--models", "made-model,broken-model,tiny-wav2vec2",
                           "--langs", "es", "--store", str(store), "--no-progress",
                           "--set", "executors.local.workers=2")
    assert code == 2
    assert "broken-model: its corpus is missing" in err and "put the corpus in place" in err
    with sqlite3.connect(store) as db:
        stored = {row[0] for row in db.execute("select model from cells")}
        failed = {row[0] for row in db.execute("select model from failures")}
    assert stored == {"made-model", "tiny-wav2vec2"}  # every cell that could run is kept
    assert failed == set()  # the broken model's cell is not marked failed: the next run computes it
    threads = max(1, available_cores() // 2)  # made in one of the two workers, with its share of the cores
    assert (cache_dir / "models" / "made-model.txt").read_text() == str(threads)
