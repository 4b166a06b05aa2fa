"""The benchmark scripts run and print their figures (their numbers are for people, not asserts)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_loop_vs_trainer_prints_both_arms(cache_dir, tmp_path):
    pytest.importorskip("accelerate")
    out_json = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "loop_vs_trainer.py"), "--steps", "4", "--train-minutes", "0.3",
         "--dev-minutes", "0.1", "--cache-dir", str(cache_dir), "--json", str(out_json)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for row in ("training throughput", "padding fraction", "peak memory", "evaluation throughput", "final dev CER",
                "training throughput ratio (bench / Trainer)"):
        assert row in result.stdout
    figures = json.loads(out_json.read_text())
    for arm in ("bench", "trainer"):
        assert figures[arm]["train_audio_per_s"] > 0 and 0 <= figures[arm]["padding"] < 1
        assert 0 <= figures[arm]["dev_cer"] <= 5 and len(figures[arm]["loss_curve"]) >= 1
    assert figures["ratio"] == pytest.approx(figures["bench"]["train_audio_per_s"]
                                             / figures["trainer"]["train_audio_per_s"])


@pytest.mark.slow
def test_protocol_speed_prints_both_protocols(cache_dir, tmp_path):
    out_json = tmp_path / "speed.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "protocol_speed.py"), "--steps", "3", "--train-minutes", "0.3",
         "--cache-dir", str(cache_dir), "--json", str(out_json)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "finetune" in result.stdout and "superb" in result.stdout and "as fast as finetune's" in result.stdout
    rows = {r["protocol"]: r for r in json.loads(out_json.read_text())}
    assert set(rows) == {"finetune", "superb"}
    assert all(r["updates"] == 3 and r["seconds_per_update"] > 0 for r in rows.values())
    # superb trains only its downstream, finetune the whole tiny model after the encoder
    assert rows["superb"]["trainable_parameters"] != rows["finetune"]["trainable_parameters"]


@pytest.mark.slow
def test_real_scale_prints_the_table_and_the_study_cost(cache_dir, tmp_path):
    pytest.importorskip("accelerate")
    out_json = tmp_path / "real_scale.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "real_scale.py"), "--archs", "tiny", "--batch-seconds", "4",
         "--steps", "3", "--warmup", "1", "--train-minutes", "0.3", "--dev-minutes", "0.1", "--data-path-batch", "8",
         "--cache-dir", str(cache_dir), "--json", str(out_json)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for text in ("s/update (steady)", "audio s/s whole run", "bench / better Trainer arm", "GPU-hours for the matrix",
                 "host time per update making the batch", "not a measurement"):
        assert text in result.stdout, text
    figures = json.loads(out_json.read_text())
    rows = {r["arm"]: r for r in figures["rows"]}
    assert set(rows) == {"bench", "trainer", "trainer-grouped"}
    for r in rows.values():
        assert r["updates"] == 3 and r["measured_updates"] == 2 and len(r["update_times"]) == 3
        assert r["seconds_per_update"] > 0 and r["steady_audio_per_s"] > 0 and r["whole_audio_per_s"] > 0
        assert 0 <= r["padding"] < 1 and r["peak_mib"] > 0 and 0 <= r["dev_cer"] <= 5
        assert r["architecture"] == "tiny" and r["batch_seconds"] == 4.0 and r["precision"] == "fp32"
    (comparison,) = figures["comparisons"]
    best = max(rows["trainer"]["steady_audio_per_s"], rows["trainer-grouped"]["steady_audio_per_s"])
    assert comparison["steady_ratio"] == pytest.approx(rows["bench"]["steady_audio_per_s"] / best)
    cost = figures["cost"]
    assert cost["paper_cells"] == 864 and cost["estimate"]["H100"]["gpu_hours_paper"] > 0
    assert figures["data_path"][0]["trainer_host_seconds_per_update"] > 0
    assert not (cache_dir / "cost" / "measured.json").exists()  # only CUDA runs keep their figures by default


@pytest.mark.slow
def test_tracking_overhead_prints_both_arms(cache_dir, tmp_path):
    out_json = tmp_path / "overhead.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "tracking_overhead.py"), "--steps", "3", "--repeats", "1",
         "--train-minutes", "0.3", "--cache-dir", str(cache_dir), "--json", str(out_json)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "without trackers:" in result.stdout and "in the loop:" in result.stdout
    figures = json.loads(out_json.read_text())
    assert [r["tracked"] for r in figures["runs"]] == [False, True]
    assert all(r["seconds_per_update"] > 0 and not r["warnings"] for r in figures["runs"])
    assert figures["runs"][1]["events_in_loop"] == 1  # 3 updates: one loss event, at the last update
