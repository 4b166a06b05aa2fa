"""``bench export``: per-utterance JSONL that re-scores to the stored CER and WER, the matrix, model-index files."""

from __future__ import annotations

import json
from collections import defaultdict

import jiwer
import pandas as pd
import pytest
import yaml

from harness.report.export import UTTERANCE_FIELDS, utterance_errors
from harness.store.results import ResultStore


def test_utterance_errors_count_as_the_corpus_metrics_do():
    refs = ["hola mundo", "el gato negro", "sí"]
    hyps = ["hola mondo", "gato negro negro", ""]
    rows = [utterance_errors(r, h) for r, h in zip(refs, hyps)]
    assert rows[0]["char_substitutions"] == 1 and rows[0]["ref_chars"] == 10 and rows[0]["word_errors"] == 1
    assert rows[2] == {**rows[2], "char_deletions": 2, "char_errors": 2, "word_deletions": 1, "ref_words": 1}
    assert sum(r["char_errors"] for r in rows) / sum(r["ref_chars"] for r in rows) == pytest.approx(
        jiwer.cer(refs, hyps))
    assert sum(r["word_errors"] for r in rows) / sum(r["ref_words"] for r in rows) == pytest.approx(
        jiwer.wer(refs, hyps))
    assert utterance_errors("", "x")["ref_chars"] == 0


@pytest.mark.slow
def test_export_round_trips_to_the_stored_scores(bench, small_config, tmp_path):
    store = tmp_path / "results.sqlite"
    selection = ("--config", str(small_config), "--models", "tiny-wav2vec2", "--langs", "de,es", "--seeds", "2",
                 "--store", str(store), "--set", "train.steps=3", "--set", "train.lr=1.0", "--set", "run.threads=1")
    code, _, err = bench("run", *selection, "--no-progress")
    assert code == 0, err
    out = tmp_path / "export"
    code, stdout, err = bench("export", *selection, "--out", str(out))
    assert code == 0, err
    assert "exported 4 of 4 planned cells" in stdout

    with ResultStore(store, readonly=True) as results:
        stored = {c.key: c for c in results.cells()}
        sizes = {(k, split): len(results.hypotheses(k, split)) for k in stored for split in ("dev", "test")}
    lines = [json.loads(line) for line in (out / "utterances.jsonl").read_text(encoding="utf-8").splitlines()]
    assert list(lines[0]) == list(UTTERANCE_FIELDS)
    by_cell: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for line in lines:
        by_cell[(line["key"], line["split"])].append(line)
    assert {k: len(v) for k, v in by_cell.items()} == sizes
    assert any(line["hypothesis"] for line in lines)  # a large learning rate leaves the blank plateau at once
    for (key, split), rows in by_cell.items():
        cell = stored[key]
        assert {(r["model"], r["language"], r["seed"]) for r in rows} == {(cell.model, cell.language, cell.seed)}
        refs, hyps = [r["reference"] for r in rows], [r["hypothesis"] for r in rows]
        # re-scored with jiwer from the JSONL alone: the stored corpus-level scores
        assert jiwer.cer(refs, hyps) == pytest.approx(cell.metrics[split]["cer"], abs=1e-12)
        assert jiwer.wer(refs, hyps) == pytest.approx(cell.metrics[split]["wer"], abs=1e-12)
        assert sum(r["char_errors"] for r in rows) / sum(r["ref_chars"] for r in rows) == pytest.approx(
            cell.metrics[split]["cer"], abs=1e-12)

    matrix = pd.read_csv(out / "matrix.csv")
    test_cer = matrix[(matrix.split == "test") & (matrix.metric == "cer")].set_index("language")
    for language in ("de", "es"):
        values = [c.metrics["test"]["cer"] for c in stored.values() if c.language == language]
        assert test_cer.loc[language, "mean"] == pytest.approx(sum(values) / 2)
        assert test_cer.loc[language, "n"] == 2
    payload = json.loads((out / "matrix.json").read_text())
    assert payload["cells"] == 4 and payload["utterance_lines"] == len(lines)
    assert len(pd.read_csv(out / "cells.csv")) == 4 * 2 * 2  # cells x splits x metrics

    from huggingface_hub.repocard_data import model_index_to_eval_results

    card = yaml.safe_load((out / "model-index" / "tiny-wav2vec2.yaml").read_text())
    name, results = model_index_to_eval_results(card["model-index"])
    assert name == "tiny-wav2vec2"
    found = {(r.dataset_config, r.metric_type): r.metric_value for r in results}
    assert {r.task_type for r in results} == {"automatic-speech-recognition"}
    assert found[("es", "cer")] == pytest.approx(test_cer.loc["es", "mean"], abs=1e-6)
    assert set(found) == {(lang, m) for lang in ("de", "es") for m in ("cer", "wer")}
