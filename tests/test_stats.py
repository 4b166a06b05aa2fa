"""The statistics against scipy, scikit-posthocs and statsmodels called directly on fixed data, and
known answers planted in the data: a harder target is no transfer effect; a planted transfer
effect of a stated size is found."""

import numpy as np
import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy import stats
from statsmodels.stats.multitest import multipletests

from harness.report.stats import (Finding, adjust, cliffs_delta, epsilon_squared, family_tests, gains,
                                  kendalls_w, language_reference, min_p_kruskal, model_tests, per_language_tests,
                                  posthoc_matrix, pretraining_tests, related_pretraining_tests)

# 3 models x 2 languages x 4 seeds, fixed numbers
CER = {
    ("good", "de"): [0.20, 0.22, 0.21, 0.19], ("mid", "de"): [0.30, 0.31, 0.29, 0.33],
    ("bad", "de"): [0.50, 0.52, 0.55, 0.51],
    ("good", "ja"): [0.40, 0.45, 0.38, 0.43], ("mid", "ja"): [0.41, 0.44, 0.39, 0.42],
    ("bad", "ja"): [0.42, 0.40, 0.44, 0.41],
}


def _frame(table: dict) -> pd.DataFrame:
    return pd.DataFrame([(m, lang, s, v) for (m, lang), vs in table.items() for s, v in enumerate(vs)],
                        columns=["model", "language", "seed", "value"])


@pytest.fixture()
def values() -> pd.DataFrame:
    return _frame(CER)


def test_kruskal_wallis_matches_scipy(values):
    by_lang = {f.topic: f for f in per_language_tests(values)}
    for lang in ("de", "ja"):
        groups = [CER[(m, lang)] for m in ("bad", "good", "mid")]
        h, p = stats.kruskal(*groups)
        assert by_lang[lang].p_value == pytest.approx(p)
        assert f"H = {h:.2f}" in by_lang[lang].sentence
        # the two best models' difference in mean, with a bootstrap interval around it; epsilon-squared
        # = H (n + 1) / (n^2 - 1) beside it
        effect = by_lang[lang].effect
        assert f"ε² = {h * 13 / 143:.3f}" in effect.reading
        assert effect.low <= effect.estimate <= effect.high
    de = by_lang["de"].effect
    assert "good − mid" in de.name and de.estimate == pytest.approx(np.mean(CER[("good", "de")]) - 0.3075)
    assert de.high < 0  # the best model is clearly better than the runner-up
    assert by_lang["de"].significant and "Conover-Iman" in by_lang["de"].sentence
    assert not by_lang["ja"].significant and "Conover-Iman" not in by_lang["ja"].sentence


def test_conover_iman_holm_matches_scikit_posthocs(values):
    ours = posthoc_matrix(values, "de")
    direct = sp.posthoc_conover(values[values.language == "de"], val_col="value", group_col="model", p_adjust="holm")
    pd.testing.assert_frame_equal(ours, direct)
    sentence = next(f.sentence for f in per_language_tests(values) if f.topic == "de")
    assert "best good" in sentence
    q = direct.loc["good", "bad"]
    assert q < 0.05 and f"good < bad (p = {q:.3f})" in sentence or "good < bad (p < 0.001)" in sentence


def test_power_bound_of_kruskal_wallis():
    """3 models x 3 seeds can reach p = 0.027; 2 models x 2 seeds cannot go below 0.121 and say so."""
    assert min_p_kruskal([3, 3, 3]) == pytest.approx(stats.kruskal([1, 2, 3], [4, 5, 6], [7, 8, 9]).pvalue)
    assert min_p_kruskal([3, 3, 3]) < 0.05 < min_p_kruskal([2, 2])
    two = _frame({("a", "de"): [0.1, 0.2], ("b", "de"): [0.5, 0.6]})
    (f,) = per_language_tests(two)
    assert f.p_value == pytest.approx(min_p_kruskal([2, 2])) and "could not have been significant" in f.text()


