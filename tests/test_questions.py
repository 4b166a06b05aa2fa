"""The open questions (harness/report/questions.py): each answer finds a planted effect, states its
interval and p-value, appears in the report only when the design can answer it, and the presets
that run them exist with the models they need."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from harness.data import phones
from harness.report import questions as q
from harness.store.results import StoredCell


def _scores(table: dict[tuple[str, str], list[float]]) -> dict:
    return {key: dict(enumerate(values)) for key, values in table.items()}


def _pre(**minutes) -> dict[str, q.Pretraining]:
    return {name: q.Pretraining(dict(m)) for name, m in minutes.items()}


# ---------------------------------------------------------------------------- building blocks
def test_phones_are_segmented_with_their_diacritics_and_ties():
    assert phones.segment("t͡ʃaːo̞ kʲ") == ["t͡ʃ", "aː", "o̞", "kʲ"]
    assert phones.segment("") == []


def test_phonological_distances_of_a_small_table():
    table = {"x": {"a": 0.5, "b": 0.3, "c": 0.2}, "y": {"a": 0.6, "b": 0.4}, "z": {"c": 1.0}}
    assert phones.uncovered_share(["y"], "x", table) == pytest.approx(0.2)
    assert phones.uncovered_share(["y", "z"], "x", table) == pytest.approx(0.0)
    assert phones.uncovered_share(["z"], "y", table) == pytest.approx(1.0)
    assert phones.jaccard_distance(["y"], "x", table) == pytest.approx(1 - 2 / 3)


def test_the_committed_phone_table_covers_the_synthetic_languages():
    from plugins.datasets.synthetic.words import LANGUAGES

    table = json.loads(phones.TABLE.read_text(encoding="utf-8"))
    assert set(table["languages"]) == set(LANGUAGES)
    for code, shares in table["languages"].items():
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-4), code
        assert all(p[0].isalpha() for p in shares), code  # no tone numbers or marks
        assert 20 <= len(shares) <= 60, code


@pytest.mark.slow
def test_the_committed_phone_table_is_what_espeak_gives_now():
    from plugins.datasets.synthetic.phones import distributions

    fresh = distributions(("es", "ru", "zh-CN"))
    table = json.loads(phones.TABLE.read_text(encoding="utf-8"))["languages"]
    for code, shares in fresh.items():
        assert shares == table[code], f"regenerate: python -m plugins.datasets.synthetic.phones {phones.TABLE}"


def test_sign_flip_and_relabelling_tests_are_exact():
    p, min_p = q.sign_flip_p([1.0, 2.0, 3.0, 4.0])
    assert p == pytest.approx(2 / 16) and min_p == pytest.approx(2 / 16)
    p, min_p = q.label_permutation_p([1, 2, 3, 10, 11, 12], [False, False, False, True, True, True])
    assert p == pytest.approx(2 / 20) and min_p == pytest.approx(2 / 20)  # swapping equal groups: same |difference|
    p, min_p = q.label_permutation_p([1, 2, 3, 4, 10, 11], [False, False, False, False, True, True])
    assert p == pytest.approx(1 / 15) and min_p == pytest.approx(1 / 15)


# ---------------------------------------------------------------------------- diversity
def _diversity_scores(effect: float, seeds: int = 2) -> tuple[dict, dict]:
    rng = np.random.default_rng(1)
    pre = _pre(one={"en": 30}, two={"en": 15, "ar": 15}, four={c: 7.5 for c in ("en", "ar", "id", "zh-CN")},
               eight={c: 3.75 for c in ("en", "ar", "id", "zh-CN", "de", "fa", "ja", "nl")}, twice={"en": 60})
    base = {"es": 0.4, "it": 0.45, "ru": 0.6, "pl": 0.55}
    table = {}
    for model, n in (("one", 1), ("two", 2), ("four", 4), ("eight", 8), ("twice", 1)):
        for t, b in base.items():
            level = b * (1 + effect * math.log2(n)) * (0.9 if model == "twice" else 1.0)
            table[(model, t)] = list(level + rng.normal(0, 0.002, seeds))
    return _scores(table), pre


def test_diversity_finds_a_planted_trend_and_compares_quantity():
    scores, pre = _diversity_scores(-0.05)
    answer = q.diversity(scores, pre)
    assert answer is not None and answer.data["targets"] == ["es", "it", "pl", "ru"]
    trend, more, versus = answer.findings
    # the planted -5 % of the level per doubling, relative to the target's mean over the 4 models
    assert trend.effect.estimate == pytest.approx(-0.05 / (1 - 0.05 * 1.5), rel=0.05)
    assert trend.effect.low < trend.effect.estimate < trend.effect.high < 0
    # the units are the 4 models: the planted order and its reverse are the 2 most extreme of 4! relabellings
    assert trend.p_value == pytest.approx(2 / 24)
    assert any("could not have been significant" in n for n in trend.notes)
    assert "one" in more.sentence and "twice" in more.sentence and more.effect.estimate == pytest.approx(1 / 0.9 - 1,
                                                                                                       rel=0.05)
    # eight languages (level 0.85) against twice the speech of one (0.9): diversity better by about 5.6 %
    assert versus.effect.estimate == pytest.approx(0.85 / 0.9 - 1, rel=0.1)
    assert "Diversity against quantity" in versus.sentence


def test_diversity_picks_the_nested_chain_out_of_a_store_with_other_experiments():
    scores, pre = _diversity_scores(-0.05)
    languages = ("en", "fr", "pl", "ja", "zh-CN")
    for name, weights in (("ie20", (2, 2, 2, 12, 12)), ("ie80", (8, 8, 8, 3, 3))):
        pre[name] = q.Pretraining(dict(zip(languages, map(float, weights))))
        for t in ("es", "it", "pl", "ru"):
            scores[(name, t)] = {0: 0.9, 1: 0.9}
    answer = q.diversity(scores, pre)
    assert answer.data["models"] == ["one", "two", "four", "eight", "twice"]


def test_a_statistic_that_is_not_finite_has_no_p_value():
    table = np.array([[0.3, 0.4], [0.5, 0.6], [0.2, 0.1]])
    p, _ = q.permutation_p(table, lambda t: math.nan)
    assert math.isnan(p)
    assert math.isnan(q.sign_flip_p([0.1, math.nan])[0])


def test_diversity_without_an_effect_is_not_significant():
    answer = q.diversity(*_diversity_scores(0.0))
    assert answer.findings[0].p_value > 0.05
    assert answer.findings[0].effect.low < 0 < answer.findings[0].effect.high


def test_no_diversity_answer_without_three_language_counts_or_held_out_targets():
    scores, pre = _diversity_scores(-0.05)
    two_counts = {m: p for m, p in pre.items() if m in ("one", "eight", "twice")}
    assert q.diversity(scores, two_counts) is None
    heard = {m: q.Pretraining({**p.minutes, "es": 1, "it": 1, "ru": 1, "pl": 1}) for m, p in pre.items()}
    assert q.diversity(scores, heard) is None


# ---------------------------------------------------------------------------- Indo-European share
def test_indo_european_share_finds_planted_opposite_slopes():
    languages = ("en", "fr", "pl", "ar", "zh-CN")

    def mix(share):
        return {c: (share / 3 if c in ("en", "fr", "pl") else (1 - share) / 2) * 30 for c in languages}

    pre = _pre(ie20=mix(0.2), ie50=mix(0.5), ie80=mix(0.8))
    table = {}
    for model, share in (("ie20", 0.2), ("ie50", 0.5), ("ie80", 0.8)):
        for t, b in {"es": 0.4, "it": 0.45, "ru": 0.6, "de": 0.5, "id": 0.5, "ja": 0.7}.items():
            slope = -0.2 if t in ("es", "it", "ru", "de") else 0.2
            table[(model, t)] = [b * (1 + slope * (share - 0.5)) + d for d in (0.0, 0.001)]
    answer = q.indo_european_share(_scores(table), pre)
    assert answer is not None
    slopes, leads = answer.findings
    assert slopes.effect.estimate == pytest.approx(-0.4, rel=0.05)
    assert slopes.p_value == pytest.approx(1 / 15)  # the most extreme of the C(6, 2) labellings
    assert any("Power" in n for n in slopes.notes)
    assert not leads.tested and "Descriptive" in leads.sentence and "20% (ie20)" in leads.sentence


# ---------------------------------------------------------------------------- phonological distance
def test_phonology_recovers_a_planted_distance_effect_beside_family():
    table_of = {
        "es": {"a": 0.5, "e": 0.3, "r": 0.2}, "ru": {"a": 0.4, "ɨ": 0.3, "rʲ": 0.3}, "ar": {"a": 0.5, "ħ": 0.5},
        "zh-CN": {"a": 0.4, "ʂ": 0.6}, "it": {"a": 0.4, "e": 0.3, "r": 0.2, "ʎ": 0.1},
        "pl": {"a": 0.4, "ɨ": 0.3, "r": 0.2, "ʂ": 0.1}, "de": {"a": 0.5, "ç": 0.3, "r": 0.2},
    }
    pre = _pre(m_es={"es": 30}, m_ru={"ru": 30}, m_ar={"ar": 30}, m_zh={"zh-CN": 30})
    scores = {}
    for m, p in pre.items():
        for t in ("it", "pl", "de"):
            d = phones.uncovered_share(p.languages, t, table_of)
            scores[(m, t)] = {0: 0.3 * (1 + d) + 0.01 * len(m)}
    answer = q.phonology(scores, pre, table_of=table_of)
    assert answer is not None
    distance, family, partial = answer.findings
    assert distance.effect.estimate < -0.8  # more distant, less gain
    assert "Family relatedness" in family.sentence and "beyond family" in partial.sentence
    assert answer.data["uncovered_share"][1][1] == pytest.approx(0.1)  # m_es on it: ʎ unheard


# ---------------------------------------------------------------------------- ranking sensitivity
def test_ranking_agreement_is_one_for_the_same_ranking_and_lower_when_it_flips():
    models, targets = ["a", "b", "c", "d"], ["es", "ru"]
    same = {(m, t): {0: 0.3 + 0.1 * i} for i, m in enumerate(models) for t in targets}
    flipped = {(m, t): {0: 0.6 - 0.1 * i} for i, m in enumerate(models) for t in targets}
    answer = q.ranking({"lr=1": same, "lr=2": same}, same, models, targets)
    assert answer.findings[0].effect.estimate == pytest.approx(1.0)
    answer = q.ranking({"lr=1": same, "lr=2": flipped, "lr=3": same}, same, models, targets)
    assert answer.findings[0].effect.estimate == pytest.approx((-1 + 1 - 1) / 3)
    assert "in 2 of 6" in answer.findings[0].sentence  # the winner changes under lr=2 on both targets
    assert answer.data["tau_to_tuned"] == pytest.approx([1.0, -1.0, 1.0])


# ---------------------------------------------------------------------------- in the report
def _stored(model: str, lang: str, seed: int, cer: float, languages: tuple[str, ...], hours: float,
            minutes: dict | None = None, point: dict | None = None) -> StoredCell:
    metadata = {"pretraining_hours": hours, **({"pretraining_minutes_by_language": minutes} if minutes else {})}
    refs = [f"{lang} sentence number {i}" for i in range(12)]
    record = {
        "preset": "test", "seed": seed, "git_revision": "abc",
        "identity": {"model": {"version": "1", "metadata": metadata, "options": {},
                               "facts": {"pretrained": True, "pretraining_languages": list(languages)}},
                     "dataset": {"version": "1", "options": {}}, "protocol": {"name": "finetune", "version": "1",
                                                                          "options": {}},
                     "train": {"steps": 150, "lr": 0.002, **(point or {})}},
        "packages": {"bench": "1"}, "machine": {"device": "cpu"},
        "data": {"train_hours": 0.13, "test_utterances": len(refs)},
        "train": {"train_seconds": 1.0, "encode_seconds": 0.1, "eval_seconds": {"dev": 0.1, "test": 0.1},
                  "updates": 150, "loss_curve": [3.0, 1.0]},
        "outputs": {"test": {"utterances": len(refs), "empty_hypotheses": 0.0},
                    "dev": {"utterances": len(refs), "empty_hypotheses": 0.0}},
    }
    key = f"{model}-{lang}-{seed}" + "".join(f"-{v}" for v in (point or {}).values())
    return StoredCell(key, model, "synthetic", lang, seed, {"test": {"cer": cer}, "dev": {"cer": cer}}, record,
                      1.7e9, 1.0)


def _rows(cell: StoredCell) -> list[tuple[str, str, str]]:
    """Test rows whose CER is close to the cell's."""
    out = []
    for i in range(12):
        ref = f"{cell.language} sentence number {i}"
        wrong = int(round(cell.metrics["test"]["cer"] * len(ref)))
        out.append((f"{cell.language}-{i}", ref, "x" * wrong + ref[wrong:]))
    return out


