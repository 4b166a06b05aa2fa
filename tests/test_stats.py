"""The statistics against scipy and scikit-posthocs called directly on fixed data."""

import pandas as pd
import pytest
import scikit_posthocs as sp
from scipy import stats

from harness.report.stats import (family_tests, per_language_tests, posthoc_matrix, pretraining_tests,
                           related_pretraining_tests)

# 3 models x 2 languages x 4 seeds, fixed numbers
CER = {
    ("good", "de"): [0.20, 0.22, 0.21, 0.19], ("mid", "de"): [0.30, 0.31, 0.29, 0.33],
    ("bad", "de"): [0.50, 0.52, 0.55, 0.51],
    ("good", "ja"): [0.40, 0.45, 0.38, 0.43], ("mid", "ja"): [0.41, 0.44, 0.39, 0.42],
    ("bad", "ja"): [0.42, 0.40, 0.44, 0.41],
}


@pytest.fixture()
def values() -> pd.DataFrame:
    return pd.DataFrame([(m, lang, s, v) for (m, lang), vs in CER.items() for s, v in enumerate(vs)],
                        columns=["model", "language", "seed", "value"])


def test_kruskal_wallis_matches_scipy(values):
    by_lang = {f.topic: f for f in per_language_tests(values)}
    for lang in ("de", "ja"):
        groups = [CER[(m, lang)] for m in ("bad", "good", "mid")]
        h, p = stats.kruskal(*groups)
        assert by_lang[lang].p_value == pytest.approx(p)
        assert f"H = {h:.2f}" in by_lang[lang].sentence
    assert by_lang["de"].significant and "models differ" in by_lang["de"].sentence
    assert not by_lang["ja"].significant and "no significant difference" in by_lang["ja"].sentence


def test_conover_iman_holm_matches_scikit_posthocs(values):
    ours = posthoc_matrix(values, "de")
    direct = sp.posthoc_conover(values[values.language == "de"], val_col="value", group_col="model", p_adjust="holm")
    pd.testing.assert_frame_equal(ours, direct)
    sentence = next(f.sentence for f in per_language_tests(values) if f.topic == "de")
    assert "best good" in sentence
    q = direct.loc["good", "bad"]
    assert q < 0.05 and f"good < bad (p = {q:.3f})" in sentence or "good < bad (p < 0.001)" in sentence


def test_family_comparison_matches_mann_whitney(values):
    findings = family_tests(values)
    overall = findings[0]
    ie = [v for (m, l), vs in CER.items() if l == "de" for v in vs]
    other = [v for (m, l), vs in CER.items() if l == "ja" for v in vs]
    u, p = stats.mannwhitneyu(ie, other, alternative="two-sided")
    assert overall.p_value == pytest.approx(p) and f"U = {u:.1f}" in overall.sentence
    assert "Indo-European languages" in overall.sentence
    per_model = {f.sentence.split(":")[0]: f for f in findings[1:]}
    assert set(per_model) == {"bad", "good", "mid"}
    good_p = stats.mannwhitneyu(CER[("good", "de")], CER[("good", "ja")], alternative="two-sided").pvalue
    assert per_model["good"].p_value == pytest.approx(good_p)
    assert "significantly lower CER" in per_model["good"].sentence


def test_related_pretraining(values):
    findings = related_pretraining_tests(values, {"good": ["nl"], "bad": ["zh-CN"]})
    (f,) = findings
    related = CER[("good", "de")]  # nl and de are both Germanic
    unrelated = CER[("good", "ja")] + CER[("bad", "de")] + CER[("bad", "ja")]
    assert f.p_value == pytest.approx(stats.mannwhitneyu(related, unrelated, alternative="two-sided").pvalue)
    assert not related_pretraining_tests(values, {})[0].tested


def test_pretrained_against_no_pretraining(values):
    (f,) = pretraining_tests(values, {"good": True, "mid": True, "bad": False})
    pretrained = [v for (m, _), vs in CER.items() if m != "bad" for v in vs]
    baseline = CER[("bad", "de")] + CER[("bad", "ja")]
    u, p = stats.mannwhitneyu(pretrained, baseline, alternative="two-sided")
    assert f.p_value == pytest.approx(p) and f"U = {u:.1f}" in f.sentence
    assert "pre-trained models significantly lower CER than models without pre-training" in f.sentence
    assert not pretraining_tests(values, {"good": True, "bad": True})[0].tested  # no baseline
    assert not pretraining_tests(values, {})[0].tested


def test_too_few_seeds_is_reported_not_tested(values):
    one_seed = values[values.seed == 0]
    findings = per_language_tests(one_seed)
    assert all(not f.tested and f.p_value is None for f in findings)
    assert "needs at least 2 seeds per model" in findings[0].sentence
    single_model = values[values.model == "good"]
    assert "only one model" in per_language_tests(single_model)[0].sentence
    lonely = family_tests(values[values.language == "de"])[0]
    assert not lonely.tested and "not tested" in lonely.sentence
