"""The report's statistical findings, computed with scipy, scikit-posthocs and statsmodels.

Each test is designed so that it separates what it claims to measure from the target language's
difficulty (docs/statistics.md explains each one for a reviewer):

- per language (the study's own test): Kruskal-Wallis across models over seeds, Conover-Iman post
  hoc with Holm correction; effect size epsilon-squared;
- models across languages (paired): per-language means over seeds, Friedman with Nemenyi post hoc
  (three or more models) or Wilcoxon signed-rank (two), languages as blocks; effect size Kendall's
  W or the median paired difference;
- pre-trained versus not (paired by language): Wilcoxon signed-rank over languages of the
  difference between the pre-trained models' mean and the no-pretraining model's;
- transfer from a related pre-training language: on *gains*, a model's relative reduction of the
  metric against a per-language reference (:func:`language_reference`), never on raw scores;
  within each target when several monolingual models share targets (Wilcoxon signed-rank, paired
  by target), else across targets (Mann-Whitney U on per-target gains); "not testable" with the
  reason when the design cannot separate relatedness from the target;
- Indo-European versus other target languages: languages are the units (Mann-Whitney U on the
  per-language mean of the same models), with the confounds it cannot separate named;
- speaker gender, where the dataset records it: female minus male speakers' test CER within each
  model and language (seeds averaged), Wilcoxon signed-rank over those pairs.

Every tested finding carries an effect size with a percentile bootstrap interval, a note when the
design could not have reached p < 0.05 at all, and the confounds its groups differ in; one Holm
correction runs over all the findings of a page (:func:`adjust`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from harness.languages import language

ALPHA = 0.05
#: bootstrap resamples of an effect size's interval, and its confidence level
RESAMPLES = 1000
LEVEL = 0.95
#: the multiple-comparison correction over a page's findings (statsmodels' name, shown name)
CORRECTION = ("holm", "Holm")

Blank = frozenset | set


@dataclass(frozen=True)
class Effect:
    """An effect size, its percentile bootstrap interval (NaN when too few values to resample)
    and how to read it."""

    name: str
    estimate: float
    low: float = math.nan
    high: float = math.nan
    reading: str = ""

    def text(self) -> str:
        interval = (f" (95 % bootstrap interval [{self.low:.3f}, {self.high:.3f}])"
                    if not (math.isnan(self.low) or math.isnan(self.high))
                    else " (no interval: too few values to resample)")
        reading = f"; {self.reading}" if self.reading else ""
        return f"{self.name} = {self.estimate:.3f}{interval}{reading}"

    def as_dict(self) -> dict:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {"name": self.name, "estimate": num(self.estimate), "low": num(self.low), "high": num(self.high),
                "level": LEVEL, "method": "percentile bootstrap", "reading": self.reading}


@dataclass(frozen=True)
class Finding:
    topic: str
    sentence: str
    p_value: float | None = None
    tested: bool = True
    #: the effect size beside the p-value
    effect: Effect | None = None
    #: the test and its unit of analysis, in a few words
    design: str = ""
    #: power and confound statements
    notes: tuple[str, ...] = ()
    #: the p-value after the page's multiple-comparison correction (:func:`adjust`)
    p_adjusted: float | None = None

    @property
    def significant(self) -> bool:
        p = self.p_adjusted if self.p_adjusted is not None else self.p_value
        return p is not None and p < ALPHA

    def text(self) -> str:
        """The sentence with its effect size, corrected p-value and notes."""
        parts = [self.sentence]
        if self.effect is not None:
            parts.append(f"Effect: {self.effect.text()}.")
        if self.p_adjusted is not None:
            verdict = "significant" if self.significant else "not significant"
            parts.append(f"{CORRECTION[1]}-adjusted over the page's findings: {_fmt_p(self.p_adjusted)}, "
                         f"{verdict} at α = {ALPHA}.")
        parts += list(self.notes)
        return " ".join(parts)

    def as_dict(self) -> dict:
        return {"topic": self.topic, "sentence": self.sentence, "text": self.text(), "p_value": self.p_value,
                "p_adjusted": self.p_adjusted, "significant": self.significant, "tested": self.tested,
                "design": self.design, "effect": self.effect.as_dict() if self.effect else None,
                "notes": list(self.notes)}


def _fmt_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _pct(x: float) -> str:
    return f"{100 * x:+.1f} %"


# ---------------------------------------------------------------------------- helpers
def _interval(samples: Sequence[Sequence[float]], statistic: Callable[..., float],
              paired: bool = False) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*samples)``: samples resampled independently
    (or jointly when ``paired``), seeded, so a report is reproducible. NaN with fewer than 2 values
    in a sample or when every resample is degenerate."""
    from scipy import stats

    data = tuple(np.asarray(s, dtype=float) for s in samples)
    if any(len(s) < 2 for s in data):
        return math.nan, math.nan
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            res = stats.bootstrap(data, statistic, paired=paired, vectorized=False, n_resamples=RESAMPLES,
                                  confidence_level=LEVEL, method="percentile", rng=np.random.default_rng(0))
        except (ValueError, ZeroDivisionError):
            return math.nan, math.nan
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def cliffs_delta(a: Sequence[float], b: Sequence[float]) -> float:
    """P(a > b) - P(a < b) over all pairs (Cliff 1993): -1..1, 0 when the groups overlap evenly."""
    x, y = np.asarray(a, float)[:, None], np.asarray(b, float)[None, :]
    return float(((x > y).sum() - (x < y).sum()) / (x.size * y.size))


