"""The CUDA path (marker ``cuda``; ``pytest -m cuda`` runs only these): mixed precision against
fp32, a real CUDA out-of-memory recovered by the retry, one local worker per GPU, and the
memory of a cell at the paper's batch. Every test is skipped, with the reason, without a GPU.
"""

from __future__ import annotations

import pytest
import torch

from harness.store.results import ResultStore

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)"),
]

ONE_CELL = ("--models", "tiny-wav2vec2", "--langs", "de", "--set", 'run.device="cuda"')


def _tiny_cell(cache_dir, precision: str, steps: int):
    from harness.api import DatasetRequest
    from harness.plan.config import RuntimeSettings, TrainSettings
    from harness.plugins import load_registry
    from harness.engine import fine_tune_and_evaluate

    registry = load_registry()
    data = registry.dataset("synthetic").spec.load(DatasetRequest(
        "de", 0, {"train_minutes": 0.3, "dev_minutes": 0.1, "test_minutes": 0.1}, cache_dir / "datasets" / "synthetic"))
    train = TrainSettings(steps=steps, batch_seconds=8.0, lr=1e-3)
    runtime = RuntimeSettings(device="cuda", precision=precision, checkpoint_minutes=0)
    return fine_tune_and_evaluate(registry.model("tiny-wav2vec2").spec.build, data, "de", 0, train, runtime,
                                  [registry.metric("cer").spec])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_matches_fp32(cache_dir, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    # the first update's loss depends only on the initial weights: the forward pass in low precision
    first = {p: _tiny_cell(cache_dir, p, steps=1).train_info for p in ("fp32", precision)}
    assert first[precision]["precision"] == precision and first["fp32"]["precision"] == "fp32"
    assert first[precision]["loss_curve"][0] == pytest.approx(first["fp32"]["loss_curve"][0], rel=2e-2)
    # twenty updates (fp16 through the GradScaler): the mean loss follows the fp32 one
    runs = {p: _tiny_cell(cache_dir, p, steps=20).train_info for p in ("fp32", precision)}
    assert runs[precision]["loss_curve"][0] == pytest.approx(runs["fp32"]["loss_curve"][0], rel=5e-2)
    assert runs[precision]["loss_curve"][0] < first["fp32"]["loss_curve"][0]  # and it did learn
    assert runs[precision]["peak_memory_mib"] <= runs[precision]["gpu_memory_mib"]


def test_a_real_cuda_out_of_memory_is_recovered_by_the_retry(bench, small_config, monkeypatch):
    import harness.engine.setup

    real_fit = harness.engine.setup.fit
    seen = []

    def greedy_fit(model, features, split, train, *args, **kwargs):
        seen.append(train.batch_seconds)
        if train.batch_seconds > 4:  # a real allocation the GPU cannot hold, while this attempt holds memory
            free, _ = torch.cuda.mem_get_info()
            held = torch.empty(int(free * 0.45), dtype=torch.uint8, device="cuda")  # noqa: F841
            torch.empty(int(free * 0.6), dtype=torch.uint8, device="cuda")
        else:  # the retry: the failed attempt's memory is back
            free, total = torch.cuda.mem_get_info()
            assert free > 0.8 * before[0], (free, before)
        return real_fit(model, features, split, train, *args, **kwargs)

    before = torch.cuda.mem_get_info()
    monkeypatch.setattr(harness.engine.setup, "fit", greedy_fit)
    code, out, err = bench("run", "--config", str(small_config), *ONE_CELL)
    assert code == 0, err
    assert seen == [8.0, 4.0] and "out of memory in tiny-wav2vec2" in err
    with ResultStore(small_config.parent / "results.sqlite") as store:
        (cell,) = store.cells()
    assert cell.record["oom_retries"] == 1 and cell.record["effective_batching"]["batch_seconds"] == 4.0
    assert cell.record["train"]["device"].startswith("cuda")

    # with no retries left, the failure names the GPU and the setting to lower
    seen.clear()
    code, out, err = bench("run", "--config", str(small_config), *ONE_CELL, "--seeds", "2",
                           "--set", "run.oom_retries=0")
    assert code == 3 and seen == [8.0]
    with ResultStore(small_config.parent / "results.sqlite") as store:
        (failure,) = store.failures()
    assert failure.kind == "oom"
    assert "while training" in failure.message and "lower train.batch_seconds (now 8" in failure.message
    assert torch.cuda.get_device_name(0) in failure.message


def test_local_executor_runs_one_worker_per_gpu(bench, small_config):
    from harness.plan.config import load_config
    from harness.run.executors.local import LocalExecutor

    gpus = torch.cuda.device_count()
    config = load_config(small_config, overrides={"run": {"device": "cuda"}})
    assert LocalExecutor({}, config)._devices() == ([f"cuda:{i}" for i in range(gpus)] if gpus > 1 else ["cuda:0"])
    assert LocalExecutor({"workers": 2 * gpus}, config)._devices() == [f"cuda:{i % gpus}" for i in range(2 * gpus)]

    workers = max(2, gpus)  # worker processes, each pinned to one GPU (two share it on a one-GPU machine)
    code, out, err = bench("run", "--config", str(small_config), "--langs", "de", "--set", 'run.device="cuda"',
                           "--set", f"executors.local.workers={workers}")
    assert code == 0, err
    with ResultStore(small_config.parent / "results.sqlite") as store:
        cells = store.cells()
    assert len(cells) == 2  # tiny-wav2vec2 and tiny-hubert, each in a worker
    devices = {c.record["train"]["device"] for c in cells}
    assert devices and devices <= {f"cuda:{i}" for i in range(gpus)}


def test_a_cell_at_the_paper_batch_fits_the_gpu_or_names_the_setting_to_lower(bench, tmp_path):
    config = tmp_path / "bench.toml"
    config.write_text("""
[run]
models = ["no-pretraining"]
datasets = ["synthetic"]
langs = ["de"]
seeds = 1
store = "results.sqlite"
device = "cuda"
oom_retries = 0

[train]
steps = 3
batch_seconds = 200.0
lr = 6e-5
mask_time_prob = 0.05

[datasets.synthetic]
train_minutes = 8.0
dev_minutes = 0.5
test_minutes = 0.5
""")
    code, out, err = bench("run", "--config", str(config), "--no-progress")
    with ResultStore(tmp_path / "results.sqlite") as store:
        cells, failures = store.cells(), store.failures()
    if code == 0:
        (cell,) = cells
        train = cell.record["train"]
        assert 0 < train["peak_memory_mib"] < train["gpu_memory_mib"]
        print(f"no-pretraining at 200 s batches: peak {train['peak_memory_mib']:.0f} MiB of "
              f"{train['gpu_memory_mib']:.0f} MiB ({torch.cuda.get_device_name(0)})")
    else:
        (failure,) = failures
        assert failure.kind == "oom" and "train.batch_seconds" in failure.message, failure.message