def test_models_are_compared_paired_over_languages():
    """Friedman over languages as blocks (per-language means over seeds), Nemenyi post hoc, Kendall's W."""
    rng = np.random.default_rng(0)
    langs = ["de", "es", "it", "ru", "pl", "fr", "nl", "pt"]
    difficulty = dict(zip(langs, np.linspace(0.2, 0.7, len(langs))))
    offset = {"a": 0.0, "b": 0.03, "c": 0.08}
    table = {(m, lang): list(difficulty[lang] + off + rng.normal(0, 0.005, 3)) for m, off in offset.items()
             for lang in langs}
    values = _frame(table)
    (f,) = model_tests(values)
    means = values.groupby(["model", "language"])["value"].mean().unstack("language")
    res = stats.friedmanchisquare(*[means.loc[m].to_numpy() for m in ("a", "b", "c")])
    assert f.p_value == pytest.approx(res.pvalue) and f.significant
    assert f.effect.name == "Kendall's W" and f.effect.estimate == pytest.approx(res.statistic / (8 * 2))
    nemenyi = sp.posthoc_nemenyi_friedman(means.T.reset_index(drop=True))
    q = float(nemenyi.loc["a", "c"])
    assert f"a < c ({'p < 0.001' if q < 0.001 else f'p = {q:.3f}'})" in f.sentence
    assert "mean rank (1 = best): a 1.00, b 2.00, c 3.00" in f.sentence
    # two models: Wilcoxon signed-rank on the per-language differences
    (two,) = model_tests(values[values.model != "c"])
    d = (means.loc["a"] - means.loc["b"]).to_numpy()
    assert two.p_value == pytest.approx(stats.wilcoxon(d).pvalue) and two.effect.estimate == pytest.approx(np.median(d))
    # a model blank everywhere is left out, and 3 languages cannot reach significance: said so
    few = values[values.language.isin(["de", "es", "it"])]
    (three,) = model_tests(few, blank={("c", lang) for lang in langs})
    assert "c left out" in three.sentence and "could not have been significant" in three.text()


def test_pretrained_against_no_pretraining_is_paired_by_language(values):
    (f,) = pretraining_tests(values, {"good": True, "mid": True, "bad": False})
    means = values.groupby(["model", "language"])["value"].mean().unstack("language")
    d = ((means.loc["good"] + means.loc["mid"]) / 2 - means.loc["bad"]).to_numpy()
    assert f.p_value == pytest.approx(stats.wilcoxon(d).pvalue)
    assert f.effect.estimate == pytest.approx(np.median(d))
    assert "could not have been significant" in f.text()  # 2 languages: p >= 0.5 always
    assert not pretraining_tests(values, {"good": True, "bad": True})[0].tested  # no baseline
    assert not pretraining_tests(values, {})[0].tested


def test_holm_correction_over_the_page_matches_statsmodels():
    found = {"a": [Finding("x", "x", 0.01), Finding("y", "y", None, tested=False), Finding("z", "z", 0.04)],
             "b": [Finding("w", "w", 0.03)]}
    out = adjust(found)
    expected = multipletests([0.01, 0.04, 0.03], method="holm")[1]
    assert [f.p_adjusted for f in (out["a"][0], out["a"][2], out["b"][0])] == pytest.approx(list(expected))
    assert out["a"][1].p_adjusted is None
    assert out["a"][0].significant and not out["b"][0].significant  # 0.03 * 2 = 0.06 after Holm
    assert "Holm-adjusted" in out["b"][0].text() and "not significant" in out["b"][0].text()


def test_effect_sizes():
    assert cliffs_delta([1, 2], [3, 4]) == -1.0 and cliffs_delta([1, 3], [2, 2]) == 0.0
    assert epsilon_squared([1, 2, 3], [4, 5, 6]) == pytest.approx(stats.kruskal([1, 2, 3], [4, 5, 6]).statistic * 7 / 35)
    assert kendalls_w([1, 2, 3], [2, 3, 4], [3, 4, 5]) == pytest.approx(1.0)


# ---------------------------------------------------------------------------- transfer: planted answers
MONO = {"es-mono": ["es"], "ru-mono": ["ru"], "de-mono": ["de"]}
MULTI = ["en", "fr", "pl", "ar", "id", "zh-CN"]
#: targets and their difficulty: the CER a typical pre-trained model reaches there
TARGETS = {"it": 0.30, "pt": 0.35, "fr": 0.40, "uk": 0.55, "pl": 0.50, "nl": 0.25, "sv-SE": 0.45, "en": 0.20}


def _planted(transfer: float, seeds: int = 3, noise: float = 0.004, models=MONO) -> pd.DataFrame:
    """Every model's CER is the target's difficulty; a monolingual model pre-trained on a language
    related to the target (same subgroup) reaches ``transfer`` relative CER reduction beyond it."""
    from harness.languages import language

    rng = np.random.default_rng(7)
    rows = []
    for model, langs in {**models, "multi": MULTI}.items():
        for target, difficulty in TARGETS.items():
            related = len(langs) == 1 and language(langs[0]).subgroup == language(target).subgroup
            cer = difficulty * (1 - transfer) if related else difficulty
            rows += [(model, target, s, cer * (1 + rng.normal(0, noise))) for s in range(seeds)]
    return pd.DataFrame(rows, columns=["model", "language", "seed", "value"])


def _pretraining(models=MONO) -> dict:
    return {**models, "multi": MULTI}