def epsilon_squared(*groups: Sequence[float]) -> float:
    """Kruskal-Wallis effect size H / ((n² - 1) / (n + 1)) (Tomczak & Tomczak 2014): 0..1."""
    from scipy import stats

    n = sum(len(g) for g in groups)
    if len(set(np.concatenate([np.asarray(g, float) for g in groups]))) < 2:
        return 0.0
    h = stats.kruskal(*groups).statistic
    return float(h * (n + 1) / (n * n - 1))


def kendalls_w(*columns: Sequence[float]) -> float:
    """Friedman's chi-square / (n (k - 1)) over k treatments (columns) and n blocks: 0..1."""
    from scipy import stats

    k, n = len(columns), len(columns[0])
    block = np.column_stack([np.asarray(c, float) for c in columns])
    if np.all(block == block[:, :1]):
        return 0.0
    return float(stats.friedmanchisquare(*columns).statistic / (n * (k - 1)))


def min_p_kruskal(sizes: Sequence[int]) -> float:
    """The smallest p-value Kruskal-Wallis (scipy's chi-square approximation) reaches with these
    group sizes: every group's values above every other's."""
    from scipy import stats

    start, groups = 0, []
    for n in sizes:
        groups.append(list(range(start, start + n)))
        start += n
    return float(stats.kruskal(*groups).pvalue)


def min_p_wilcoxon(n: int) -> float:
    """Exact two-sided signed-rank test on n pairs: every difference of one sign."""
    return min(1.0, 2.0 / 2 ** n)


def min_p_mann_whitney(m: int, n: int) -> float:
    """Exact two-sided Mann-Whitney U: the two groups fully separated."""
    return min(1.0, 2.0 / math.comb(m + n, m))


def min_p_friedman(blocks: int, treatments: int) -> float:
    from scipy import stats

    return float(stats.chi2.sf(blocks * (treatments - 1), treatments - 1))


def _power_note(min_p: float, what: str) -> tuple[str, ...]:
    if min_p < ALPHA:
        return ()
    return (f"Power: with {what} the smallest p-value this test can reach is {min_p:.3f}, so it could not have "
            f"been significant at α = {ALPHA} whatever the data.",)


def _means(values: pd.DataFrame) -> pd.DataFrame:
    """model x language table of means over seeds."""
    return values.groupby(["model", "language"])["value"].mean().unstack("language")


def _join(codes) -> str:
    return ", ".join(sorted(codes)) or "none"


def confounds(groups: Mapping[str, Sequence[str]], hours: Mapping[str, float] | None = None,
              skip: Sequence[str] = ()) -> tuple[str, ...]:
    """Named differences between groups of target languages besides the one under test: family,
    script, training hours (more than 10 % apart)."""
    hours = hours or {}
    found = []
    for attribute in ("family", "script"):
        if attribute in skip:
            continue
        kinds = {name: sorted({getattr(language(c), attribute) for c in codes}) for name, codes in groups.items()}
        if len({tuple(v) for v in kinds.values()}) > 1:
            found.append(f"{attribute} (" + "; ".join(f"{name}: {', '.join(v)}" for name, v in kinds.items()) + ")")
    known = {name: [hours[c] for c in codes if c in hours] for name, codes in groups.items()}
    if all(known.values()):
        means = {name: float(np.mean(v)) for name, v in known.items()}
        if max(means.values()) > 1.1 * min(means.values()):
            found.append("training data (" + "; ".join(f"{name}: {v:.2f} h" for name, v in means.items()) + ")")
    if not found:
        return ()
    return ("Confound: the groups differ also in " + ", ".join(found) + "; the test cannot tell these apart from "
            "the difference it is about.",)


def _mean_difference(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.mean(a) - np.mean(b))


