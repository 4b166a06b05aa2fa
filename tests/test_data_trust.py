"""Data you can trust (issue 15): results keyed by the data they were computed on, duplicate rows,
every unusable language reported at once, and the report's data table as in one cell.

Releases are built by the tests (``make_release``) in the current and in Common Voice 7.0's
column layout.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from harness.api import DatasetRequest, Utterance
from harness.plan.config import load_config
from harness.errors import BenchError
from harness.plugins import load_registry
from harness.run.runner import plan_run
from harness.store.results import ResultStore, StoredCell
from plugins.datasets import common_voice as cv
from test_common_voice import COLUMNS, COLUMNS_7, SENTENCES, make_release

LAYOUTS = [COLUMNS, COLUMNS_7]


@pytest.fixture(scope="module", params=LAYOUTS, ids=["current-columns", "cv7-columns"])
def built(request, tmp_path_factory) -> Path:
    """A release with de and ja (bad rows included) in one column layout."""
    root = tmp_path_factory.mktemp("cv")
    for lang in ("de", "ja"):
        release = make_release(root, lang, train=20, columns=request.param)
    return release


@pytest.fixture()
def release(built, tmp_path) -> Path:
    """A copy of the built release the test may change."""
    copy = tmp_path / "data" / built.name
    shutil.copytree(built, copy)
    return copy


def _edit(path: Path, old: str, new: str, keep_mtime: bool = True) -> None:
    """Change ``old`` to ``new`` in a tsv, keeping its modification time (content, not dates, must count)."""
    stat = path.stat()
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    if keep_mtime:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _duplicate_first_row(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines + [lines[1]]), encoding="utf-8")


TOML = """
[run]
models = ["tiny-wav2vec2"]
datasets = ["common_voice"]
langs = ["de", "ja"]
seeds = 2
store = "{store}"

[train]
steps = 3
batch_seconds = 8.0

