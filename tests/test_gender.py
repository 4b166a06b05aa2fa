"""Speaker gender: carried from Common Voice's and FLEURS's tables onto each utterance, stored with
the hypotheses, scored per gender and tested in the report (docs/statistics.md, "Speaker gender")."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.api import DatasetRequest, Utterance, normalise_gender
from harness.data.utterance_cache import load_utterances, save_utterances
from harness.report.gender import cell_scores, frame, scores_by_cell
from harness.report.stats import gender_tests
from harness.report.tables import findings, write_reports
from harness.store.outputs import OutputStore, decode_genders, encode_genders
from harness.store.record import CellRecord
from harness.store.results import ResultStore, StoredCell
from plugins.datasets import common_voice as cv
from test_common_voice import COLUMNS_7, make_release
from test_report_page import _cell, _rows

#: speaker -> gender in the release the tests write (Common Voice 7.0's values; "" = not given)
GENDER_OF = {"0": "female", "1": "male", "2": ""}


def gendered_release(root: Path, langs=("de",)) -> Path:
    """make_release's Common Voice 7.0 layout, with a gender per speaker in the gender column."""
    for lang in langs:
        release = make_release(root, lang, train=12, dev=6, test=9, bad=False, columns=COLUMNS_7)
        for tsv in (release / lang).glob("*.tsv"):
            with tsv.open(encoding="utf-8", newline="") as handle:
                rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
            for row in rows:
                row["gender"] = GENDER_OF[row["client_id"][-1]]
            with tsv.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, COLUMNS_7, delimiter="\t", quoting=csv.QUOTE_NONE,
                                        quotechar="\x07", lineterminator="\n")
                writer.writeheader()
                writer.writerows(rows)
    return release


def test_gender_labels_of_common_voice_and_fleurs():
    assert [normalise_gender(v) for v in ("male", "female", "other", "", None, "MALE", "FEMALE", "OTHER")] == \
        ["male", "female", "other", "", "", "male", "female", "other"]
    assert [normalise_gender(v) for v in ("male_masculine", "female_feminine", "intersex", "non-binary",
                                          "do_not_wish_to_say")] == ["male", "female", "other", "other", ""]


def test_common_voice_utterances_carry_their_speakers_gender(tmp_path):
    release = gendered_release(tmp_path)
    data = cv.load(DatasetRequest("de", 0, {"release": str(release), "train_hours": 1.0}, tmp_path / "cache"))
    for split in (data.train, data.dev, data.test):
        assert split and all(u.gender == GENDER_OF[u.speaker[-1]] for u in split)
    # 9 test clips of speakers 0, 1, 2 in turn: 3 female, 3 male, 3 without a gender (1 speaker each)
    assert data.info["test_genders"] == {"female": 3, "male": 3}
    assert data.info["test_gender_speakers"] == {"female": 1, "male": 1}
    # the decoded cache keeps them
    again = cv.load(DatasetRequest("de", 0, {"release": str(release), "train_hours": 1.0}, tmp_path / "cache"))
    assert [u.gender for u in again.test] == [u.gender for u in data.test]


def test_fleurs_utterances_carry_the_gender_field(tmp_path):
    from plugins.datasets import fleurs
    from test_more_datasets import make_fleurs

    root = tmp_path / "data"
    make_fleurs(root, "de_de", archive=False)
    data = fleurs.load(DatasetRequest("de_de", 0, {"root": str(root), "train_hours": 1.0, "max_clip_seconds": 4.0},
                                      tmp_path / "cache"))
    assert {u.gender for u in data.test} == {"female"} and data.info["test_genders"] == {"female": 3}


def test_utterance_cache_keeps_gender_and_reads_files_without_it(tmp_path):
    audio = np.zeros(160, np.float32)
    save_utterances(tmp_path / "a.npz", {"test": [Utterance("a", audio, "x", "s1", "female"),
                                                   Utterance("b", audio, "y", "s2")]})
    groups, _ = load_utterances(tmp_path / "a.npz")
    assert [(u.id, u.speaker, u.gender) for u in groups["test"]] == [("a", "s1", "female"), ("b", "s2", "")]
    assert Utterance("c", audio, "z").gender == "" and Utterance("c", audio, "z", "s").speaker == "s"  # old calls