# ---------------------------------------------------------------------------- per language (the study's test)
def per_language_tests(values: pd.DataFrame, metric: str = "cer", lower_is_better: bool = True,
                       blank: Blank = frozenset()) -> list[Finding]:
    """Kruskal-Wallis across models over seeds on each language, Conover-Iman with Holm when it is
    significant. ``values``: one row per cell with columns model, language, seed, value.
    ``blank``: (model, language) pairs whose output is (almost) all blank, never named best."""
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
        design = f"Kruskal-Wallis across {len(groups)} models, seeds as samples"
        if part["value"].nunique() == 1:
            findings.append(Finding(lang, f"{lang}: every model scored the same; no difference to test.", 1.0,
                                    design=design))
            continue
        h, p = stats.kruskal(*groups)
        medians = part.groupby("model")["value"].median().sort_values(ascending=lower_is_better)
        names = sorted(medians.index, key=lambda m: (m, lang) in blank)  # stable: blank-output models last
        by_model = {m: g["value"].to_numpy() for m, g in part.groupby("model")}
        first, second = names[0], names[1]
        effect = Effect(f"difference in mean {metric.upper()}, {first} − {second} (the two best)",
                        float(by_model[first].mean() - by_model[second].mean()),
                        *_interval([by_model[first], by_model[second]], _mean_difference),
                        reading=f"seeds resampled within each model; ε² = {epsilon_squared(*groups):.3f} of the rank "
                                "variance lies between models")
        notes = list(_power_note(min_p_kruskal([len(g) for g in groups]),
                                 f"{len(groups)} models of {', '.join(str(int(n)) for n in sorted(set(seeds)))} "
                                 f"seeds"))
        blanks = sorted(m for m in names if (m, lang) in blank)
        if blanks:
            notes.append(f"Includes {', '.join(blanks)} with blank output: a difference to it says it has not "
                         "learned to transcribe.")
        best = next((name for name in names if (name, lang) not in blank), None)
        crowned = (f"best {best} (median {metric.upper()} {medians[best]:.3f})" if best is not None
                   else "no model transcribes anything")
        detail = ""
        if p < ALPHA:
            post = sp.posthoc_conover(part, val_col="value", group_col="model", p_adjust="holm")
            pairs = [f"{a} {'<' if lower_is_better else '>'} {b} ({_fmt_p(float(post.loc[a, b]))})"
                     for i, a in enumerate(names) for b in names[i + 1:] if float(post.loc[a, b]) < ALPHA]
            detail = ("; Conover-Iman with Holm: " + ("; ".join(pairs) if pairs
                                                       else "no pair survives the Holm correction"))
        findings.append(Finding(
            lang, f"{lang}: Kruskal-Wallis across {len(groups)} models H = {h:.2f}, {_fmt_p(p)}; {crowned}{detail}.",
            float(p), effect=effect, design=design, notes=tuple(notes)))
    return findings


def posthoc_matrix(values: pd.DataFrame, lang: str) -> pd.DataFrame:
    """Holm-corrected Conover-Iman p-values between the models on one language."""
    import scikit_posthocs as sp

    part = values[values["language"] == lang]
    return sp.posthoc_conover(part, val_col="value", group_col="model", p_adjust="holm")


# ---------------------------------------------------------------------------- models across languages (paired)
def _median_difference(d: Sequence[float]) -> float:
    return float(np.median(d))