def test_planted_confound_yields_no_transfer_finding():
    """Targets differ widely in difficulty (en 0.20 ... uk 0.55) and the related targets of the
    Romance model are easier than its unrelated ones, but no model gains from relatedness: the raw
    scores would 'show' transfer, the gains do not."""
    values = _planted(transfer=0.0)
    (f,) = related_pretraining_tests(values, _pretraining(), pretrained={m: True for m in _pretraining()})
    assert f.tested and f.p_value > 0.2 and not f.significant
    assert abs(f.effect.estimate) < 0.01 and f.effect.low <= 0 <= f.effect.high
    assert "within each of 8 targets" in f.sentence
    # the raw-score comparison the report used to make is fooled by the difficulty
    es = values[values.model == "es-mono"]
    raw_related = es[es.language.isin(["it", "pt", "fr"])]["value"]
    raw_unrelated = es[es.language.isin(["uk", "pl", "sv-SE"])]["value"]
    assert stats.mannwhitneyu(raw_related, raw_unrelated).pvalue < 0.01


def test_planted_transfer_effect_of_stated_size_is_found():
    """Related pre-training cuts CER by 20 % of the target's difficulty: the within-target test
    finds it, with the median difference in gain at 0.20 (the reference being the pre-trained
    models' median, each target's gain difference is exactly the planted reduction)."""
    values = _planted(transfer=0.20)
    pretrained = {m: True for m in _pretraining()}
    (f,) = related_pretraining_tests(values, _pretraining(), pretrained=pretrained)
    assert f.significant and f.p_value == pytest.approx(stats.wilcoxon(np.ones(8)).pvalue)
    assert f.effect.estimate == pytest.approx(0.20, abs=0.01)
    assert f.effect.low <= 0.20 <= f.effect.high + 1e-9 and f.effect.low > 0.15
    # the gains are computed against the stated reference
    reference = language_reference(values, pretrained)
    assert reference.kind == "pretrained-median"
    g = gains(values, reference)
    means = values.groupby(["model", "language"])["value"].mean()
    assert g[("es-mono", "it")] == pytest.approx((reference.values["it"] - means["es-mono", "it"])
                                                 / reference.values["it"])


def test_one_monolingual_model_tests_across_targets():
    """With one monolingual model, targets are the units: Mann-Whitney U on its per-target gains,
    checked against scipy; the planted effect gives Cliff's delta 1."""
    values = _planted(transfer=0.20, models={"ru-mono": ["ru"]})
    pretrained = {"ru-mono": True, "multi": True}
    (f,) = related_pretraining_tests(values, {"ru-mono": ["ru"], "multi": MULTI}, pretrained=pretrained)
    reference = language_reference(values, pretrained)
    g = gains(values, reference)
    related = [g[("ru-mono", t)] for t in ("pl", "uk")]
    unrelated = [g[("ru-mono", t)] for t in ("it", "pt", "fr", "nl", "sv-SE", "en")]
    assert f.p_value == pytest.approx(stats.mannwhitneyu(related, unrelated, alternative="two-sided").pvalue)
    assert f.effect.estimate == 1.0 and "across targets" in f.sentence
    # 2 vs 6 targets: the smallest p-value is 2 / C(8, 2) = 0.071 — said, and the scripts differ
    assert "could not have been significant" in f.text() and "script (related: Cyrillic, Latin" in f.text()


def test_default_design_is_not_testable_with_the_reason():
    """The embedded default: one Spanish model, a multilingual one and a blank no-pretraining
    model on es, it, ru. One related and one unrelated target cannot separate relatedness from
    Russian; the blank model is not used as the reference."""
    table = {("es-mono", "es"): [0.40, 0.41, 0.39], ("es-mono", "it"): [0.42, 0.43, 0.41],
             ("es-mono", "ru"): [0.60, 0.59, 0.61], ("multi", "es"): [0.446, 0.45, 0.44],
             ("multi", "it"): [0.461, 0.46, 0.47], ("multi", "ru"): [0.579, 0.58, 0.57],
             ("scratch", "es"): [1.0] * 3, ("scratch", "it"): [1.0] * 3, ("scratch", "ru"): [1.0] * 3}
    values = _frame(table)
    blank = {("scratch", lang) for lang in ("es", "it", "ru")}
    pretrained = {"es-mono": True, "multi": True, "scratch": False}
    (f,) = related_pretraining_tests(values, {"es-mono": ["es"], "multi": MULTI}, pretrained=pretrained, blank=blank)
    assert not f.tested and f.p_value is None and "not testable" in f.sentence
    assert "anything else about ru" in f.sentence and "Cyrillic" in f.sentence
    assert "median of the 2 pre-trained models" in f.sentence and "output is blank" in f.sentence
    # when the no-pretraining model transcribes, it is the reference (relative reduction over scratch)
    values.loc[values.model == "scratch", "value"] = 0.8
    reference = language_reference(values, pretrained)
    assert reference.kind == "no-pretraining" and reference.values["ru"] == pytest.approx(0.8)
    assert not related_pretraining_tests(values, {})[0].tested