def test_stored_genders_round_trip_and_the_record_names_them():
    blob = encode_genders({"u2": "male", "u1": "female", "u3": ""})
    assert blob.suffix == ".gender" and decode_genders(blob.content) == {"u1": "female", "u2": "male", "u3": ""}
    record = CellRecord.from_json({"identity": {}, "seed": 0, "genders": {
        "test": {"sha256": blob.sha256, "bytes": len(blob.content), "suffix": ".gender", "utterances": 3}}})
    assert record.genders["test"].sha256 == blob.sha256
    assert CellRecord.from_json(record.to_json()) == record
    assert "genders" not in CellRecord.from_json({"identity": {}, "seed": 0}).to_json()  # old records unchanged


def test_per_gender_cer_of_a_cell():
    rows = [("a", "abcd", "abcd"), ("b", "abcd", "abxd"), ("c", "hello", "hallo"), ("d", "xy", ""),
            ("e", "zzz", "")]
    genders = {"a": "female", "b": "female", "c": "male", "d": "male"}  # e: not recorded
    scores = cell_scores(rows, genders)
    assert set(scores) == {"female", "male"}
    assert (scores["female"].utterances, scores["female"].characters, scores["female"].edits) == (2, 8, 1)
    assert scores["female"].cer == 0.125 and scores["male"].cer == pytest.approx(3 / 7)
    assert cell_scores(rows, {}) == {}