def model_tests(values: pd.DataFrame, metric: str = "cer", lower_is_better: bool = True,
                blank: Blank = frozenset()) -> list[Finding]:
    """Models compared over the same languages: per-language means over seeds, languages as
    blocks (Friedman + Nemenyi for three or more models, Wilcoxon signed-rank for two). Models
    blank on every language are left out (their rank is known)."""
    import scikit_posthocs as sp
    from scipy import stats

    means = _means(values)
    always_blank = [m for m in means.index if all((m, lang) in blank for lang in means.columns if
                                                   not math.isnan(means.loc[m, lang]))]
    table = means.drop(index=always_blank).dropna(axis=1)
    left = f" ({', '.join(always_blank)} left out: blank output everywhere)" if always_blank else ""
    k, n = table.shape
    if k < 2 or n < 2:
        return [Finding("models", f"Models across languages: not tested — needs at least 2 models with results "
                                  f"on at least 2 common languages ({k} models, {n} languages){left}.",
                        tested=False)]
    sign = 1.0 if lower_is_better else -1.0
    if k == 2:
        a, b = sorted(table.index, key=lambda m: sign * table.loc[m].mean())
        d = (table.loc[a] - table.loc[b]).to_numpy()
        if np.all(d == 0):
            return [Finding("models", f"Models across languages: {a} and {b} score the same on every language.",
                            1.0, design="Wilcoxon signed-rank over languages")]
        res = stats.wilcoxon(d)
        effect = Effect(f"median difference in {metric.upper()} ({a} − {b})", _median_difference(d),
                        *_interval([d], _median_difference),
                        reading="per-language means, over languages")
        return [Finding("models", f"Models across languages: {a} vs {b} on the same {n} languages (paired), "
                                  f"Wilcoxon signed-rank W = {res.statistic:.1f}, {_fmt_p(res.pvalue)}{left}.",
                        float(res.pvalue), effect=effect,
                        design=f"Wilcoxon signed-rank over {n} languages, per-language means over seeds",
                        notes=_power_note(min_p_wilcoxon(n), f"{n} languages"))]
    columns = [table.loc[m].to_numpy() for m in table.index]
    res = stats.friedmanchisquare(*columns)
    ranks = (sign * table).rank(axis=0).mean(axis=1).sort_values()
    effect = Effect("Kendall's W", kendalls_w(*columns), *_interval(columns, kendalls_w, paired=True),
                    reading="agreement of the languages on the models' order, 0..1")
    detail = ""
    if res.pvalue < ALPHA:
        post = sp.posthoc_nemenyi_friedman(table.T.reset_index(drop=True))
        names = list(ranks.index)
        pairs = [f"{a} < {b} ({_fmt_p(float(post.loc[a, b]))})" for i, a in enumerate(names) for b in names[i + 1:]
                 if float(post.loc[a, b]) < ALPHA]
        detail = "; Nemenyi: " + ("; ".join(pairs) if pairs else "no pair differs")
    order = ", ".join(f"{m} {r:.2f}" for m, r in ranks.items())
    return [Finding("models", f"Models across languages: Friedman over {n} languages (paired), χ² = "
                              f"{res.statistic:.2f}, {_fmt_p(res.pvalue)}; mean rank (1 = best): {order}{detail}{left}.",
                    float(res.pvalue), effect=effect,
                    design=f"Friedman over {n} languages as blocks, per-language means over seeds",
                    notes=_power_note(min_p_friedman(n, k), f"{n} languages and {k} models"))]


# ---------------------------------------------------------------------------- pre-trained versus not (paired)
def pretraining_tests(values: pd.DataFrame, pretrained: Mapping[str, bool], metric: str = "cer",
                      lower_is_better: bool = True, blank: Blank = frozenset()) -> list[Finding]:
    """Per language, the mean of the pre-trained models minus that of the models without
    pre-training; Wilcoxon signed-rank over languages. ``pretrained`` maps model -> whether it
    was pre-trained; models it lacks take no part."""
    from scipy import stats

    means = _means(values[values["model"].isin(list(pretrained))])
    yes = [m for m in means.index if pretrained[m]]
    no = [m for m in means.index if not pretrained[m]]
    if not yes or not no:
        return [Finding("pretraining", "Pre-training: not tested — needs results of pre-trained models and of a "
                                       "model without pre-training (such as no-pretraining or tiny-wav2vec2).",
                        tested=False)]
    both = means.dropna(axis=1)
    langs = list(both.columns)
    if len(langs) < 2:
        return [Finding("pretraining", f"Pre-training: not tested — needs at least 2 languages on which every model "
                                       f"has results ({_join(langs)}).", tested=False)]
    d = (both.loc[yes].mean() - both.loc[no].mean()).to_numpy()
    notes = list(_power_note(min_p_wilcoxon(len(langs)), f"{len(langs)} languages"))
    blank_langs = sorted({lang for m in no for lang in langs if (m, lang) in blank})
    if blank_langs:
        notes.append(f"The models without pre-training ({', '.join(no)}) output blanks on {', '.join(blank_langs)}: "
                     "there the difference says they have not left the CTC plateau, not how large transfer is.")
    design = f"Wilcoxon signed-rank over {len(langs)} languages, per-language means over seeds and models"
    effect = Effect(f"median difference in {metric.upper()} (pre-trained − not)", _median_difference(d),
                    *_interval([d], _median_difference), reading="over languages")
    head = (f"Pre-training: pre-trained models ({', '.join(yes)}) vs without ({', '.join(no)}) on the same "
            f"{len(langs)} languages (paired)")
    if np.all(d == 0):
        return [Finding("pretraining", f"{head}: the same on every language.", 1.0, effect=effect, design=design,
                        notes=tuple(notes))]
    res = stats.wilcoxon(d)
    return [Finding("pretraining", f"{head}, Wilcoxon signed-rank W = {res.statistic:.1f}, {_fmt_p(res.pvalue)}.",
                    float(res.pvalue), effect=effect, design=design, notes=tuple(notes))]


