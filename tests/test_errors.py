"""Every user error gets one clear message (no traceback, exit 2) and loses no finished cell."""

import sqlite3

import numpy as np
import pytest

from harness.api import DatasetSplits, DatasetSpec, Utterance
from harness.hookspecs import hookimpl


def _fails(result, *needles):
    code, out, err = result
    assert code == 2, (out, err)
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err


def test_bad_toml(bench, tmp_path):
    path = tmp_path / "bench.toml"
    path.write_text("[train]\nsteps = = 3\n")
    _fails(bench("run", "--config", str(path)), "is not valid TOML")
    path.write_text("[train]\nlearning_rate = 3\n")
    _fails(bench("run", "--config", str(path)), "unknown setting 'learning_rate'", "valid settings there")


def test_unknown_model_language_dataset(bench, small_config):
    _fails(bench("run", "--config", str(small_config), "--models", "tiny-hubbert"),
           "unknown model 'tiny-hubbert'", "Did you mean 'tiny-hubert'")
    _fails(bench("run", "--config", str(small_config), "--langs", "de,xx"),
           "dataset 'synthetic' has no language 'xx'", "Languages of synthetic")
    _fails(bench("run", "--config", str(small_config), "--langs", "zh"), "Did you mean 'zh-CN'")
    _fails(bench("run", "--config", str(small_config), "--datasets", "common-voice"), "unknown dataset")
    _fails(bench("run", "--config", str(small_config), "--set", "datasets.synthetic.minutes=3"),
           "unknown option 'minutes'")


@pytest.mark.parametrize("ref, message", [
    ("facebook/wav2vec2-no-such-model", "is not available here"),
    ("/no/such/checkpoint", "does not exist or has no config.json"),
])
def test_missing_checkpoint_offline(bench, small_config, ref, message):
    _fails(bench("run", "--config", str(small_config), "--models", f"hf:{ref}", "--langs", "de"),
           message, "hint:")


def test_missing_checkpoint_fails_before_any_cell_is_computed(bench, small_config):
    store = small_config.parent / "results.sqlite"
    result = bench("run", "--config", str(small_config), "--models", "tiny-wav2vec2,hf:/no/such/dir",
                   "--langs", "de")
    _fails(result, "/no/such/dir")
    assert "finished before this error" not in result[2]  # nothing ran: no talk of finished cells
    assert not store.exists() or sqlite3.connect(store).execute("SELECT count(*) FROM cells").fetchone()[0] == 0


class _BadData:
    """A dataset plugin whose data has empty transcripts and corrupt audio."""

    def __init__(self, all_bad_for: str = "es"):
        self.all_bad_for = all_bad_for

    @hookimpl
    def bench_register_datasets(self, register):
        register(DatasetSpec("baddata", ("de", "es"), self.load, "1"))

    def load(self, request):
        rng = np.random.default_rng(0)
        good = [Utterance(f"g{i}", rng.normal(0, 0.1, 16000).astype(np.float32), "ab ba", "s") for i in range(6)]
        bad = [
            Utterance("empty", rng.normal(0, 0.1, 16000).astype(np.float32), "  ", "s"),
            Utterance("punct", rng.normal(0, 0.1, 16000).astype(np.float32), "?!", "s"),
            Utterance("nan", np.full(16000, np.nan, np.float32), "ab", "s"),
            Utterance("silent", np.zeros(0, np.float32), "ab", "s"),
        ]
        if request.language == self.all_bad_for:
            return DatasetSplits(bad, bad, bad)
        return DatasetSplits(good + bad, good[:2] + bad, good[:2] + bad)


@pytest.fixture()
def bad_data(monkeypatch):
    import harness.plugins as plugins

    original = plugins.Registry.load_entry_points

    def with_bad_data(self):
        original(self)
        self.add_plugin(_BadData(), "baddata")

    monkeypatch.setattr(plugins.Registry, "load_entry_points", with_bad_data)


def test_empty_transcripts_and_corrupt_audio_are_skipped_and_counted(bench, small_config, bad_data):
    code, out, err = bench("run", "--config", str(small_config), "--datasets", "baddata", "--langs", "de",
                           "--models", "tiny-wav2vec2")
    assert code == 0, err
    from harness.store.results import ResultStore

    with ResultStore(small_config.parent / "results.sqlite") as store:
        (cell,) = store.cells()
    skipped = cell.record["skipped"]
    assert skipped["train"] == {"empty_transcript": 2, "bad_audio": 2}
    assert skipped["test"] == {"empty_transcript": 2, "bad_audio": 2}
    assert cell.record["eval"]["test"]["utterances"] == 2


def test_a_failing_cell_keeps_the_finished_ones(bench, small_config, bad_data):
    # es has no usable utterance at all: recorded as failed with a clear message, de is computed
    code, out, err = bench("run", "--config", str(small_config), "--datasets", "baddata", "--langs", "de,es",
                           "--models", "tiny-wav2vec2")
    assert code == 3 and "1 cells computed" in out
    assert "no usable training utterances for 'es'" in err and "hint: check the dataset" in err
    assert "Traceback" not in err
    code, out, _ = bench("run", "--config", str(small_config), "--datasets", "baddata", "--langs", "de",
                         "--models", "tiny-wav2vec2")
    assert code == 0 and "0 cells computed, 1 already stored" in out


def test_report_without_results(bench, small_config):
    _fails(bench("report", "--config", str(small_config)), "no results store", "bench run")
