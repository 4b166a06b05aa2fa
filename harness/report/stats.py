"""The study's statistics, computed with scipy and scikit-posthocs.

- per language: Kruskal-Wallis across models over seeds, then Conover-Iman post hoc tests
  with Holm correction (which pairs of models differ);
- Indo-European versus other languages: Mann-Whitney U on CER, per model and overall;
- pre-training on a related language (same subgroup as the target) versus unrelated, for
  models whose metadata lists their pre-training languages.

Each finding is a :class:`Finding` with a sentence and its p-value; data too thin to test
(fewer than two seeds per model, a single model, a single group) is reported as such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from harness.languages import language

ALPHA = 0.05


@dataclass(frozen=True)
class Finding:
    topic: str
    sentence: str
    p_value: float | None = None
    tested: bool = True

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


def _fmt_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def per_language_tests(values: pd.DataFrame, metric: str = "cer", lower_is_better: bool = True,
                       blank: frozenset | set = frozenset()) -> list[Finding]:
    """``values``: one row per cell with columns model, language, seed, value. ``blank``: (model,
    language) pairs whose output is (almost) all blank, never named best."""
    import scikit_posthocs as sp
    from scipy import stats

    findings = []
    for lang, part in values.groupby("language", sort=True):
        seeds = part.groupby("model")["value"].count()
        if len(seeds) < 2:
            findings.append(Finding(lang, f"{lang}: only one model, nothing to compare.", tested=False))
            continue
        if seeds.min() < 2:
            findings.append(Finding(
                lang, f"{lang}: not tested — Kruskal-Wallis needs at least 2 seeds per model "
                      f"(fewest here: {int(seeds.min())}).", tested=False))
            continue
        groups = [g["value"].to_numpy() for _, g in part.groupby("model", sort=True)]
        if part["value"].nunique() == 1:
            findings.append(Finding(lang, f"{lang}: every model scored the same; no difference to test.", 1.0))
            continue
        h, p = stats.kruskal(*groups)
        medians = part.groupby("model")["value"].median().sort_values(ascending=lower_is_better)
        if p >= ALPHA:
            findings.append(Finding(
                lang, f"{lang}: no significant difference between the {len(groups)} models "
                      f"(Kruskal-Wallis H = {h:.2f}, {_fmt_p(p)}).", float(p)))
            continue
        post = sp.posthoc_conover(part, val_col="value", group_col="model", p_adjust="holm")
        pairs = []
        names = list(medians.index)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                q = float(post.loc[a, b])
                if q < ALPHA:
                    pairs.append(f"{a} {'<' if lower_is_better else '>'} {b} ({_fmt_p(q)})")
        detail = "; ".join(pairs) if pairs else "no pair survives the Holm correction"
        best = next((name for name in names if (name, lang) not in blank), None)
        crowned = (f"best {best} (median {metric.upper()} {medians[best]:.3f})" if best is not None
                   else "no model transcribes anything")
        findings.append(Finding(
            lang, f"{lang}: models differ (Kruskal-Wallis H = {h:.2f}, {_fmt_p(p)}); {crowned}; "
                  f"Conover-Iman with Holm: {detail}.",
            float(p)))
    return findings


def posthoc_matrix(values: pd.DataFrame, lang: str) -> pd.DataFrame:
    """Holm-corrected Conover-Iman p-values between the models on one language."""
    import scikit_posthocs as sp

    part = values[values["language"] == lang]
    return sp.posthoc_conover(part, val_col="value", group_col="model", p_adjust="holm")


def _mann_whitney(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    from scipy import stats

    result = stats.mannwhitneyu(list(a), list(b), alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def _compare(topic: str, what: str, left_name: str, left, right_name: str, right, metric: str) -> Finding:
    if len(left) < 2 or len(right) < 2:
        return Finding(topic, f"{what}: not tested — needs at least 2 results on each side "
                              f"({left_name}: {len(left)}, {right_name}: {len(right)}).", tested=False)
    u, p = _mann_whitney(left, right)
    ml, mr = float(pd.Series(left).median()), float(pd.Series(right).median())
    if ml == mr:  # a tie in medians is no direction
        differ = "their distributions differ significantly" if p < ALPHA else "no significant difference"
        return Finding(topic, f"{what}: {left_name} and {right_name} have the same median {metric.upper()} "
                              f"({ml:.3f}); {differ} (Mann-Whitney U = {u:.1f}, {_fmt_p(p)}).", p)
    verdict = "lower" if ml < mr else "higher"
    significance = "significantly " if p < ALPHA else "not significantly "
    return Finding(topic, f"{what}: {left_name} {significance}{verdict} {metric.upper()} than {right_name} "
                          f"(median {ml:.3f} vs {mr:.3f}; Mann-Whitney U = {u:.1f}, {_fmt_p(p)}).", p)


def family_tests(values: pd.DataFrame, metric: str = "cer") -> list[Finding]:
    """Indo-European versus other target languages, per model and over all models."""
    ie = values["language"].map(lambda code: language(code).indo_european)
    findings = [_compare("family", "All models", "Indo-European languages", values[ie]["value"].tolist(),
                         "other languages", values[~ie]["value"].tolist(), metric)]
    for model, part in values.groupby("model", sort=True):
        mask = part["language"].map(lambda code: language(code).indo_european)
        findings.append(_compare("family", model, "Indo-European languages", part[mask]["value"].tolist(),
                                 "other languages", part[~mask]["value"].tolist(), metric))
    return findings


def related_pretraining_tests(values: pd.DataFrame, pretraining: Mapping[str, Sequence[str]],
                             metric: str = "cer") -> list[Finding]:
    """Targets related to a model's pre-training languages (same subgroup) versus unrelated ones.

    ``pretraining`` maps model -> its pre-training language codes. As in the study, only
    monolingual models (one pre-training language) take part: for a multilingual model nearly
    every target is related to something it was pre-trained on.
    """
    rows = []
    for row in values.itertuples(index=False):
        langs = pretraining.get(row.model)
        if not langs or len(langs) != 1:
            continue
        target = language(row.language)
        related = any(language(code).subgroup == target.subgroup and target.subgroup != "unknown" for code in langs)
        rows.append((row.model, related, row.value))
    if not rows:
        return [Finding("related", "Related pre-training: not tested — no monolingual model in the results "
                                   "lists its pre-training language.", tested=False)]
    frame = pd.DataFrame(rows, columns=["model", "related", "value"])
    return [_compare("related", "Pre-training on a related language", "related targets",
                     frame[frame["related"]]["value"].tolist(), "unrelated targets",
                     frame[~frame["related"]]["value"].tolist(), metric)]


def pretraining_tests(values: pd.DataFrame, pretrained: Mapping[str, bool], metric: str = "cer") -> list[Finding]:
    """Every cell of a pre-trained model versus every cell of a model without pre-training.

    ``pretrained`` maps model -> whether it was pre-trained; models it lacks take no part.
    """
    known = values[values["model"].isin(list(pretrained))]
    flags = known["model"].map(lambda m: bool(pretrained[m]))
    if known.empty or flags.all() or not flags.any():
        return [Finding("pretraining", "Pre-training: not tested — needs results of pre-trained models and of a "
                                       "model without pre-training (such as no-pretraining or tiny-wav2vec2).",
                        tested=False)]
    return [_compare("pretraining", "Pre-training", "pre-trained models", known[flags]["value"].tolist(),
                     "models without pre-training", known[~flags]["value"].tolist(), metric)]


def all_findings(values: pd.DataFrame, pretraining: Mapping[str, Sequence[str]], metric: str = "cer",
                 pretrained: Mapping[str, bool] | None = None, lower_is_better: bool = True,
                 blank: frozenset | set = frozenset()) -> list[Finding]:
    return [*per_language_tests(values, metric, lower_is_better, blank), *family_tests(values, metric),
            *related_pretraining_tests(values, pretraining, metric),
            *(pretraining_tests(values, pretrained, metric) if pretrained is not None else [])]