def test_the_report_answers_the_diversity_question_and_not_on_the_default_design(tmp_path):
    from harness.report.tables import write_reports

    scores, pre = _diversity_scores(-0.05)
    cells = [_stored(m, t, s, v, pre[m].languages, pre[m].total_minutes / 60) for (m, t), by in scores.items()
             for s, v in by.items()]
    hypotheses = {c.key: _rows(c) for c in cells}
    paths = write_reports(cells, tmp_path / "r", ["cer"], hypotheses=hypotheses)
    data = json.loads(paths["json"].read_text())
    answers = data["questions"]["synthetic"]
    assert [a["key"] for a in answers] == ["diversity"]
    assert answers[0]["findings"][0]["p_adjusted"] is not None  # in the page's Holm correction
    assert paths["question_diversity"].exists()
    html = paths["html"].read_text()
    assert "Open question: Diversity versus quantity" in html and "per doubling" in html
    md = paths["md"].read_text()
    assert "## Open question: Diversity versus quantity" in md

    default = [_stored(m, t, 0, 0.4 + 0.01 * i, langs, 0.5) for i, (m, langs) in enumerate(
        (("tiny-phone-es", ("es",)), ("tiny-phone-ru", ("ru",)), ("tiny-phone-multi", ("en", "fr", "pl", "ar", "id",
                                                                                       "zh-CN"))))
               for t in ("es", "it", "ru")]
    paths = write_reports(default, tmp_path / "d", ["cer"])
    assert json.loads(paths["json"].read_text())["questions"] == {}
    assert "Open question" not in paths["html"].read_text()