def test_family_uses_languages_as_units_and_names_confounds(values):
    (f,) = family_tests(values, hours={"de": 0.5, "ja": 0.2})
    assert not f.tested and "needs at least 2 languages on each side" in f.sentence  # de vs ja only
    table = {(m, lang): [base + off, base + off + 0.01] for m, off in (("a", 0.0), ("b", 0.05))
             for lang, base in (("de", 0.2), ("es", 0.25), ("it", 0.22), ("ja", 0.5), ("zh-CN", 0.6), ("ar", 0.4))}
    (f,) = family_tests(_frame(table), hours={"de": 0.5, "es": 0.5, "it": 0.5, "ja": 0.2, "zh-CN": 0.2, "ar": 0.2},
                        pretraining={"a": ["en"], "b": ["en", "ja"]})
    means = _frame(table).groupby(["model", "language"])["value"].mean().unstack("language").mean()
    ie, other = [means[c] for c in ("de", "es", "it")], [means[c] for c in ("ar", "ja", "zh-CN")]
    assert f.p_value == pytest.approx(stats.mannwhitneyu(ie, other, alternative="two-sided").pvalue)
    assert f.effect.estimate == pytest.approx(cliffs_delta(ie, other)) == -1.0
    text = f.text()
    assert "could not have been significant" in text  # 3 vs 3: p >= 0.1
    assert "script" in text and "training data" in text and "50% of these models' pre-training" in text


def test_too_few_seeds_is_reported_not_tested(values):
    one_seed = values[values.seed == 0]
    findings = per_language_tests(one_seed)
    assert all(not f.tested and f.p_value is None for f in findings)
    assert "needs at least 2 seeds per model" in findings[0].sentence
    single_model = values[values.model == "good"]
    assert "only one model" in per_language_tests(single_model)[0].sentence
    (lonely,) = model_tests(single_model)
    assert not lonely.tested and lonely.effect is None and "not tested" in lonely.sentence


def test_default_design_with_two_monolingual_models_pairs_within_each_target():
    """The embedded default since it has a Russian model too: Spanish and Russian monolingual
    models on es, it, ru. Each target gets a related side (es: its own language; it: Spanish,
    same subgroup; ru: its own language) and an unrelated one, so the test is within target; the
    finding names the pairs, and 3 targets cannot reach p < 0.25 (said)."""
    table = {("es-mono", "es"): [0.39, 0.40, 0.38], ("es-mono", "it"): [0.43, 0.44, 0.42],
             ("es-mono", "ru"): [0.58, 0.59, 0.57], ("ru-mono", "es"): [0.43, 0.44, 0.42],
             ("ru-mono", "it"): [0.47, 0.46, 0.48], ("ru-mono", "ru"): [0.50, 0.51, 0.49],
             ("multi", "es"): [0.446, 0.45, 0.44], ("multi", "it"): [0.461, 0.46, 0.47],
             ("multi", "ru"): [0.579, 0.58, 0.57],
             ("scratch", "es"): [1.0] * 3, ("scratch", "it"): [1.0] * 3, ("scratch", "ru"): [1.0] * 3}
    values = _frame(table)
    blank = {("scratch", lang) for lang in ("es", "it", "ru")}
    pretrained = {"es-mono": True, "ru-mono": True, "multi": True, "scratch": False}
    (f,) = related_pretraining_tests(values, {"es-mono": ["es"], "ru-mono": ["ru"], "multi": MULTI},
                                     pretrained=pretrained, blank=blank)
    assert f.tested and "within each of 3 targets" in f.sentence
    assert "es: es-mono (own language) vs ru-mono (unrelated)" in f.sentence
    assert "it: es-mono (related) vs ru-mono (unrelated)" in f.sentence
    assert "ru: ru-mono (own language) vs es-mono (unrelated)" in f.sentence
    reference = language_reference(values, pretrained, blank)
    g = gains(values, reference)
    d = [g[("es-mono", "es")] - g[("ru-mono", "es")], g[("es-mono", "it")] - g[("ru-mono", "it")],
         g[("ru-mono", "ru")] - g[("es-mono", "ru")]]
    assert all(x > 0 for x in d)
    assert f.p_value == pytest.approx(stats.wilcoxon(d).pvalue) == pytest.approx(0.25)
    assert f.effect.estimate == pytest.approx(float(np.median(d)))
    assert "could not have been significant" in f.text()
    assert "On es, ru the related side is the model pre-trained on that language itself" in f.text()