# ---------------------------------------------------------------------------- transfer on difficulty-controlled gains
@dataclass(frozen=True)
class Reference:
    """The per-language reference a model's gain is measured against."""

    #: "no-pretraining" or "pretrained-median"
    kind: str
    description: str
    values: Mapping[str, float]
    #: why the no-pretraining model is not the reference, when it is not
    note: str = ""


def language_reference(values: pd.DataFrame, pretrained: Mapping[str, bool] | None = None,
                       blank: Blank = frozenset()) -> Reference | None:
    """The reference on each language: the model(s) without pre-training when they transcribe
    something on every language (gain = relative error reduction over training from scratch);
    otherwise the median of the pre-trained models' means on that language (gain = how much better
    than a typical pre-trained model there). One kind for all languages, so gains compare across
    targets. None when neither exists on every language."""
    pretrained = dict(pretrained or {})
    means = _means(values)
    langs = list(means.columns)

    def usable(models: list[str]) -> dict[str, float]:
        out = {}
        for lang in langs:
            v = [means.loc[m, lang] for m in models if (m, lang) not in blank and not math.isnan(means.loc[m, lang])]
            if v and float(np.median(v)) != 0.0:
                out[lang] = float(np.median(v))
        return out

    scratch = [m for m in means.index if pretrained.get(m) is False]
    note = ""
    if scratch:
        found = usable(scratch)
        if len(found) == len(langs):
            return Reference("no-pretraining", f"the model without pre-training ({', '.join(scratch)})", found)
        missing = sorted(set(langs) - set(found))
        note = (f"Not against {', '.join(scratch)} (no pre-training): its output is blank on {', '.join(missing)} "
                "(CTC plateau), and a gain over a model that transcribes nothing measures nothing.")
    pre = [m for m in means.index if pretrained.get(m) is True] or [m for m in means.index if m not in scratch]
    found = usable(pre)
    if len(found) == len(langs) and pre:
        return Reference("pretrained-median", f"the median of the {len(pre)} pre-trained models on each language "
                                              f"({', '.join(pre)})", found, note)
    return None


def gains(values: pd.DataFrame, reference: Reference, lower_is_better: bool = True) -> dict[tuple[str, str], float]:
    """(model, language) -> relative improvement of the model's mean over the reference on that
    language: (ref − value) / ref for error rates, (value − ref) / ref when higher is better."""
    means = _means(values)
    out = {}
    for model in means.index:
        for lang, ref in reference.values.items():
            v = means.loc[model, lang] if lang in means.columns else math.nan
            if not math.isnan(v):
                out[(model, lang)] = (ref - v) / ref if lower_is_better else (v - ref) / ref
    return out


def _relation(pretraining_language: str, target: str) -> str:
    if pretraining_language == target:
        return "own"
    a, b = language(pretraining_language), language(target)
    return "related" if a.subgroup == b.subgroup and a.subgroup != "unknown" else "unrelated"