def test_the_report_answers_ranking_sensitivity_on_a_sweep(tmp_path):
    from harness.plan.sweep import SweepAxis
    from harness.report.tables import write_reports

    cells = []
    for lr in (5e-4, 2e-3):
        for i, m in enumerate(("a", "b", "c")):
            for t in ("es", "ru"):
                cer = 0.3 + 0.1 * i if lr == 2e-3 else 0.5 - 0.1 * i
                cells.append(_stored(m, t, 0, cer, ("en",), 0.5, point={"lr": lr}))
    points = {c.key: (("train.lr", c.record.identity["train"]["lr"]),) for c in cells}
    paths = write_reports(cells, tmp_path / "r", ["cer"], hypotheses={c.key: _rows(c) for c in cells},
                          sweep=(SweepAxis("train.lr", (5e-4, 2e-3)),), points=points)
    data = json.loads(paths["json"].read_text())
    (answer,) = data["questions"]["synthetic"]
    assert answer["key"] == "ranking"
    effect = answer["findings"][0]["effect"]
    assert effect["estimate"] == pytest.approx(-1.0)  # the two recipes rank the three models in reverse
    assert "test utterances" in effect["reading"]
    assert paths["question_ranking"].exists()


# ---------------------------------------------------------------------------- the presets
def test_presets_of_the_open_questions_plan_their_models_on_held_out_targets():
    from harness.plan.config import load_config
    from harness.plugins import process_registry

    reg = process_registry()
    for preset in ("tiny-diversity", "tiny-ie-share", "tiny-phonology", "tiny-ranking"):
        config = load_config(preset=preset)
        models = reg.expand_models(config.models)
        assert len(models) >= 3, preset
        if preset == "tiny-ranking":
            assert {a.key for a in config.sweep} == {"train.lr", "train.decay"}
            continue
        heard = {code for m in models for code in reg.model(m).spec.facts.pretraining_languages}
        assert not heard & set(config.langs), (preset, heard & set(config.langs))
        assert phones.known(config.langs) and phones.known(heard)


