from pathlib import Path

import pytest

from harness.plan.config import TrainSettings, load_config, parse_set
from harness.errors import BenchError

TOML = """
[run]
models = ["a", "b"]
langs = "de, es"
seeds = 2
store = "out/results.sqlite"

[train]
steps = 100
lr = 1e-3

[datasets.synthetic]
train_minutes = 4

[presets.fast.train]
steps = 10
[presets.fast.run]
seeds = [7]
"""


@pytest.fixture()
def config_file(tmp_path) -> Path:
    path = tmp_path / "bench.toml"
    path.write_text(TOML)
    return path


def test_file_values_and_defaults(config_file):
    config = load_config(config_file)
    assert config.models == ("a", "b") and config.langs == ("de", "es") and config.seeds == (0, 1)
    assert config.train.steps == 100 and config.train.lr == 1e-3
    assert config.train.warmup == TrainSettings().warmup  # untouched default
    assert config.store == config_file.parent / "out/results.sqlite"  # relative to the file
    assert config.dataset_options["synthetic"] == {"train_minutes": 4}
    assert config.preset == "tiny-study"  # the default preset's name, though this file defines none


def test_preset_then_set_then_flags_override_in_that_order(config_file):
    overrides = parse_set(["train.steps=5", "datasets.synthetic.dev_minutes=0.5"])
    overrides["run"] = {"langs": "ru"}
    config = load_config(config_file, preset="fast", overrides=overrides)
    assert config.train.steps == 5 and config.seeds == (7,) and config.langs == ("ru",)
    assert config.train.lr == 1e-3
    assert config.dataset_options["synthetic"] == {"train_minutes": 4, "dev_minutes": 0.5}


def test_parse_set_reads_toml_values_and_bare_strings():
    assert parse_set(["train.lr=3e-4", "run.device=cpu", "run.models=['x','y']", "train.freeze_feature_encoder=false"]) == {
        "train": {"lr": 3e-4, "freeze_feature_encoder": False},
        "run": {"device": "cpu", "models": ["x", "y"]},
    }
    with pytest.raises(BenchError, match="SECTION.KEY=VALUE"):
        parse_set(["steps"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("[train]\nstep = 3\n", "unknown setting 'step'. Did you mean 'steps'"),
        ("[train]\nsteps = 'many'\n", "train.steps must be an integer"),
        ("[train]\nwarmup = 0.8\nhold = 0.5\n", "must add up to at most 1"),
        ("[trian]\n", "unknown setting 'trian'. Did you mean 'train'"),
        ("[run]\nseeds = 0\n", "run.seeds must be a positive count"),
        ("[run]\nprecision = 'fp8'\n", "run.precision"),
        ("[run\n", "not valid TOML"),
    ],
)
def test_bad_files_get_one_clear_message(tmp_path, text, message):
    path = tmp_path / "bench.toml"
    path.write_text(text)
    with pytest.raises(BenchError, match=message):
        load_config(path)


def test_unknown_preset_lists_the_known_ones(config_file):
    with pytest.raises(BenchError, match="unknown preset 'fsat'. Did you mean 'fast'"):
        load_config(config_file, preset="fsat")


def test_missing_config_file(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_repository_bench_toml_has_the_small_study_smoke_and_paper_presets():
    root = Path(__file__).resolve().parents[1] / "bench.toml"
    default = load_config(root)
    smoke = load_config(root, preset="smoke")
    paper = load_config(root, preset="paper")
    # the default: pre-trained tiny models and the no-pretraining baseline, 3 languages, 3 seeds
    assert default.preset == "tiny-study" and default.models == ("tiny-study",)
    assert default.langs == ("es", "it", "ru") and default.seeds == (0, 1, 2) and default.train.steps == 150
    assert smoke.models == ("tiny-wav2vec2", "tiny-hubert") and smoke.seeds == (0,) and smoke.train.steps == 400
    assert smoke.langs == ("de", "es", "ru")
    # the study's protocol (DESIGN.md section 2)
    assert paper.train.steps == 4000 and paper.train.lr == 6e-5
    assert (paper.train.warmup, paper.train.hold) == (0.1, 0.4)
    assert paper.train.freeze_feature_encoder and paper.seeds == (0, 1, 2)
    assert paper.train.vocab_min_fraction == 1e-5
    assert paper.datasets == ("common_voice",) and paper.langs == ("all",) and paper.models == ("study",)
    assert paper.dataset_options["common_voice"]["train_hours"] == 5.0
    ssl = load_config(root, preset="tiny-ssl-study")
    assert ssl.models == ("tiny-ssl-study",) and ssl.langs == default.langs and ssl.seeds == (0, 1, 2)
    assert ssl.train == smoke.train  # the smoke recipe: 400 updates
