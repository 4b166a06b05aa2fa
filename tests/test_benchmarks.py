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