def related_pretraining_tests(values: pd.DataFrame, pretraining: Mapping[str, Sequence[str]],
                              metric: str = "cer", pretrained: Mapping[str, bool] | None = None,
                              lower_is_better: bool = True, blank: Blank = frozenset(),
                              hours: Mapping[str, float] | None = None) -> list[Finding]:
    """Is transfer stronger to targets related to a monolingual model's pre-training language
    (same subgroup) than to unrelated ones — measured on gains over a per-language reference,
    never on raw scores (which measure the target's difficulty).

    Within each target when several monolingual models give it both a related and an unrelated
    gain (Wilcoxon signed-rank over targets; a target with no related model but one pre-trained
    on the target itself pairs that one, and the finding names every pair); else across targets
    (Mann-Whitney U on per-target gains, the pre-training language itself excluded); else "not
    testable" with the reason."""
    from scipy import stats

    topic = "related"
    models = set(values["model"])
    mono = {m: langs[0] for m, langs in pretraining.items() if len(langs) == 1 and m in models}
    if not mono:
        return [Finding(topic, "Related pre-training: not tested — no monolingual model in the results lists its "
                               "pre-training language.", tested=False)]
    reference = language_reference(values, pretrained, blank)
    if reference is None:
        return [Finding(topic, "Related pre-training: not testable — no per-language reference: needs a model "
                               "without pre-training that transcribes something, or pre-trained models, on every "
                               "language.", tested=False)]
    g = gains(values, reference, lower_is_better)
    ref_note = (f"Gain = relative {metric.upper()} reduction against {reference.description}." +
                (f" {reference.note}" if reference.note else ""))
    by_target: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for m, own in sorted(mono.items()):
        for (model, target), gain in g.items():
            if model == m:
                by_target.setdefault(target, {}).setdefault(_relation(own, target), []).append((m, gain))
    # within a target, the related side is a model of the same subgroup, or (when there is none)
    # the model pre-trained on the target language itself: the most related pre-training there is
    sides = {t: ("related" if rel.get("related") else "own") for t, rel in by_target.items()}
    paired = [(t, float(np.mean([x for _, x in rel[sides[t]]])), float(np.mean([x for _, x in rel["unrelated"]])))
              for t, rel in sorted(by_target.items()) if rel.get(sides[t]) and rel.get("unrelated")]
    pairs = "; ".join(
        f"{t}: {', '.join(m for m, _ in by_target[t][sides[t]])} ({'own language' if sides[t] == 'own' else 'related'}) "
        f"vs {', '.join(m for m, _ in by_target[t]['unrelated'])} (unrelated)" for t, _, _ in paired)
    described = "; ".join(f"{m} (pre-trained on {mono[m]}) on {t}: {_pct(gain)} ({rel})"
                          for t, rels in sorted(by_target.items()) for rel, items in sorted(rels.items())
                          for m, gain in items)
    if len(paired) >= 2:
        d = np.array([r - u for _, r, u in paired])
        design = f"Wilcoxon signed-rank over {len(paired)} targets, paired within target (gains)"
        effect = Effect("median within-target difference in gain (related − unrelated)", _median_difference(d),
                        *_interval([d], _median_difference), reading="positive: more transfer from a related language")
        own = sorted(t for t, _, _ in paired if sides[t] == "own")
        own_note = ((f"On {_join(own)} the related side is the model pre-trained on that language itself: those "
                     "pairs measure own-language transfer, an upper bound on what relatedness alone gives.",)
                    if own else ())
        notes = (*_power_note(min_p_wilcoxon(len(paired)), f"{len(paired)} targets"), ref_note, *own_note,
                 "Confound: within a target the related and unrelated models differ also in their pre-training data "
                 "(amount, speakers, recording); over several model pairs this averages out but is not removed.")
        head = (f"Related pre-training (within each of {len(paired)} targets, related vs unrelated monolingual "
                f"models' gains — {pairs}): median difference {_pct(float(np.median(d)))}")
        if np.all(d == 0):
            return [Finding(topic, f"{head}; no difference on any target.", 1.0, effect=effect, design=design,
                            notes=notes)]
        res = stats.wilcoxon(d)
        return [Finding(topic, f"{head}, Wilcoxon signed-rank W = {res.statistic:.1f}, {_fmt_p(res.pvalue)}.",
                        float(res.pvalue), effect=effect, design=design, notes=notes)]
    related = [(t, gain) for t, rels in by_target.items() for _, gain in rels.get("related", [])]
    unrelated = [(t, gain) for t, rels in by_target.items() for _, gain in rels.get("unrelated", [])]
    if len(related) >= 2 and len(unrelated) >= 2:
        a, b = [x for _, x in related], [x for _, x in unrelated]
        res = stats.mannwhitneyu(a, b, alternative="two-sided")
        effect = Effect("Cliff's δ (related − unrelated gains)", cliffs_delta(a, b), *_interval([a, b], cliffs_delta),
                        reading="positive: related targets gain more")
        design = f"Mann-Whitney U over targets' gains ({len(a)} related, {len(b)} unrelated)"
        notes = (*_power_note(min_p_mann_whitney(len(a), len(b)), f"{len(a)} related and {len(b)} unrelated targets"),
                 ref_note, *confounds({"related": sorted({t for t, _ in related}),
                                       "unrelated": sorted({t for t, _ in unrelated})}, hours))
        return [Finding(topic, f"Related pre-training (across targets, gains over each target's reference): median "
                               f"gain {_pct(float(np.median(a)))} on related vs {_pct(float(np.median(b)))} on unrelated "
                               f"targets, Mann-Whitney U = {res.statistic:.1f}, {_fmt_p(res.pvalue)}.",
                        float(res.pvalue), effect=effect, design=design, notes=notes)]
    rel_t, unrel_t = sorted({t for t, _ in related}), sorted({t for t, _ in unrelated})
    why = (f"the monolingual model{'s' * (len(mono) > 1)} ({', '.join(f'{m}: {lang}' for m, lang in sorted(mono.items()))}) "
           f"{'have' if len(mono) > 1 else 'has'} {len(related)} related target gain{'s' * (len(related) != 1)} "
           f"({_join(rel_t)}) and {len(unrelated)} unrelated ({_join(unrel_t)}), and no target with both a related "
           "and an unrelated monolingual model")
    extra = ""
    if len(unrel_t) == 1 or len(rel_t) == 1:
        single = unrel_t[0] if len(unrel_t) == 1 else rel_t[0]
        lang = language(single)
        extra = (f"; a difference to a single target cannot be told apart from anything else about {single} "
                 f"({lang.name}: {lang.subgroup}, {lang.script} script)")
    return [Finding(topic, f"Related pre-training: not testable — {why}{extra}. Needs at least 2 related and 2 "
                           f"unrelated targets, or a second monolingual model pre-trained on a language related to "
                           f"another target. Gains (descriptive): {described}. {ref_note}", tested=False)]