def _units(effect: float, n: int = 8, seeds: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        base = 0.2 + 0.05 * i  # languages and models of very different difficulty
        for seed in range(seeds):
            male = base + rng.normal(0, 0.005)
            rows.append({"model": f"m{i % 2}", "language": f"l{i // 2}", "seed": seed, "male": male,
                         "female": male + (effect if effect else (0.02 if i % 2 else -0.02) * (1 + i / 10))})
    return pd.DataFrame(rows)


def test_gender_test_finds_a_planted_difference_and_not_an_absent_one():
    planted, = gender_tests(_units(0.05), "common_voice", speakers={"l0": {"female": 3, "male": 5}})
    assert planted.p_value == pytest.approx(2 / 2 ** 8)  # 8 pairs, every difference of one sign: exact
    assert planted.effect.estimate == pytest.approx(0.05) and planted.effect.low > 0
    assert "median CER higher for female speakers" in planted.sentence and "8 pairs, 4 languages" in planted.sentence
    assert any("l0: 3 female, 5 male" in note for note in planted.notes)
    absent, = gender_tests(_units(0.0), "common_voice")
    assert absent.p_value > 0.2 and absent.effect.low < 0 < absent.effect.high
    blank, = gender_tests(_units(0.05, n=2), "common_voice", blank={("m0", "l0")})
    assert not blank.tested and "at least 2 model × language pairs" in blank.sentence
    few, = gender_tests(_units(0.05, n=3), "common_voice")
    assert any("smallest p-value this test can reach is 0.250" in note for note in few.notes)
    none, = gender_tests(pd.DataFrame(), "synthetic", recorded=False, reason="no gender here")
    assert not none.tested and none.sentence == "Speaker gender: not testable — no gender here."


def _gendered_cell(model: str, lang: str, seed: int, rows: list) -> StoredCell:
    cell = _cell(model, lang, seed, rows)
    record = CellRecord.from_json({**cell.record.to_json(), "genders": {
        "test": {"sha256": f"{lang}-genders", "bytes": 1, "suffix": ".gender", "utterances": len(rows)}},
        "data": {**cell.record.data, "test_gender_speakers": {"female": 4, "male": 6}}})
    return StoredCell(cell.key, model, "common_voice", lang, seed, cell.metrics, record, cell.finished_at,
                      cell.duration_s)


def test_report_gives_per_gender_cer_per_cell_and_the_test_holm_corrected(tmp_path):
    cells, hypotheses, genders = [], {}, {}
    for m, model in enumerate(("good-model", "mid-model")):
        for lang in ("de", "es", "it", "ru"):
            for seed in (0, 1):
                rows = _rows(seed * 7 + m, n=30, rate=0.15 + 0.2 * m, prefix=f"{lang}-")
                cell = _gendered_cell(model, lang, seed, rows)
                cells.append(cell)
                hypotheses[cell.key] = rows
                genders[cell.key] = {utt: ("female" if i % 2 else "male") for i, (utt, _, _) in enumerate(rows)}
    paths = write_reports(cells, tmp_path / "reports", ["cer", "wer"], hypotheses=hypotheses, genders=genders)
    payload = json.loads(paths["json"].read_text())
    for entry, cell in zip(payload["cells"], cells):
        expected = cell_scores(hypotheses[cell.key], genders[cell.key])
        got = entry["cer_test_by_gender"]
        assert got["female"]["cer"] == pytest.approx(expected["female"].cer)
        assert got["male"]["utterances"] == expected["male"].utterances == 15
    found = [f for items in payload["findings"].values() for f in items if f["topic"] == "gender"]
    assert len(found) == 1 and found[0]["tested"] and "8 pairs, 4 languages" in found[0]["sentence"]
    assert found[0]["p_adjusted"] is not None and found[0]["p_adjusted"] >= found[0]["p_value"]
    assert "de: 4 female, 6 male" in found[0]["text"]
    md = paths["md"].read_text()
    assert "## CER (test) by speaker gender, mean over seeds" in md
    de = cell_scores(hypotheses["good-model-de-0"], genders["good-model-de-0"])
    de1 = cell_scores(hypotheses["good-model-de-1"], genders["good-model-de-1"])
    assert f"F {(de['female'].cer + de1['female'].cer) / 2:.3f} (15)" in md
    assert "CER (test) by speaker gender" in paths["html"].read_text()


def test_without_recorded_gender_the_finding_says_why(tmp_path):
    cells = [_cell(model, lang, 0, _rows(m, n=10)) for m, model in enumerate(("a", "b")) for lang in ("de", "es")]
    group, = findings(cells, by_gender={}).values()
    gender, = [f for f in group if f.topic == "gender"]
    assert not gender.tested and "dataset synthetic records no speaker gender" in gender.sentence
    assert "eSpeak NG variants" in gender.sentence
    assert not any(f.topic == "gender" for f in findings(cells)[next(iter(findings(cells)))])  # not asked: none
    recorded = [_gendered_cell("a", "de", 0, _rows(1, n=10))]
    gender, = [f for f in findings(recorded, by_gender={})["common_voice"] if f.topic == "gender"]
    assert "files beside the results store are missing" in gender.sentence


CV_TOML = """
[run]
models = ["tiny-wav2vec2"]
datasets = ["common_voice"]
langs = ["de"]
seeds = 1
store = "results.sqlite"
report_dir = "reports"

[train]
steps = 3
batch_seconds = 8.0

[datasets.common_voice]
release = "{release}"
train_hours = 0.003
"""


def test_bench_run_stores_genders_and_report_scores_them(bench, tmp_path):
    release = gendered_release(tmp_path / "cv")
    config = tmp_path / "bench.toml"
    config.write_text(CV_TOML.format(release=release))
    code, out, err = bench("run", "--config", str(config))
    assert code == 0, err
    with ResultStore(tmp_path / "results.sqlite") as store:
        cell, = store.cells()
        rows = store.hypotheses(cell.key, "test")
    stored = cell.record.genders["test"]
    genders = OutputStore.beside(tmp_path / "results.sqlite").genders(stored.sha256)
    assert stored.utterances == len(rows) == 9 and sorted(genders.values()).count("female") == 3
    assert set(cell.record.genders) == {"dev", "test"}
    code, out, err = bench("report", "--config", str(config))
    assert code == 0, err
    payload = json.loads((tmp_path / "reports" / "matrix.json").read_text())
    by_gender = payload["cells"][0]["cer_test_by_gender"]
    expected = cell_scores(rows, genders)
    assert by_gender["female"]["cer"] == pytest.approx(expected["female"].cer)
    assert by_gender["male"]["edits"] == expected["male"].edits
    assert "Speaker gender" in out and "CER (test) by speaker gender" in (tmp_path / "reports" / "matrix.md").read_text()
    assert frame([cell], scores_by_cell([cell], {cell.key: rows}, {cell.key: genders})).shape[0] == 1