def test_pretraining_shares_set_minutes_and_keep_even_recipes_unchanged():
    from harness.errors import BenchError
    from plugins.models.pretrained import BUILT_IN, QUESTIONS
    from plugins.models.pretrained.recipe import PhoneticRecipe

    assert BUILT_IN["tiny-phone-es"].digest() == "78efda3662ef"  # cached checkpoints and cell keys stay valid
    ie80 = QUESTIONS["tiny-phone-ie80"]
    assert [round(ie80.minutes_for(c), 3) for c in ie80.languages] == [8.0, 8.0, 8.0, 3.0, 3.0]
    assert "shares" in ie80.as_dict() and "shares" not in BUILT_IN["tiny-phone-es"].as_dict()
    with pytest.raises(BenchError, match="one positive weight per language"):
        PhoneticRecipe(("en", "fr"), shares=(1.0,))
    changed, rest = BUILT_IN["tiny-phone-multi"].with_options({"pretrain_shares": [1, 1, 1, 1, 1, 5], "x": 1})
    assert changed.minutes_for("zh-CN") == pytest.approx(15.0) and rest == {"x": 1}


def test_scores_of_leave_blank_cells_out():
    values = pd.DataFrame([("finetune", "a", "synthetic", "es", 0, 0.3), ("finetune", "b", "synthetic", "es", 0, 1.0)],
                          columns=["protocol", "model", "dataset", "language", "seed", "value"])
    assert q.scores_of(values, {("b", "es")}) == {("a", "es"): {0: 0.3}}


def test_blank_cells_count_as_measured_and_an_all_blank_target_is_left_out():
    scores, pre = _diversity_scores(-0.05)
    cells = [_stored(m, t, s, v, pre[m].languages, pre[m].total_minutes / 60) for (m, t), by in scores.items()
             for s, v in by.items()]
    cells += [_stored(m, "uk", s, 1.0, pre[m].languages, pre[m].total_minutes / 60) for m in pre for s in (0, 1)]
    values = pd.DataFrame([("finetune", c.model, "synthetic", c.language, c.seed, c.metrics["test"]["cer"])
                           for c in cells], columns=["protocol", "model", "dataset", "language", "seed", "value"])
    blank = {(m, "uk") for m in pre} | {("two", "ru")}
    (answer,) = q.answers(cells, values, blank)
    assert answer.data["targets"] == ["es", "it", "pl", "ru"]  # uk: every model blank, left out
    assert any("Blank output counted as measured" in x and "two on ru" in x for x in answer.limits)