# ---------------------------------------------------------------------------- language family (languages as units)
def _compare(topic: str, what: str, left_name: str, left, right_name: str, right, metric: str) -> Finding:
    """Mann-Whitney U between two groups of values, with Cliff's δ and its interval."""
    from scipy import stats

    if len(left) < 2 or len(right) < 2:
        return Finding(topic, f"{what}: not tested — needs at least 2 results on each side "
                              f"({left_name}: {len(left)}, {right_name}: {len(right)}).", tested=False)
    res = stats.mannwhitneyu(list(left), list(right), alternative="two-sided")
    u, p = float(res.statistic), float(res.pvalue)
    effect = Effect(f"Cliff's δ ({left_name} − {right_name})", cliffs_delta(left, right),
                    *_interval([left, right], cliffs_delta), reading=f"negative: {left_name} lower {metric.upper()}")
    ml, mr = float(np.median(left)), float(np.median(right))
    if ml == mr:  # a tie in medians is no direction
        return Finding(topic, f"{what}: {left_name} and {right_name} have the same median {metric.upper()} "
                              f"({ml:.3f}) (Mann-Whitney U = {u:.1f}, {_fmt_p(p)}).", p, effect=effect)
    verdict = "lower" if ml < mr else "higher"
    return Finding(topic, f"{what}: {left_name} {verdict} {metric.upper()} than {right_name} "
                          f"(median {ml:.3f} vs {mr:.3f}; Mann-Whitney U = {u:.1f}, {_fmt_p(p)}).", p, effect=effect)


def family_tests(values: pd.DataFrame, metric: str = "cer", pretrained: Mapping[str, bool] | None = None,
                 blank: Blank = frozenset(), hours: Mapping[str, float] | None = None,
                 pretraining: Mapping[str, Sequence[str]] | None = None) -> list[Finding]:
    """Indo-European versus other target languages, languages as the units: each language's mean
    over the same models (pre-trained ones when known; models blank there left out), Mann-Whitney U."""
    pretrained = dict(pretrained or {})
    means = _means(values)
    models = [m for m in means.index if pretrained.get(m) is not False] or list(means.index)
    models = [m for m in models if not all((m, lang) in blank for lang in means.columns)] or models
    table = means.loc[models].dropna(axis=1)
    score = table.mean()
    ie = [c for c in score.index if language(c).indo_european]
    other = [c for c in score.index if not language(c).indo_european]
    what = f"Language family (languages as units; each one's mean over {', '.join(models)})"
    found = _compare("family", what, "Indo-European languages", [score[c] for c in ie], "other languages",
                     [score[c] for c in other], metric)
    if not found.tested:
        return [replace(found, sentence=f"{what}: not tested — needs at least 2 languages on each side "
                                        f"(Indo-European: {_join(ie)}; other: {_join(other)}).")]
    notes = list(_power_note(min_p_mann_whitney(len(ie), len(other)),
                             f"{len(ie)} and {len(other)} languages"))
    notes += list(confounds({"Indo-European": ie, "other": other}, hours, skip=("family",)))
    pre_langs = sorted({c for m in models for c in (pretraining or {}).get(m, ())})
    if pre_langs:
        share = sum(language(c).indo_european for c in pre_langs) / len(pre_langs)
        notes.append(f"Confound: {share:.0%} of these models' pre-training languages ({', '.join(pre_langs)}) are "
                     "Indo-European.")
    notes.append("A difference is a property of the languages (family together with orthography and data), "
                 "not evidence of transfer.")
    return [replace(found, design=f"Mann-Whitney U over {len(ie)} + {len(other)} languages", notes=tuple(notes))]


