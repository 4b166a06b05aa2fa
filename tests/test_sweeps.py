"""Sweeps as matrix dimensions: planning, validation, keys shared with --set, dry runs."""

from __future__ import annotations

import pytest

from harness.errors import BenchError
from harness.plan.config import TrainSettings, load_config
from harness.plan.sweep import SweepAxis, config_at, parse_axes, parse_sweep_flags
from harness.plugins import load_registry
from harness.run.runner import plan_run


def test_sweep_flags_parse_lists_and_toml_arrays():
    assert parse_sweep_flags(["train.lr=1e-3,2e-3"]) == {"train.lr": [0.001, 0.002]}
    assert parse_sweep_flags(["train.lr=[1e-3, 3e-3]"]) == {"train.lr": [0.001, 0.003]}
    assert parse_sweep_flags(["train.select=last,best-dev"]) == {"train.select": ["last", "best-dev"]}
    with pytest.raises(BenchError, match="SECTION.KEY=V1,V2"):
        parse_sweep_flags(["train.lr"])


def test_axes_from_toml_nested_or_dotted_keys_and_duplicates_dropped():
    axes = parse_axes({"train": {"lr": [1e-3, 2e-3, 1e-3]}, "datasets.synthetic.train_minutes": [2, 8]})
    assert axes == (SweepAxis("train.lr", (1e-3, 2e-3)), SweepAxis("datasets.synthetic.train_minutes", (2, 8)))
    assert axes[1].is_data_amount and not axes[0].is_data_amount
    assert axes[0].edges() == (1e-3, 2e-3)
    for bad, match in (({"run.seeds": [1, 2]}, "cannot be swept"), ({"trian.lr": [1]}, "Did you mean"),
                       ({"datasets.lr": [1]}, "datasets.NAME.KEY"), ({"train.lr": []}, "at least one value")):
        with pytest.raises(BenchError, match=match):
            parse_axes(bad)


def test_sweep_doubles_the_cells_and_each_point_has_the_key_of_a_set_run(small_config):
    registry = load_registry()
    base = plan_run(load_config(small_config), registry)
    swept = plan_run(load_config(small_config, overrides={"run": {"sweep": {"train.lr": [1e-3, 2e-3]}}}), registry)
    assert len(swept.cells) == 2 * len(base.cells) == 8
    assert [a.key for a in swept.sweep] == ["train.lr"]
    for lr in (1e-3, 2e-3):  # the same keys as `--set train.lr=...`: computed values are reused
        alone = plan_run(load_config(small_config, overrides={"train": {"lr": lr}}), registry)
        at_point = [c for c in swept.cells if c.point == (("train.lr", lr),)]
        assert [c.key for c in at_point] == [c.key for c in alone.cells]
        assert all(config_at(load_config(small_config), c.point).train.lr == lr for c in at_point)
    # a value equal to the configured one gives the unswept run's keys
    same = plan_run(load_config(small_config, overrides={"run": {"sweep": {"train.lr": [2e-3]}}}), registry)
    assert [c.key for c in same.cells] == [c.key for c in base.cells]


def test_invalid_sweep_values_are_refused_before_any_work(small_config):
    registry = load_registry()
    with pytest.raises(BenchError, match=r"sweep train.lr=-1: invalid setting: train.lr must be > 0"):
        load_config(small_config, overrides={"run": {"sweep": {"train.lr": [1e-3, -1]}}})
    with pytest.raises(BenchError, match="train.steps must be an integer"):
        load_config(small_config, overrides={"run": {"sweep": {"train.steps": [10, 2.5]}}})
    with pytest.raises(BenchError, match="unknown setting 'lrr'"):
        load_config(small_config, overrides={"run": {"sweep": {"train.lrr": [1]}}})
    with pytest.raises(BenchError, match="width must be a whole number"):
        plan_run(load_config(small_config, overrides={"run": {"protocols": ["superb"], "sweep": {
            "protocols.superb.width": [64, -3]}}}), registry)
    with pytest.raises(BenchError, match="unknown option 'train_minute'"):
        plan_run(load_config(small_config, overrides={"run": {"sweep": {
            "datasets.synthetic.train_minute": [1, 2]}}}), registry)
    with pytest.raises(BenchError, match="which this run does not have"):
        plan_run(load_config(small_config, overrides={"run": {"sweep": {
            "datasets.common_voice.train_hours": [1, 2]}}}), registry)


def test_new_recipe_settings_enter_the_key_only_when_set():
    plain = TrainSettings()
    assert "eval_every" not in plain.keyed() and "head_lr" not in plain.keyed() and "select" not in plain.keyed()
    assert TrainSettings(eval_every=5, select="best-dev", head_lr=1e-3).keyed()["head_lr"] == 1e-3
    with pytest.raises(BenchError, match="needs dev scores during training"):
        TrainSettings(select="best-dev")
    with pytest.raises(BenchError, match="train.select must be"):
        TrainSettings(select="best")


def test_dry_run_shows_the_swept_dimensions_and_refuses_bad_values(bench, small_config):
    code, out, _ = bench("run", "--config", str(small_config), "--dry-run", "--sweep", "train.lr=1e-3,2e-3")
    assert code == 0
    assert "train.lr" in out.splitlines()[0]
    assert "8 cells, 0 stored, 8 to compute" in out
    assert "swept: train.lr over {0.001, 0.002} (2 values): 2 point(s)" in out
    assert "estimated cost of the 8 cells" in out
    code, _, err = bench("run", "--config", str(small_config), "--dry-run", "--sweep", "train.lr=-1")
    assert code == 2 and "error: sweep train.lr=-1" in err and "hint:" in err


@pytest.mark.slow
def test_a_swept_run_computes_each_point_once_and_reports_the_choices(bench, small_config, tmp_path):
    import json

    args = ("--config", str(small_config), "--models", "tiny-wav2vec2", "--sweep", "train.lr=1e-3,2e-3")
    code, out, err = bench("run", *args, "--no-progress")
    assert code == 0, err
    assert "4 cells computed, 0 already stored" in out and "chosen on dev" in out
    code, out, _ = bench("run", *args, "--no-progress")  # every point stored: nothing to compute
    assert code == 0 and "0 cells computed, 4 already stored" in out
    # the unswept run at one of the values finds its cells stored
    code, out, _ = bench("run", "--config", str(small_config), "--models", "tiny-wav2vec2", "--set", "train.lr=1e-3",
                         "--dry-run")
    assert "2 cells, 2 stored, 0 to compute" in out
    code, out, _ = bench("report", *args, "--out", str(tmp_path / "r"), "--json", str(tmp_path / "base.json"))
    assert code == 0 and "Chosen on dev (CER, mean over seeds) per model and language: train.lr from {0.001, 0.002}" in out
    payload = json.loads((tmp_path / "base.json").read_text())
    assert len(payload["sweep"]["choices"]) == 2 and len(payload["cells"]) == 2
    assert {r["model"] for r in payload["across_languages"]} == {"tiny-wav2vec2"}
    code, out, _ = bench("compare", str(tmp_path / "base.json"), *args)
    assert code == 0 and "(macro-average)" not in out and "OK" in out
