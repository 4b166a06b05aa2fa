"""Choices made on dev (never test), grid edges, sensitivity and learning curves, summaries
across languages — on planted scores."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from harness.plan.sweep import SweepAxis
from harness.report.compare import compare, load_results
from harness.report.selection import regime_cells, select_on_dev
from harness.report.summaries import MACRO, across_languages
from harness.report.tables import write_reports
from harness.store.record import CellRecord
from harness.store.results import StoredCell

LR = SweepAxis("train.lr", (1e-4, 3e-4, 1e-3))
MINUTES = SweepAxis("datasets.synthetic.train_minutes", (2.0, 8.0))


def cell(model: str, lang: str, seed: int, lr: float, dev: float, test: float, minutes: float = 8.0,
         blank_dev: bool = False) -> StoredCell:
    record = CellRecord.from_json({
        "seed": seed,
        "identity": {"model": {"version": "1", "metadata": {}, "options": {}, "facts": {"pretrained": True}},
                     "dataset": {"version": "2", "options": {"train_minutes": minutes}},
                     "protocol": {"name": "finetune", "version": "1", "options": {}},
                     "train": {"steps": 150, "lr": lr}},
        "train": {"updates": 150, "train_seconds": 10.0, "loss_curve": [3.0, 2.0]},
        "outputs": {"test": {"utterances": 10, "empty_hypotheses": 0.0},
                    "dev": {"utterances": 10, "empty_hypotheses": 1.0 if blank_dev else 0.0}},
    })
    key = f"{model}-{lang}-{seed}-{lr}-{minutes}"
    return StoredCell(key, model, "synthetic", lang, seed, {"dev": {"cer": dev, "wer": dev}, "test": {"cer": test,
                                                                                                  "wer": test}},
                      record, 1.7e9, 1.0)


# dev scores per (model, language, lr): model "a" is best at 3e-4 on es (inside the grid) and at
# 1e-3 on ru (the grid's edge); model "b" best at 1e-4 everywhere (the other edge)
DEV = {("a", "es"): (0.50, 0.30, 0.40), ("a", "ru"): (0.60, 0.50, 0.45),
       ("b", "es"): (0.35, 0.55, 0.70), ("b", "ru"): (0.40, 0.60, 0.80)}


def planted(test_of=lambda model, lang, i, seed: 0.5) -> list[StoredCell]:
    cells = []
    for (model, lang), devs in DEV.items():
        for i, lr in enumerate(LR.values):
            for seed in (0, 1):
                noise = 0.01 if seed else -0.01  # seeds differ; their mean is the planted value
                cells.append(cell(model, lang, seed, lr, devs[i] + noise, test_of(model, lang, i, seed)))
    return cells


def chosen_lrs(selection) -> dict[tuple[str, str], float]:
    return {(c.model, c.language): dict(c.chosen)["train.lr"] for c in selection.choices}


EXPECTED = {("a", "es"): 3e-4, ("a", "ru"): 1e-3, ("b", "es"): 1e-4, ("b", "ru"): 1e-4}


def test_the_choice_is_the_best_mean_dev_and_test_never_moves_it():
    # test scores planted to favour the value dev likes least: a choice peeking at test would move
    contrary = planted(lambda model, lang, i, seed: DEV[(model, lang)][i])  # test == dev ...
    contrary = [StoredCell(c.key, c.model, c.dataset, c.language, c.seed,
                           {"dev": c.metrics["dev"], "test": {"cer": 1.0 - c.metrics["test"]["cer"]}}, c.record,
                           c.finished_at, c.duration_s) for c in contrary]  # ... turned upside down
    assert chosen_lrs(select_on_dev(contrary, [LR])) == EXPECTED
    rng = random.Random(0)
    for _ in range(20):  # any test scores at all, and none: the same choice
        shuffled = planted(lambda *_: rng.random())
        assert chosen_lrs(select_on_dev(shuffled, [LR])) == EXPECTED
    without_test = [StoredCell(c.key, c.model, c.dataset, c.language, c.seed, {"dev": c.metrics["dev"]}, c.record,
                               c.finished_at, c.duration_s) for c in planted()]
    selection = select_on_dev(without_test, [LR])
    assert chosen_lrs(selection) == EXPECTED
    assert len(selection.chosen_keys) == 4 * 2  # every seed of each chosen point
    a_es = next(c for c in selection.choices if (c.model, c.language) == ("a", "es"))
    assert a_es.dev == pytest.approx(0.30) and [c.seeds for c in a_es.candidates] == [2, 2, 2]


def test_grid_edges_are_flagged_and_the_direction_is_honoured():
    selection = select_on_dev(planted(), [LR])
    edges = {(c.model, c.language): c.at_edge for c in selection.choices}
    assert edges == {("a", "es"): (), ("a", "ru"): ("train.lr",), ("b", "es"): ("train.lr",),
                     ("b", "ru"): ("train.lr",)}
    assert "train.lr from {0.0001, 0.0003, 0.001}" in selection.statement()
    higher = select_on_dev(planted(), [LR], lower_is_better=False)  # e.g. an accuracy: the largest wins
    assert chosen_lrs(higher) == {("a", "es"): 1e-4, ("a", "ru"): 1e-4, ("b", "es"): 1e-3, ("b", "ru"): 1e-3}


def test_a_blank_dev_output_is_never_chosen_over_one_that_transcribes():
    cells = [cell("a", "es", 0, 1e-4, 0.9, 0.9), cell("a", "es", 0, 3e-4, 0.95, 0.2),
             cell("a", "es", 0, 1e-3, 0.5, 0.5, blank_dev=True)]  # blank yet "best" (a metric that rewards nothing)
    assert chosen_lrs(select_on_dev(cells, [LR])) == {("a", "es"): 1e-4}


def test_data_amounts_are_regimes_not_choices():
    cells = [cell(m, "es", s, lr, dev=(0.2 if lr == 3e-4 else 0.4) + (0.3 if minutes == 2.0 else 0.0),
                  test=0.5 - minutes / 40, minutes=minutes)
             for m in ("a", "b") for s in (0, 1) for lr in LR.values for minutes in MINUTES.values]
    selection = select_on_dev(cells, [LR, MINUTES])
    assert len(selection.choices) == 4  # per model and amount
    assert {dict(c.regime)["datasets.synthetic.train_minutes"] for c in selection.choices} == {2.0, 8.0}
    assert all(dict(c.chosen) == {"train.lr": 3e-4} for c in selection.choices)
    named = regime_cells([c for c in cells if c.key in selection.chosen_keys], [LR, MINUTES])
    assert {c.dataset for c in named} == {"synthetic [datasets.synthetic.train_minutes=2]",
                                          "synthetic [datasets.synthetic.train_minutes=8]"}


def test_summaries_across_languages():
    summary = pd.DataFrame([
        {"protocol": "finetune", "model": "a", "dataset": "d", "language": lang, "split": "test", "metric": "cer",
         "mean": mean, "sd": 0.0, "n": 1, "blank": 0}
        for lang, mean in (("es", 0.2), ("it", 0.3), ("ru", 0.7), ("de", 0.4))])
    (item,) = across_languages(summary, {"cer": True}, k=2)
    assert item.macro == pytest.approx(0.4) and item.languages == 4
    assert item.worst == (("ru", 0.7), ("de", 0.4)) and item.worst_mean == pytest.approx(0.55)
    assert item.spread == pytest.approx(0.5)
    (higher,) = across_languages(summary, {"cer": False}, k=2)  # higher is better: the lowest are worst
    assert higher.worst == (("es", 0.2), ("it", 0.3))


def test_report_states_the_choices_and_reports_test_at_them(tmp_path):
    test_of = {("a", "es"): (0.9, 0.1, 0.8)}  # test would pick lr 3e-4 for a/es as dev does; others 0.5
    cells = planted(lambda model, lang, i, seed: test_of.get((model, lang), (0.5, 0.5, 0.5))[i] + 0.1 * (
        model == "b" and i == 0))
    paths = write_reports(cells, tmp_path, ["cer"], sweep=[LR])
    payload = json.loads(paths["json"].read_text())
    choices = {(c["model"], c["language"]): c for c in payload["sweep"]["choices"]}
    assert choices[("a", "ru")]["chosen"] == {"train.lr": 1e-3} and choices[("a", "ru")]["at_edge"] == ["train.lr"]
    assert choices[("a", "es")]["at_edge"] == []
    # the matrix holds the chosen cells only: test at the chosen lr, two seeds each
    rows = {(r["model"], r["language"]): r for r in payload["summary"] if r["split"] == "test" and r["metric"] == "cer"}
    assert rows[("a", "es")]["mean"] == pytest.approx(0.1) and rows[("a", "es")]["n"] == 2
    assert rows[("b", "es")]["mean"] == pytest.approx(0.6)
    assert len(payload["cells"]) == 8 and len(payload["sweep"]["cells"]) == 24
    macro = {r["model"]: r for r in payload["across_languages"] if r["split"] == "test" and r["metric"] == "cer"}
    assert macro["a"]["macro_average"] == pytest.approx((0.1 + 0.5) / 2)
    html = paths["html"].read_text()
    assert "Choices made on dev" in html and "widen it" in html and "sensitivity to the swept settings" in html
    assert "chosen on dev (CER" in html.replace("Chosen", "chosen") and "across languages" in html
    assert paths["sensitivity"].exists()
    # bench compare reads the summaries across languages like languages
    results = load_results(paths["json"])
    assert results[("a", "synthetic", MACRO, "test", "cer")] == pytest.approx(0.3)
    worse = dict(results)
    worse[("a", "synthetic", MACRO, "test", "cer")] += 0.05
    assert [d.key for d in compare(results, worse).regressions] == [("a", "synthetic", MACRO, "test", "cer")]


def test_report_draws_learning_curves_for_a_data_amount_sweep(tmp_path):
    cells = [cell(m, lang, s, lr, dev=0.3 if lr == 3e-4 else 0.5, test=(0.6 if minutes == 2.0 else 0.3) + 0.02 * s,
                  minutes=minutes)
             for m in ("a", "b") for lang in ("es", "ru") for s in (0, 1) for lr in LR.values
             for minutes in MINUTES.values]
    paths = write_reports(cells, tmp_path, ["cer"], sweep=[LR, MINUTES])
    payload = json.loads(paths["json"].read_text())
    curves = payload["sweep"]["learning_curves"]
    assert {(r["amount"], round(r["mean"], 3)) for r in curves} == {(2.0, 0.61), (8.0, 0.31)}
    assert paths["learning_curves"].exists() and "Learning curves" in paths["html"].read_text()
    assert {r["dataset"] for r in payload["summary"]} == {"synthetic [datasets.synthetic.train_minutes=2]",
                                                          "synthetic [datasets.synthetic.train_minutes=8]"}


def test_dev_curves_are_kept_in_the_record_and_drawn_with_the_loss_curves(tmp_path):
    base = cell("a", "es", 0, 1e-4, 0.3, 0.3)
    facts = {**base.record.train.to_json(), "dev_curve": [[25, 0.8], [50, 0.4], [75, 0.5]], "selected_update": 50}
    record = CellRecord.from_json({**base.record.to_json(), "train": facts})
    assert record.train.dev_curve == ((25, 0.8), (50, 0.4), (75, 0.5)) and record.train.selected_update == 50
    assert CellRecord.from_json(record.to_json()) == record
    assert "dev_curve" not in base.record.train.to_json()  # a cell without it records nothing new
    cells = [StoredCell(base.key, "a", "synthetic", "es", 0, base.metrics, record, 1.7e9, 1.0)]
    paths = write_reports(cells, tmp_path, ["cer"])
    payload = json.loads(paths["json"].read_text())
    assert payload["cells"][0]["dev_curve"] == [[25, 0.8], [50, 0.4], [75, 0.5]]
    assert payload["cells"][0]["selected_update"] == 50
    assert paths["loss_curves"].exists()


def test_a_choice_from_an_incomplete_grid_says_so():
    cells = [c for c in planted() if dict(select_on_dev([c], [LR]).choices[0].chosen)["train.lr"] != 1e-3]
    selection = select_on_dev(cells, [LR])
    assert all(c.incomplete and c.grid_points == 3 for c in selection.choices)
    assert all("only 2 of 3 grid points scored on dev" in c.note() for c in selection.choices)
    assert not select_on_dev(planted(), [LR]).choices[0].incomplete