# ---------------------------------------------------------------------------- speaker gender
def gender_tests(scores: pd.DataFrame, dataset: str, blank: Blank = frozenset(),
                 speakers: Mapping[str, Mapping[str, int]] | None = None, recorded: bool = True,
                 reason: str = "") -> list[Finding]:
    """Female versus male speakers' test CER, paired within each model and language.

    ``scores``: one row per cell with columns model, language, seed, ``female`` and ``male`` (each
    gender's corpus-level CER on the cell's test split; :mod:`harness.report.gender`). Units are
    (model, language) pairs, seeds averaged first; pairs with blank output are left out. Wilcoxon
    signed-rank over the units of the difference female − male; effect: its median, with an
    interval that resamples units. ``recorded`` False (or no rows): "not testable", with
    ``reason``."""
    from scipy import stats

    topic = "gender"
    if not recorded or scores.empty:
        why = reason or (f"dataset {dataset} records no speaker gender for the test utterances of these cells")
        return [Finding(topic, f"Speaker gender: not testable — {why}.", tested=False)]
    units = scores.groupby(["model", "language"])[["female", "male"]].mean()
    units = units[[(m, lang) not in blank for m, lang in units.index]]
    n = len(units)
    left = " (pairs with blank output left out)" if len(scores.groupby(["model", "language"])) > n else ""
    if n < 2:
        return [Finding(topic, f"Speaker gender: not tested — needs at least 2 model × language pairs whose test "
                               f"split has female and male speakers ({n}){left}.", tested=False)]
    d = (units["female"] - units["male"]).to_numpy()
    langs = sorted({lang for _, lang in units.index})
    notes = list(_power_note(min_p_wilcoxon(n), f"{n} model × language pairs"))
    few = {lang: v for lang, v in (speakers or {}).items() if lang in langs}
    if few:
        counts = "; ".join(f"{lang}: {v.get('female', 0)} female, {v.get('male', 0)} male" for lang, v in sorted(few.items()))
        notes.append(f"Confound: the pairs of one language share its test speakers ({counts}): a difference can be a "
                     "property of these speakers (voice, accent, microphone, sentences read), not of gender, and "
                     "pairs of the same language are not independent.")
    notes.append("Read it per language too: the table of CER by speaker gender gives each pair.")
    effect = Effect("median difference in CER (female − male)", _median_difference(d),
                    *_interval([d], _median_difference), reading="per model and language, means over seeds")
    design = f"Wilcoxon signed-rank over {n} model × language pairs ({len(langs)} languages), means over seeds"
    head = (f"Speaker gender: female vs male speakers' test CER within each model and language ({n} pairs, "
            f"{len(langs)} languages){left}")
    if np.all(d == 0):
        return [Finding(topic, f"{head}: the same in every pair.", 1.0, effect=effect, design=design,
                        notes=tuple(notes))]
    res = stats.wilcoxon(d)
    higher = "female" if np.median(d) > 0 else "male"
    return [Finding(topic, f"{head}: median CER higher for {higher} speakers, Wilcoxon signed-rank W = "
                           f"{res.statistic:.1f}, {_fmt_p(res.pvalue)}.", float(res.pvalue), effect=effect,
                    design=design, notes=tuple(notes))]


# ---------------------------------------------------------------------------- the page
def adjust(groups: Mapping[str, Sequence[Finding]]) -> dict[str, list[Finding]]:
    """One multiple-comparison correction (Holm) over every tested finding with a p-value on the
    page, across groups."""
    from statsmodels.stats.multitest import multipletests

    where = [(g, i) for g, items in groups.items() for i, f in enumerate(items) if f.p_value is not None]
    out = {g: list(items) for g, items in groups.items()}
    if not where:
        return out
    _, adjusted, _, _ = multipletests([groups[g][i].p_value for g, i in where], alpha=ALPHA, method=CORRECTION[0])
    for (g, i), q in zip(where, adjusted):
        out[g][i] = replace(out[g][i], p_adjusted=float(q))
    return out


def correction_note(groups: Mapping[str, Sequence[Finding]]) -> str:
    n = sum(1 for items in groups.values() for f in items if f.p_value is not None)
    return (f"{n} findings with a p-value on this page, {CORRECTION[1]}-corrected together (family-wise α = "
            f"{ALPHA}); Conover-Iman and Nemenyi pairs are corrected within their finding. Effect sizes come with "
            f"{LEVEL:.0%} percentile bootstrap intervals ({RESAMPLES} resamples, seeded). Designs and what each "
            "test can show: docs/statistics.md.")


def all_findings(values: pd.DataFrame, pretraining: Mapping[str, Sequence[str]], metric: str = "cer",
                 pretrained: Mapping[str, bool] | None = None, lower_is_better: bool = True,
                 blank: Blank = frozenset(), hours: Mapping[str, float] | None = None) -> list[Finding]:
    return [*per_language_tests(values, metric, lower_is_better, blank),
            *model_tests(values, metric, lower_is_better, blank),
            *(pretraining_tests(values, pretrained, metric, lower_is_better, blank) if pretrained is not None else []),
            *related_pretraining_tests(values, pretraining, metric, pretrained, lower_is_better, blank, hours),
            *family_tests(values, metric, pretrained, blank, hours, pretraining)]