[datasets.common_voice]
release = "{release}"
train_hours = 0.004
max_clip_seconds = 4.0
"""


def _config(tmp_path: Path, release: Path | str, name: str = "bench.toml") -> Path:
    path = tmp_path / name
    path.write_text(TOML.format(store=tmp_path / "results.sqlite", release=release))
    return path


def _store_planned(config: Path) -> int:
    """Store a (fake) result for every planned cell, as a finished run would."""
    plan = plan_run(load_config(str(config)), load_registry())
    with ResultStore(load_config(str(config)).store) as store:
        for p in plan.cells:
            c = p.cell
            store.put(p.key, model=c.model, dataset=c.dataset, language=c.language, seed=c.seed,
                      metrics={"test": {"cer": 0.5}}, record={"identity": p.identity}, hypotheses={}, duration_s=1.0)
    return len(plan.cells)


def _states(bench, config: Path, *args: str) -> dict[tuple[str, int], str]:
    code, out, err = bench("run", "--config", str(config), "--dry-run", *args)
    assert code == 0, err
    found = re.findall(r"common_voice\s+(\S+)\s+(\d+)\s+\S+\s+(stored|failed|to compute)", out)
    return {(lang, int(seed)): state for lang, seed, state in found}


# --------------------------------------------------------------------------- 1. keyed by the data
def test_a_changed_sentence_or_another_release_computes_new_cells(bench, release, tmp_path, monkeypatch):
    config = _config(tmp_path, release)
    assert _store_planned(config) == 4
    assert set(_states(bench, config).values()) == {"stored"}

    # one sentence of de's test.tsv changes (same size class, same modification time)
    _edit(release / "de" / "test.tsv", SENTENCES["de"][4], "Ein Tag am Berg.")
    assert _states(bench, config) == {("de", 0): "to compute", ("de", 1): "to compute",
                                      ("ja", 0): "stored", ("ja", 1): "stored"}
    # put back: the old cells are still there under their own key
    _edit(release / "de" / "test.tsv", "Ein Tag am Berg.", SENTENCES["de"][4])
    assert set(_states(bench, config).values()) == {"stored"}

    # another release (the same files under another name), set through the environment
    other = release.parent / "cv-corpus-98.0-other"
    shutil.copytree(release, other)
    monkeypatch.setenv("BENCH_COMMON_VOICE", str(other))
    env_config = _config(tmp_path, "", name="env.toml")
    assert set(_states(bench, env_config).values()) == {"to compute"}


def test_moving_the_release_or_reading_it_with_other_workers_computes_nothing_again(bench, release, tmp_path):
    config = _config(tmp_path, release)
    _store_planned(config)
    moved = tmp_path / "elsewhere" / release.name
    moved.parent.mkdir()
    release.rename(moved)
    config = _config(tmp_path, moved, name="moved.toml")
    assert set(_states(bench, config).values()) == {"stored"}
    assert set(_states(bench, config, "--set", "datasets.common_voice.decode_workers=1").values()) == {"stored"}
    # what the data is still counts: fewer training hours are other cells
    assert set(_states(bench, config, "--set", "datasets.common_voice.train_hours=0.003").values()) == {"to compute"}


def test_report_where_the_data_cannot_be_read_uses_the_data_the_results_recorded(bench, release, tmp_path):
    config = _config(tmp_path, release)
    _store_planned(config)
    moved = release.rename(release.parent / "elsewhere")
    # the store alone (say, copied from the cluster): one version of each language's data is stored
    code, out, err = bench("report", "--config", str(config))
    assert code == 0, err
    for lang in ("de", "ja"):
        assert (f"the data of common_voice:{lang} cannot be read here: its 2 stored result(s) are reported by "
                "the data they recorded (release cv-corpus-99.0-test)") in err
    assert "4 of 4 cells have results" in out

    # two versions of de stored: which one is meant cannot be told without the data, so none is used
    moved.rename(release)
    _edit(release / "de" / "test.tsv", SENTENCES["de"][4], "Ein Tag am Berg.")
    _store_planned(config)
    release.rename(release.parent / "elsewhere")
    code, out, err = bench("report", "--config", str(config))
    assert code == 0, err
    assert "common_voice:de (2 versions stored) cannot be read here" in err and "BENCH_COMMON_VOICE" in err
    assert "2 of 4 cells have results" in out

    # nothing stored under these settings at all: the error says why
    _fails = bench("report", "--config", str(config), "--set", "train.steps=4")
    assert _fails[0] == 2
    assert "the data of common_voice:de, common_voice:ja cannot be read here" in _fails[2]


def test_the_identity_names_the_release_and_hashes_the_tsv_content(release, tmp_path):
    request = DatasetRequest("de", 0, {"release": str(release)}, tmp_path)
    first = cv.fingerprint(request)
    assert first["release"] == "cv-corpus-99.0-test" and first["language"] == "de"
    assert set(first["tsv_sha256"]) == {"train.tsv", "dev.tsv", "test.tsv"}
    validated = cv.fingerprint(DatasetRequest("de", 0, {"release": str(release), "train_split": "validated"}, tmp_path))
    assert "validated.tsv" in validated["tsv_sha256"]
    os.utime(release / "de" / "dev.tsv", ns=(1, 1))  # dates alone change nothing
    assert cv.fingerprint(request) == first
    _edit(release / "de" / "dev.tsv", SENTENCES["de"][5], "Gute Nacht?")
    changed = cv.fingerprint(request)
    assert changed["tsv_sha256"]["dev.tsv"] != first["tsv_sha256"]["dev.tsv"]
    assert changed["tsv_sha256"]["test.tsv"] == first["tsv_sha256"]["test.tsv"]


def test_the_record_holds_a_digest_of_the_rows_used(release, tmp_path):
    options = {"release": str(release), "train_hours": 10 / 3600, "max_clip_seconds": 4.0}
    before = cv.load(DatasetRequest("de", 0, options, tmp_path / "cache")).info["rows_sha256"]
    assert set(before) == {"train", "dev", "test"}
    other_seed = cv.load(DatasetRequest("de", 1, options, tmp_path / "cache")).info["rows_sha256"]
    assert other_seed["test"] == before["test"] and other_seed["train"] != before["train"]
    _edit(release / "de" / "test.tsv", SENTENCES["de"][4], "Ein Tag am Berg.")  # same dates: the cache must see it
    after = cv.load(DatasetRequest("de", 0, options, tmp_path / "cache")).info["rows_sha256"]
    assert after["test"] != before["test"] and after["dev"] == before["dev"] and after["train"] == before["train"]


def test_synthetic_identity_is_generator_options_and_package_versions(tmp_path):
    from plugins.datasets import synthetic

    one = synthetic.fingerprint(DatasetRequest("de", 0, {"train_minutes": 0.3}, tmp_path))
    assert one["generator"] == synthetic.VERSION
    assert one["options"]["train_minutes"] == 0.3 and one["options"]["snr_db"] == [20.0, 40.0]  # defaults merged
    versions = (one["espeakng-loader"], one["wordfreq"])
    assert all(versions) and "not installed" not in versions
    # the defaults written out or left out are the same data
    assert synthetic.fingerprint(DatasetRequest("de", 0, {"train_minutes": 0.3, "corpus_seed": 0}, tmp_path)) == one
    assert synthetic.fingerprint(DatasetRequest("de", 0, {"train_minutes": 0.3, "corpus_seed": 1}, tmp_path)) != one


def test_cell_keys_of_datasets_without_a_fingerprint_do_not_change():
    from harness.plan.config import TrainSettings
    from harness.plan.cells import Cell, cell_identity

    args = dict(model_version="1", model_metadata={}, model_options={}, dataset_version="1", dataset_options={},
                train=TrainSettings())
    plain = cell_identity(Cell("m", "d", "de", 0), **args)
    assert "data" not in plain and cell_identity(Cell("m", "d", "de", 0), data=None, **args) == plain
    assert cell_identity(Cell("m", "d", "de", 0), data={"release": "x"}, **args)["data"] == {"release": "x"}


# --------------------------------------------------------------------------- 2. duplicate rows
def test_duplicate_rows_are_dropped_and_counted_in_every_split(release, tmp_path):
    for split in ("train", "dev", "test"):
        _duplicate_first_row(release / "de" / f"{split}.tsv")
    data = cv.load(DatasetRequest("de", 0, {"release": str(release), "train_hours": 1.0, "max_clip_seconds": 4.0},
                                  tmp_path / "cache"))
    assert data.skipped["dev"] == {"duplicate": 1}
    assert data.skipped["test"] == {"duplicate": 1, "missing_clip": 1}
    assert data.skipped["train"]["duplicate"] == 1
    for split in (data.train, data.dev, data.test):
        assert len({u.id for u in split}) == len(split)
    assert len(data.dev) == 5 and len(data.train) == 20


def test_the_training_loop_drops_repeated_utterance_ids():
    from harness.engine.splits import usable_split

    audio = np.zeros(16_000, dtype=np.float32) + 0.1
    utts = [Utterance("a", audio, "hallo"), Utterance("b", audio, "welt"), Utterance("a", audio, "hallo")]
    split = usable_split("train", utts, "de", None)
    assert split.ids == ["a", "b"] and split.skipped == {"duplicate": 1}


def test_store_put_is_one_transaction(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(sqlite3.IntegrityError):
            store.put("k", model="m", dataset="d", language="de", seed=0, metrics={}, record={},
                      hypotheses={"test": [("u", "a", "a"), ("u", "a", "b")]}, duration_s=1.0)
        assert store.cells() == [] and store.hypotheses("k", "test") == []


def test_a_duplicated_test_clip_runs_and_a_store_error_fails_only_its_cell(bench, release, tmp_path, monkeypatch):
    _duplicate_first_row(release / "de" / "test.tsv")
    config = _config(tmp_path, release)
    real_put = ResultStore.put

    def put(self, key, **kw):
        if kw["language"] == "ja":
            raise sqlite3.OperationalError("disk I/O error")
        return real_put(self, key, **kw)

    monkeypatch.setattr(ResultStore, "put", put)
    code, out, err = bench("run", "--config", str(config), "--seeds", "1")
    assert code == 3, err
    with ResultStore(tmp_path / "results.sqlite") as store:
        (cell,) = store.cells()
        (failure,) = store.failures()
        refs = store.hypotheses(cell.key, "test")
    assert cell.language == "de" and cell.record["skipped"]["test"] == {"duplicate": 1, "missing_clip": 1}
    assert len(refs) == 5
    assert failure.language == "ja" and failure.kind == "error"
    assert "storing the result" in failure.message and "disk I/O error" in failure.message


# --------------------------------------------------------------------------- 4./5. every problem at once
def test_every_unusable_language_is_reported_before_any_cell_and_keep_going_runs_the_rest(bench, release, tmp_path):
    (release / "ja" / "dev.tsv").unlink()
    config = _config(tmp_path, release)
    code, out, err = bench("run", "--config", str(config), "--langs", "de,ja,ar", "--seeds", "1")
    assert code == 2
    assert "common_voice:ja" in err and "has no dev.tsv" in err
    assert "common_voice:ar" in err and "has no language 'ar'" in err and "languages in it: de, ja" in err
    assert "--keep-going" in err
    assert not (tmp_path / "results.sqlite").exists() or not ResultStore(tmp_path / "results.sqlite").cells()

    code, out, err = bench("run", "--config", str(config), "--langs", "de,ja,ar", "--seeds", "1", "--keep-going")
    assert code == 3, err
    with ResultStore(tmp_path / "results.sqlite") as store:
        assert [c.language for c in store.cells()] == ["de"]
        failures = {f.language: f for f in store.failures()}
    assert set(failures) == {"ja", "ar"} and {f.kind for f in failures.values()} == {"user"}
    assert "dev.tsv" in failures["ja"].message and failures["ar"].detail.startswith("languages in it: de, ja")


def test_langs_all_against_a_partial_release_lists_what_is_missing_and_what_is_there(bench, release, tmp_path):
    config = _config(tmp_path, release.parent)  # the directory holding cv-corpus-*
    code, out, err = bench("run", "--config", str(config), "--langs", "all", "--seeds", "1")
    assert code == 2
    (line,) = [line for line in err.splitlines() if "not in the Common Voice release" in line]  # one line for all
    missing = re.findall(r"common_voice:([A-Za-z-]+)", line)
    assert sorted(missing) == sorted(set(cv.STUDY_LANGUAGES) - {"de", "ja"})
    assert "languages in it: de, ja" in err and "cv-corpus-99.0-test" in err


def test_a_release_given_by_its_parent_names_its_languages(release):
    with pytest.raises(BenchError, match="cv-corpus-99.0-test has no language 'fr'") as info:
        cv.ReleaseSource(str(release.parent), "fr")
    assert info.value.hint.startswith("languages in it: de, ja")


def test_validated_with_every_row_excluded_says_why(release, tmp_path):
    lines = (release / "de" / "validated.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    header = lines[0].rstrip("\n").split("\t")
    held = [line for line in lines[1:] if line.startswith(("dev-", "test-", "y\t"))]

    def row(**values) -> str:
        return "\t".join(values.get(col, "") for col in header) + "\n"

    extra = [row(client_id="dev-speaker-0", path="common_voice_de_00000.mp3", sentence=SENTENCES["de"][0]),
             row(client_id="someone", path="common_voice_de_00001.mp3", sentence=SENTENCES["de"][4])]
    (release / "de" / "validated.tsv").write_text("".join([lines[0], *held, *extra]), encoding="utf-8")
    with pytest.raises(BenchError) as info:
        cv.load(DatasetRequest("de", 0, {"release": str(release), "train_split": "validated"}, tmp_path))
    message = info.value.message
    assert f"all {len(held) + 2} rows are excluded" in message
    assert f"{len(held)} clip in dev or test" in message
    assert "1 speaker in dev or test" in message and "1 sentence in dev or test" in message
    assert 'train_split = "train"' in info.value.hint


# --------------------------------------------------------------------------- 3./6. the report's data table
def _cell(model: str, seed: int, skipped: dict, exhausted: bool = False) -> StoredCell:
    data = {"train_hours_requested": 5.0, "train_hours": 1.5, "train_utterances": 120, "train_speakers": 7,
            "test_hours": 0.5, "test_utterances": 40}
    if exhausted:
        data["train_exhausted"] = True
    record = {"data": data, "skipped": skipped, "train": {"train_hours": 1.4, "train_utterances": 110 + seed}}
    return StoredCell(f"{model}-{seed}", model, "common_voice", "de", seed, {"test": {"cer": 0.5}}, record, 0.0, 1.0)


def test_data_table_counts_as_in_one_cell_and_shows_requested_and_used_hours(tmp_path):
    from harness.report.tables import data_frame, write_reports

    cells = [_cell(m, seed, {"test": {"missing_clip": 1}, "dev": {"duplicate": 2},
                             "train": {"too_long": 2 + seed}}, exhausted=True)
             for m in ("a", "b") for seed in (0, 1, 2)]
    (row,) = data_frame(cells).to_dict(orient="records")
    assert row["skipped"] == "dev:duplicate 2, test:missing_clip 1, train:too_long 2–4"
    assert row["train_hours_requested"] == 5.0 and row["train_hours"] == pytest.approx(1.4)
    assert row["train_utterances"] == pytest.approx(111)  # what the loop trained on, not what the dataset gave
    assert row["train_exhausted"] == "yes (3 of 3 seeds)"
    paths = write_reports(cells, tmp_path / "reports", ["cer"])
    md, html = paths["md"].read_text(), paths["html"].read_text()
    for text in (md, html):
        assert "train_hours_requested" in text and "yes (3 of 3 seeds)" in text and "5.00" in text
        assert "train_exhausted: the training split held less" in text
    import json

    (data,) = json.loads(paths["json"].read_text())["data"]
    assert data["train_exhausted"] == "yes (3 of 3 seeds)" and data["train_hours_requested"] == 5.0
    not_exhausted = [_cell("a", 0, {})]
    assert data_frame(not_exhausted).iloc[0]["train_exhausted"] == "no"


def test_equal_medians_are_worded_as_a_tie():
    from harness.report.stats import _compare

    found = _compare("t", "All models", "left", [0.5, 0.4, 0.6], "right", [0.5, 0.3, 0.7], "cer")
    assert "same median CER (0.500)" in found.sentence and "higher" not in found.sentence


def test_a_hugging_face_dataset_is_identified_by_its_fingerprints(release, tmp_path):
    datasets = pytest.importorskip("datasets")

    def save(sentence_of_first_test_row: str) -> Path:
        parts = {}
        for split, name in (("train", "train"), ("dev", "validation"), ("test", "test")):
            rows = cv.ReleaseSource(str(release), "de").rows(split)
            sentences = [r.sentence for r in rows]
            if split == "test":
                sentences[0] = sentence_of_first_test_row
            parts[name] = datasets.Dataset.from_dict({"client_id": [r.speaker for r in rows],
                                                      "path": [r.clip for r in rows], "sentence": sentences,
                                                      "audio": [{"bytes": b"", "path": r.clip} for r in rows]})
        target = tmp_path / f"hf-{len(list(tmp_path.glob('hf-*')))}"
        datasets.DatasetDict(parts).save_to_disk(str(target / "de"))
        return target

    first = cv.fingerprint(DatasetRequest("de", 0, {"hf_dataset": str(save("Ein Tag am Meer."))}, tmp_path))
    assert first["config"] == "de" and set(first["splits"]) == {"train", "dev", "test"}
    assert all(s["fingerprint"] for s in first["splits"].values())
    same = cv.fingerprint(DatasetRequest("de", 0, {"hf_dataset": str(save("Ein Tag am Meer."))}, tmp_path))
    changed = cv.fingerprint(DatasetRequest("de", 0, {"hf_dataset": str(save("Ein Tag am Berg."))}, tmp_path))
    assert same["splits"] == first["splits"]
    assert changed["splits"]["test"] != first["splits"]["test"] and changed["splits"]["dev"] == first["splits"]["dev"]
