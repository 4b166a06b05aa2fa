"""The cost estimate: FLOPs counted from the architecture, and what `bench run --dry-run` prints."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import REPO
from harness.plan import cost
from harness.plan.cost import GPUS, LARGE, TINY, architecture_of, cell_cost, gpu_time, two_significant


def _counted(model, frames: int) -> tuple[dict, dict]:
    """FLOPs torch counts per operator (matmuls, convolutions) for one forward and one backward
    pass of the part after the frozen feature encoder, on one utterance of ``frames`` frames."""
    from torch.utils.flop_counter import FlopCounterMode

    features = torch.randn(1, frames, model.model.config.conv_dim[-1])
    mask = torch.ones(1, frames, dtype=torch.bool)
    with FlopCounterMode(display=False) as forward:
        out = model.head(features, mask)
    with FlopCounterMode(display=False) as backward:
        out.sum().backward()
    return ({str(k): v for k, v in forward.get_flop_counts()["Global"].items()},
            {str(k): v for k, v in backward.get_flop_counts()["Global"].items()})


def test_the_flop_formula_matches_what_torch_counts_on_the_tiny_model():
    from transformers import AutoModelForCTC

    from harness.api import ModelRequest
    from plugins.models.hf import HFCTCModel, tiny_config
    from plugins.models.kit import hf_config_kwargs

    config = tiny_config("wav2vec2", **hf_config_kwargs(ModelRequest(vocab_size=32, blank_id=0, seed=0,
                                                                   mask_time_prob=0.0)))
    # eager attention: matmuls torch's counter sees (it has no formula for the CPU's fused kernel)
    model = HFCTCModel(AutoModelForCTC.from_config(config, attn_implementation="eager"))
    frames = 200  # 4 s
    forward, backward = _counted(model, frames)
    assert sum(forward.values()) == pytest.approx(frames * TINY.forward_flops_per_frame(frames, vocab=32), rel=0.01)
    # the backward pass of a matmul costs twice its forward pass: an update is 3x the forward FLOPs
    # (torch's counter overcounts the backward of grouped convolutions, the positional one here)
    matmuls = forward["aten.addmm"] + forward["aten.bmm"]
    assert backward["aten.mm"] + backward["aten.bmm"] == pytest.approx(2 * matmuls, rel=0.01)


def test_the_architectures_are_the_models_dimensions():
    from plugins.models.catalog import LARGE_CONFIG
    from plugins.models.hf import _TINY_BODY, _TINY_CONV

    assert (LARGE.hidden, LARGE.layers, LARGE.ff) == (LARGE_CONFIG["hidden_size"], LARGE_CONFIG["num_hidden_layers"],
                                                      LARGE_CONFIG["intermediate_size"])
    assert (LARGE.conv_dim, LARGE.conv_kernel, LARGE.conv_stride) == (
        LARGE_CONFIG["conv_dim"], LARGE_CONFIG["conv_kernel"], LARGE_CONFIG["conv_stride"])
    assert (LARGE.pos_conv_kernel, LARGE.pos_conv_groups) == (LARGE_CONFIG["num_conv_pos_embeddings"],
                                                              LARGE_CONFIG["num_conv_pos_embedding_groups"])
    assert (TINY.hidden, TINY.layers, TINY.ff) == (_TINY_BODY["hidden_size"], _TINY_BODY["num_hidden_layers"],
                                                   _TINY_BODY["intermediate_size"])
    assert (TINY.conv_dim, TINY.conv_kernel, TINY.conv_stride) == (
        _TINY_CONV["conv_dim"], _TINY_CONV["conv_kernel"], _TINY_CONV["conv_stride"])
    assert LARGE.frames_per_second == TINY.frames_per_second == 50


def test_models_map_to_their_size_class():
    from harness.plugins import load_registry

    registry = load_registry()
    study = registry.expand_models(["study"])
    assert len(study) == 16
    assert all(architecture_of(registry.model(name).spec.metadata) is LARGE for name in study)
    assert architecture_of(registry.model("tiny-wav2vec2").spec.metadata) is TINY
    assert architecture_of({"architecture": "wav2vec2"}) is None  # hf:/dir without a parameter count


def test_the_study_costs_what_its_flops_say():
    paper = cell_cost(LARGE, 4000, 200.0, 5.0)
    # 200 s at 50 frames/s, about 0.65 GFLOPs per frame forward, three times for forward + backward
    assert paper.update_flops == pytest.approx(3 * 10_000 * 0.647e9, rel=0.01)
    assert paper.train_flops == 4000 * paper.update_flops
    assert paper.encode_flops < 0.01 * paper.train_flops and paper.eval_flops < 0.05 * paper.train_flops
    h100 = GPUS[0]
    assert paper.gpu_seconds(h100) == pytest.approx(paper.flops / (989e12 * 0.35))


def _dry_run(bench, *extra):
    # the study's checkpoints and Common Voice are not here: a dry run says the run would stop (exit 2)
    # after printing the plan and its cost; with --keep-going the run would start, recording those cells failed
    code, out, err = bench("run", "--config", str(REPO / "bench.toml"), "--preset", "paper", "--dry-run", *extra)
    assert code == 2 and "planned input(s) cannot be used here" in err
    code, out, err = bench("run", "--config", str(REPO / "bench.toml"), "--preset", "paper", "--dry-run", "--keep-going",
                           *extra)
    assert code == 0 and "with --keep-going these cells would be recorded as failed" in err, err
    return out


def test_dry_run_of_the_paper_preset_prints_the_study_cost(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    out = _dry_run(bench)
    assert "864 cells, 0 stored, 864 to compute" in out
    paper = cell_cost(LARGE, 4000, 200.0, 5.0)
    assert "estimated cost of the 864 cells to compute (4000 updates of 200 s batches" in out
    assert "else 10 h per cell" in out
    assert f"large (864 cells): {paper.flops:.3g} FLOPs per cell ({paper.update_flops:.3g} per update)" in out
    for gpu in GPUS:
        assert f"{gpu_time(864 * paper.gpu_seconds(gpu))} on {gpu.name}" in out
    h100_hours = 864 * paper.flops / (989e12 * 0.35) / 3600
    assert 40 < h100_hours < 70 and f"{two_significant(h100_hours)} GPU-h on H100" in out
    per_cell = paper.gpu_seconds(GPUS[0])  # ~3.6 GPU-minutes: said in minutes, two significant digits
    assert f"= {two_significant(per_cell / 60)} GPU-min on H100" in out and "0.0" not in two_significant(per_cell / 60)
    assert "assumed 35% MFU" in out
    assert not (tmp_path / "cache").exists() and not (tmp_path / ".bench").exists()  # a dry run creates nothing

    # a slice costs its share
    out = _dry_run(bench, "--models", "xls-r,no-pretraining", "--langs", "de,ja")
    assert f"large (12 cells)" in out and f"{gpu_time(12 * paper.gpu_seconds(GPUS[0]))} on H100" in out


def test_measured_gpu_figures_replace_the_assumption(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    cost.save_measured(tmp_path / "cache", [{"architecture": "large", "batch_seconds": 200.0,
                                             "seconds_per_update": 0.5, "eval_audio_per_second": 4000.0,
                                             "device": "NVIDIA H200"}])
    out = _dry_run(bench)
    paper = cell_cost(LARGE, 4000, 200.0, 5.0)
    rate = paper.update_flops / 0.5
    per_cell = 4000 * 0.5 + paper.encode_flops / rate + 10 * 3600 / 4000.0
    assert f"measured on NVIDIA H200: {gpu_time(per_cell)}" in out
    assert f"from measured seconds per update (NVIDIA H200): {gpu_time(864 * per_cell)}" in out
    # figures of another batch do not apply
    saved = json.loads(cost.measured_path(tmp_path / "cache").read_text())
    assert len(saved["figures"]) == 1
    out = _dry_run(bench, "--set", "train.batch_seconds=100")
    assert "measured" not in out


def test_evaluation_hours_come_from_the_dataset_options():
    assert cost.eval_hours_of({"dev_minutes": 1, "test_minutes": 1.5}) == pytest.approx(2.5 / 60)
    assert cost.eval_hours_of({"dev_hours": 2, "test_hours": 3}) == 5
    assert cost.eval_hours_of({"dev_hours": 0, "test_hours": 3}) == cost.DEFAULT_EVAL_HOURS  # 0: no cap
    assert cost.eval_hours_of({}) == cost.DEFAULT_EVAL_HOURS


@pytest.mark.parametrize("seconds, text", [
    (0.00612, "0.0061 GPU-s"), (3.0, "3.0 GPU-s"), (59.4, "59 GPU-s"), (61.0, "1.0 GPU-min"), (600.0, "10 GPU-min"),
    (3599.0, "60 GPU-min"),
    (3600.0, "1.0 GPU-h"), (5 * 3600 + 1234, "5.3 GPU-h"), (123_456 * 3600, "120,000 GPU-h"),
])
def test_gpu_time_is_minutes_or_hours_with_two_significant_digits(seconds, text):
    assert gpu_time(seconds) == text


def test_a_tiny_cell_never_costs_zero(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    code, out, err = bench("run", "--config", str(REPO / "bench.toml"), "--models", "tiny-wav2vec2", "--langs", "de",
                           "--seeds", "1", "--dry-run")
    assert code == 0, err
    assert "0.000" not in out and "GPU-s on H100" in out
