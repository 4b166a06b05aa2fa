"""The study's open questions, answered where a run's design allows (docs/questions.md).

Grosman et al. list questions their compute could not answer; the tiny presets ``tiny-diversity``,
``tiny-ie-share``, ``tiny-phonology`` and ``tiny-ranking`` are designed to answer each on the
embedded default. The report answers a question whenever the results have the design it needs,
whichever run made them; each answer is a finding (with its effect, interval and p-value, in the
page's one Holm correction), a picture and a table:

- **diversity versus quantity**: pre-trained models with the same amount of speech from different
  numbers of languages (and one with more speech of the fewest languages), fine-tuned on languages
  none of them heard. The trend of CER with the number of languages (within each target), and the
  most diverse model against the one with more speech;
- **Indo-European share**: models pre-trained on the same languages in different proportions.
  Whether more Indo-European speech helps Indo-European targets more than the others
  (difference in slopes), and how large the Indo-European targets' lead is at each share;
- **phonological distance**: the share of a target's phones that a model's pre-training languages
  lack (:mod:`harness.data.phones`), against the model's gain on that target, within each target,
  beside the same with family relatedness;
- **ranking sensitivity**: for a sweep of the recipe, how much the ranking of the models changes
  from one recipe to another (Kendall's τ) and against the ranking after choosing on dev.

Every comparison is made within a target (the target's difficulty is the same on both sides);
effects are averaged over targets, intervals resample targets and seeds (a cluster bootstrap,
seeded), and p-values come from permutations within targets, so none assumes a distribution.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.languages import language
from harness.report.stats import LEVEL, RESAMPLES, Effect, Finding, _fmt_p, _power_note

#: random permutations when exact enumeration is too large, and the seed of every draw here
PERMUTATIONS = 2000
SEED = 0

#: (model, target) -> seed -> test CER
Scores = Mapping[tuple[str, str], Mapping[int, float]]


# ---------------------------------------------------------------------------- what the models heard
@dataclass(frozen=True)
class Pretraining:
    """What a model was pre-trained on: minutes of speech per language."""

    minutes: Mapping[str, float]

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.minutes)

    @property
    def total_minutes(self) -> float:
        return float(sum(self.minutes.values()))

    @property
    def even(self) -> bool:
        """Whether every language has the same minutes."""
        return len({round(m, 3) for m in self.minutes.values()}) == 1

    @property
    def indo_european_share(self) -> float:
        total = self.total_minutes
        return sum(m for code, m in self.minutes.items() if language(code).indo_european) / total if total else math.nan

    def describe(self) -> str:
        if len(set(round(m, 3) for m in self.minutes.values())) == 1:
            return f"{'+'.join(self.minutes)}, {self.total_minutes:g} min"
        return ", ".join(f"{code} {m:.3g}" for code, m in self.minutes.items()) + f" min ({self.total_minutes:g})"


def pretraining_of(cells: Sequence[Any]) -> dict[str, Pretraining]:
    """model -> its pre-training, for the models whose stored facts give the languages and whose
    metadata gives the hours (``pretraining_hours``; per language ``pretraining_minutes_by_language``,
    else split evenly)."""
    out: dict[str, Pretraining] = {}
    for c in cells:
        facts = c.record.model_facts
        languages = tuple(facts.get("pretraining_languages") or ())
        metadata = c.record.identity.get("model", {}).get("metadata", {})
        hours = metadata.get("pretraining_hours")
        if not languages or not isinstance(hours, (int, float)) or hours <= 0 or facts.get("pretrained") is False:
            continue
        by_language = metadata.get("pretraining_minutes_by_language")
        if isinstance(by_language, Mapping) and set(by_language) == set(languages):
            minutes = {code: float(by_language[code]) for code in languages}
        else:
            minutes = {code: 60.0 * float(hours) / len(languages) for code in languages}
        out[c.model] = Pretraining(minutes)
    return out


def scores_of(values: pd.DataFrame, blank: frozenset | set = frozenset()) -> dict[tuple[str, str], dict[int, float]]:
    """(model, language) -> seed -> value, from :func:`harness.report.tables.cell_values` rows;
    blank outputs (no transcription) left out."""
    out: dict[tuple[str, str], dict[int, float]] = {}
    for row in values.itertuples(index=False):
        if (row.model, row.language) not in blank:
            out.setdefault((row.model, row.language), {})[int(row.seed)] = float(row.value)
    return out


# ---------------------------------------------------------------------------- resampling
def _mean_table(scores: Scores, models: Sequence[str], targets: Sequence[str],
                draws: Mapping[str, Sequence[int]] | None = None) -> np.ndarray:
    """models x targets of the mean over seeds (the seeds ``draws`` gives per target, else all)."""
    table = np.full((len(models), len(targets)), np.nan)
    for j, t in enumerate(targets):
        for i, m in enumerate(models):
            by_seed = scores.get((m, t), {})
            seeds = draws[t] if draws is not None else sorted(by_seed)
            picked = [by_seed[s] for s in seeds if s in by_seed]
            if picked:
                table[i, j] = float(np.mean(picked))
    return table


def _common_seeds(scores: Scores, models: Sequence[str], target: str) -> list[int]:
    sets = [set(scores.get((m, target), {})) for m in models]
    return sorted(set.intersection(*sets)) if sets else []


def cluster_bootstrap(scores: Scores, models: Sequence[str], targets: Sequence[str],
                      statistic: Callable[[np.ndarray, Sequence[str]], float],
                      resamples: int = RESAMPLES, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of ``statistic(table, targets)`` (table: models x targets of seed
    means) when the targets are resampled with replacement and, within each, the seeds the models
    share (the same seeds for every model: a seed is one draw of the fine-tuning data). NaN with
    fewer than 2 targets."""
    if len(targets) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(SEED)
    seeds = {t: _common_seeds(scores, models, t) or sorted({s for m in models for s in scores.get((m, t), {})})
             for t in targets}
    values = []
    for _ in range(resamples):
        picked = [targets[i] for i in rng.integers(0, len(targets), len(targets))]
        names = [f"{t}#{k}" for k, t in enumerate(picked)]
        draws = {name: [seeds[t][i] for i in rng.integers(0, len(seeds[t]), len(seeds[t]))]
                 for name, t in zip(names, picked)}
        renamed = {(m, name): scores.get((m, t), {}) for m in models for name, t in zip(names, picked)}
        value = statistic(_mean_table(renamed, models, names, draws), picked)
        if np.isfinite(value):
            values.append(value)
    if len(values) < resamples // 2:
        return math.nan, math.nan
    alpha = (1 - level) / 2
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def _relative(table: np.ndarray) -> np.ndarray:
    """Each target's CER over its mean across the models (1: an average model there)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return table / np.nanmean(table, axis=0, keepdims=True)


def _slopes(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per column of ``y`` (models x targets), the least-squares slope against ``x`` (one per model)."""
    xc = x - x.mean()
    denominator = float((xc ** 2).sum())
    if denominator == 0:
        return np.full(y.shape[1], np.nan)
    return (xc[:, None] * (y - y.mean(axis=0, keepdims=True))).sum(axis=0) / denominator


def _orders(n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], bool]:
    """Orders of n items: all of them when there are at most PERMUTATIONS, else the identity and
    PERMUTATIONS - 1 seeded random ones; and whether the list is exhaustive."""
    if math.factorial(n) <= PERMUTATIONS:
        return [np.array(order) for order in itertools.permutations(range(n))], True
    return [np.arange(n)] + [rng.permutation(n) for _ in range(PERMUTATIONS - 1)], False


def _p_value(observed: float, null: Sequence[float], exhaustive: bool, smallest: float) -> tuple[float, float]:
    """Two-sided p-value of ``observed`` among ``null`` (which includes it), and the smallest
    p-value the design allows (random draws: no smaller than 1 / draws). NaN when the statistic is
    not finite."""
    if not np.isfinite(observed):
        return math.nan, 1.0
    values = np.asarray(null, float)
    p = float(np.mean(np.abs(values[np.isfinite(values)]) >= abs(observed) - 1e-12))
    return p, (smallest if exhaustive else max(smallest, 1.0 / len(values)))


def permutation_p(table: np.ndarray, statistic: Callable[[np.ndarray], float]) -> tuple[float, float]:
    """Two-sided p-value of ``statistic`` when the models (rows of models x targets) are relabelled,
    the same relabelling on every target: the units are the models, so a model that is better
    everywhere counts once, not once per target. Null: which model is which does not matter to the
    statistic. Returns the p-value and the smallest one the design allows (a statistic that
    changes sign when the order reverses: 2 / n!)."""
    observed = statistic(table)
    orders, exhaustive = _orders(table.shape[0], np.random.default_rng(SEED))
    null = [statistic(table[order]) for order in orders]
    return _p_value(observed, null, exhaustive, min(1.0, 2.0 / math.factorial(table.shape[0])))


def sign_flip_p(d: Sequence[float]) -> tuple[float, float]:
    """Two-sided sign-flip test of mean(d) = 0 (paired differences): exact up to PERMUTATIONS sign
    patterns, else seeded random ones; and its smallest p-value."""
    d = np.asarray(d, float)
    if len(d) == 0 or not np.isfinite(d).all():
        return math.nan, 1.0
    if 2 ** len(d) <= PERMUTATIONS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
        exhaustive = True
    else:
        rng = np.random.default_rng(SEED)
        signs = np.vstack([np.ones(len(d)), rng.choice((1.0, -1.0), size=(PERMUTATIONS - 1, len(d)))])
        exhaustive = False
    return _p_value(float(d.mean()), (signs * d).mean(axis=1), exhaustive, min(1.0, 2.0 / 2 ** len(d)))


def label_permutation_p(values: Sequence[float], labels: Sequence[bool]) -> tuple[float, float]:
    """Two-sided test of mean(values | label) - mean(values | not label) by relabelling: exact up
    to PERMUTATIONS labellings, else seeded random ones; and its smallest p-value (2 / C(n, k) when
    the groups have the same size, where swapping them gives the same difference; else 1 / C(n, k))."""
    v = np.asarray(values, float)
    mask = np.asarray(labels, bool)
    n, k = len(v), int(mask.sum())
    if k == 0 or k == n or not np.isfinite(v).all():
        return math.nan, 1.0
    total = math.comb(n, k)
    if total <= PERMUTATIONS:
        masks = []
        for combo in itertools.combinations(range(n), k):
            m = np.zeros(n, bool)
            m[list(combo)] = True
            masks.append(m)
        exhaustive = True
    else:
        rng = np.random.default_rng(SEED)
        masks = [mask] + [rng.permutation(mask) for _ in range(PERMUTATIONS - 1)]
        exhaustive = False
    null = [v[m].mean() - v[~m].mean() for m in masks]
    smallest = (2.0 if 2 * k == n else 1.0) / total
    return _p_value(float(v[mask].mean() - v[~mask].mean()), null, exhaustive, min(1.0, smallest))


# ---------------------------------------------------------------------------- answers
@dataclass(frozen=True)
class Answer:
    """One open question answered: the findings (tested, in the page's correction), a table, a
    picture and what the design cannot say."""

    key: str
    title: str
    question: str
    findings: tuple[Finding, ...]
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    figure: Path | None = None
    caption: str = ""
    limits: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "question": self.question,
                "findings": [f.as_dict() for f in self.findings], "table": {"headers": list(self.headers),
                                                                             "rows": [list(r) for r in self.rows]},
                "figure": self.figure.name if self.figure else None, "caption": self.caption,
                "limits": list(self.limits), "data": dict(self.data)}


def _pct(x: float) -> str:
    return f"{100 * x:+.1f} %"


def _cer(scores: Scores, model: str, target: str) -> str:
    values = list(scores.get((model, target), {}).values())
    if not values:
        return "-"
    return f"{np.mean(values):.3f}" + (f" ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else "")


def _left_out(scores: Scores, models: Sequence[str], targets: Sequence[str],
              pre: Mapping[str, Pretraining]) -> tuple[str, ...]:
    """A note naming the languages some of ``models`` have scores on that are not among ``targets``."""
    heard = {code for m in models for code in pre[m].languages}
    others = sorted({t for (m, t) in scores if m in models} - set(targets))
    pre_trained = [t for t in others if t in heard]
    missing = [t for t in others if t not in heard]
    parts = []
    if pre_trained:
        parts.append(f"{', '.join(pre_trained)} (a pre-training language of these models)")
    if missing:
        parts.append(f"{', '.join(missing)} (not every model has a score there: blank output, or not run)")
    return (f"Targets left out: {'; '.join(parts)}.",) if parts else ()


def _held_out(scores: Scores, models: Sequence[str], pre: Mapping[str, Pretraining]) -> list[str]:
    """Targets every model has a score on and none of them was pre-trained on."""
    heard = {code for m in models for code in pre[m].languages}
    targets = sorted({t for (_, t) in scores})
    return [t for t in targets if t not in heard and all(scores.get((m, t)) for m in models)]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------ diversity versus quantity
def diversity(scores: Scores, pre: Mapping[str, Pretraining], out_dir: Path | None = None) -> Answer | None:
    """Same minutes from different numbers of languages, on held-out targets: the longest chain of
    models with even shares and nested language sets (one model per count, at least three counts),
    and any model with more speech of the chain's smallest set."""
    by_total: dict[float, list[str]] = {}
    for m, p in pre.items():
        if p.even:
            by_total.setdefault(round(p.total_minutes, 3), []).append(m)
    best: list[str] = []
    for total_, ms in sorted(by_total.items()):
        for start in sorted(ms, key=lambda m: (len(pre[m].languages), m)):
            chain = [start]
            for m in sorted(ms, key=lambda m: (len(pre[m].languages), m)):
                last = set(pre[chain[-1]].languages)
                if len(pre[m].languages) > len(last) and last < set(pre[m].languages):
                    chain.append(m)
            if len(chain) > len(best):
                best = chain
    if len(best) < 3:
        return None
    fixed = best
    total = pre[fixed[0]].total_minutes
    more = sorted(m for m, p in pre.items() if p.even and p.total_minutes > total + 1e-6
                  and set(p.languages) == set(pre[fixed[0]].languages))
    models = fixed + more
    targets = _held_out(scores, models, pre)
    if len(targets) < 2:
        return None
    counts = np.log2([len(pre[m].languages) for m in fixed])
    n_fixed = len(fixed)

    def trend(table: np.ndarray, _targets=None) -> float:
        return float(np.nanmean(_slopes(_relative(table[:n_fixed]), counts)))

    table = _mean_table(scores, models, targets)
    slope = trend(table)
    low, high = cluster_bootstrap(scores, models, targets, trend)
    p, min_p = permutation_p(table[:n_fixed], lambda t: float(np.nanmean(_slopes(_relative(t), counts))))
    direction = "fall" if slope < 0 else "rise"
    found = [Finding(
        "diversity",
        f"Diversity at fixed speech ({total:g} min; {', '.join(f'{m}: {len(pre[m].languages)}' for m in fixed)} "
        f"languages; {len(targets)} held-out targets: {', '.join(targets)}): CER {direction}s by "
        f"{abs(100 * slope):.1f} % of the target's mean per doubling of the number of languages "
        f"(permutation test over the {n_fixed} models, {_fmt_p(p)}).", p,
        effect=Effect("relative CER change per doubling of languages", slope, low, high,
                      reading="negative: more languages, lower CER"),
        design=f"slope of CER / target mean on log2(languages), within {len(targets)} targets, averaged; the "
               f"{n_fixed} models relabelled (the same way on every target)",
        notes=(*_power_note(min_p, f"{n_fixed} models on {len(targets)} targets"),
               *_left_out(scores, models, targets, pre),
               "Each language count is one pre-trained model: the trend is about these checkpoints (the languages "
               "each adds, their pre-training run), not an average over many.",
               "Confound: the language sets are nested, so a larger set differs also in which languages it adds "
               "(their relatedness to the targets), not only in how many."))]
    for extra in more:
        for other, what in ((fixed[0], "more speech of the same languages"), (fixed[-1], "diversity against quantity")):
            i, j = models.index(other), models.index(extra)

            def diff(t: np.ndarray, _targets=None, i=i, j=j) -> float:
                with np.errstate(invalid="ignore", divide="ignore"):
                    return float(np.nanmean((t[i] - t[j]) / t[j]))

            with np.errstate(invalid="ignore", divide="ignore"):
                d = (table[i] - table[j]) / table[j]
            lo, hi = cluster_bootstrap(scores, models, targets, diff)
            p, min_p = sign_flip_p(d)
            better = other if np.nanmean(d) < 0 else extra
            found.append(Finding(
                "diversity",
                f"{what.capitalize()}: {other} ({pre[other].describe()}) vs {extra} ({pre[extra].describe()}) on "
                f"{len(targets)} targets: CER {_pct(float(d.mean()))} relative to {extra} (mean over targets); "
                f"{better} has the lower CER here (sign-flip test over targets, {_fmt_p(p)}).", p,
                effect=Effect(f"relative CER difference ({other} − {extra}) / {extra}", float(d.mean()), lo, hi,
                              reading=f"negative: {other} lower CER"),
                design=f"paired by target, {len(targets)} targets, means over seeds",
                notes=(*_power_note(min_p, f"{len(targets)} targets"),
                       "One pre-trained model on each side: the targets replicate the fine-tuning, not the "
                       "pre-training, so this compares these two checkpoints.")))
    rows = tuple((m, str(len(pre[m].languages)), pre[m].describe(), *(_cer(scores, m, t) for t in targets))
                 for m in models)
    figure = None
    if out_dir is not None:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(6.2, 3.8), dpi=110)
        x_of = {m: len(pre[m].languages) for m in models}
        for j, t in enumerate(targets):
            line = ax.plot([x_of[m] for m in fixed], table[:n_fixed, j], marker="o", label=t)[0]
            for k, m in enumerate(more):
                ax.plot([x_of[m]], [table[n_fixed + k, j]], marker="s", markerfacecolor="none", markersize=9,
                        color=line.get_color(), linestyle="none")
        if more:
            ax.plot([], [], marker="s", markerfacecolor="none", color="grey", linestyle="none",
                    label=f"more speech ({', '.join(f'{pre[m].total_minutes:g} min' for m in more)})")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(set(x_of.values())), [str(v) for v in sorted(set(x_of.values()))])
        ax.set_xlabel(f"pre-training languages ({total:g} min of speech in all)")
        ax.set_ylabel("test CER (mean over seeds)")
        ax.set_title("Diversity versus quantity, per held-out target", fontsize=9)
        ax.legend(fontsize=7, loc="best")
        figure = out_dir / "question_diversity.png"
        fig.savefig(figure, bbox_inches="tight")
        plt.close(fig)
    return Answer(
        "diversity", "Diversity versus quantity",
        "With the same amount of pre-training speech, do more languages transfer better — and is that worth more "
        "than more speech?", tuple(found), ("model", "languages", "pre-training", *targets), rows, figure,
        "One line per held-out target: test CER against the number of pre-training languages at the same amount of "
        "speech; hollow squares: the model with more speech of the fewest languages.",
        (f"{total:g} minutes of pre-training speech per model and one model per language count: at the study's "
         "scale (thousands of hours, several models per count) the answer may differ.",),
        {"targets": targets, "fixed_minutes": total, "models": models})


# ------------------------------------------------------------------ Indo-European share
def indo_european_share(scores: Scores, pre: Mapping[str, Pretraining], out_dir: Path | None = None) -> Answer | None:
    """The same languages and minutes in different proportions (at least two Indo-European shares)."""
    groups: dict[tuple[frozenset, float], list[str]] = {}
    for m, p in pre.items():
        if len(p.languages) > 1:
            groups.setdefault((frozenset(p.languages), round(p.total_minutes, 3)), []).append(m)
    candidates = [(len({round(pre[m].indo_european_share, 3) for m in ms}), key, ms) for key, ms in groups.items()]
    candidates = [c for c in candidates if c[0] >= 2]
    if not candidates:
        return None
    _, _, models = max(candidates, key=lambda c: (c[0], len(c[2])))
    models = sorted(models, key=lambda m: (pre[m].indo_european_share, m))
    targets = _held_out(scores, models, pre)
    ie = [t for t in targets if language(t).indo_european]
    other = [t for t in targets if not language(t).indo_european]
    if not ie or not other:
        return None
    shares = np.array([pre[m].indo_european_share for m in models])
    is_ie = np.array([language(t).indo_european for t in targets])

    def gap(table: np.ndarray, picked: Sequence[str]) -> float:
        s = _slopes(_relative(table), shares)
        mask = np.array([language(t).indo_european for t in picked])
        if mask.all() or not mask.any():
            return math.nan
        return float(np.nanmean(s[mask]) - np.nanmean(s[~mask]))

    table = _mean_table(scores, models, targets)
    slopes = _slopes(_relative(table), shares)
    effect = gap(table, targets)
    low, high = cluster_bootstrap(scores, models, targets, gap)
    p, min_p = label_permutation_p(slopes, is_ie)
    span = f"{shares[0]:.0%} to {shares[-1]:.0%}"
    found = [Finding(
        "indo-european share",
        f"Indo-European share of pre-training ({', '.join(f'{m}: {pre[m].indo_european_share:.0%}' for m in models)}; "
        f"targets {', '.join(ie)} Indo-European, {', '.join(other)} not): from {span} Indo-European speech, CER "
        f"changes by {_pct(float(np.nanmean(slopes[is_ie])) * (shares[-1] - shares[0]))} of the target's mean on "
        f"Indo-European targets and {_pct(float(np.nanmean(slopes[~is_ie])) * (shares[-1] - shares[0]))} on the "
        f"others (relabelling test over targets, {_fmt_p(p)}).", p,
        effect=Effect("difference in slopes (Indo-European − other targets), relative CER per unit share",
                      effect, low, high, reading="negative: Indo-European speech helps Indo-European targets more"),
        design=f"slope of CER / target mean on the Indo-European share, per target; {len(ie)} vs {len(other)} "
               "targets, labels permuted",
        notes=(*_power_note(min_p, f"{len(ie)} and {len(other)} targets"),
               *_left_out(scores, models, targets, pre),
               "The languages are the same at every share: only their proportions change."))]
    # the Indo-European targets' lead at each share: raw CER, so it mixes in the targets' difficulty
    leads = []
    for i, m in enumerate(models):
        def lead(t: np.ndarray, picked: Sequence[str], i=i) -> float:
            mask = np.array([language(x).indo_european for x in picked])
            if mask.all() or not mask.any():
                return math.nan
            return float(np.nanmean(t[i, ~mask]) - np.nanmean(t[i, mask]))

        lo, hi = cluster_bootstrap(scores, models, targets, lead)
        leads.append((m, lead(table, targets), lo, hi))
    found.append(Finding(
        "indo-european share",
        "Indo-European targets' lead (mean CER of the other targets − of the Indo-European ones) at each share: "
        + "; ".join(f"{pre[m].indo_european_share:.0%} ({m}): {v:+.3f} [{lo:.3f}, {hi:.3f}]" for m, v, lo, hi in leads)
        + ". Descriptive: raw CER across targets also measures how hard each target is, so only its change "
          "across shares speaks to pre-training.", tested=False))
    rows = tuple((m, f"{pre[m].indo_european_share:.0%}", pre[m].describe(), *(_cer(scores, m, t) for t in targets))
                 for m in models)
    relatives = sorted({f"{code} of {t}" for code in pre[models[0]].languages for t in targets
                        if _family_distance([code], t) == 0})
    limits = ((f"Some pre-training languages are relatives (same subgroup) of targets ({', '.join(relatives)}): more "
               "Indo-European speech is also more speech of those relatives.",) if relatives else ()) + (
        f"{len(ie)} Indo-European and {len(other)} other targets: few units, wide intervals.",)
    figure = None
    if out_dir is not None:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(6.2, 3.8), dpi=110)
        relative = _relative(table)
        for j, t in enumerate(targets):
            ax.plot(100 * shares, relative[:, j], marker="o", linestyle="-" if is_ie[j] else "--",
                    color="tab:blue" if is_ie[j] else "tab:orange", label=f"{t} ({'IE' if is_ie[j] else 'other'})")
        ax.axhline(1.0, color="grey", linewidth=0.6)
        ax.set_xlabel("Indo-European share of the pre-training speech (%)")
        ax.set_ylabel("test CER / the target's mean over models")
        ax.set_title("Indo-European share: solid Indo-European targets, dashed others", fontsize=9)
        ax.legend(fontsize=7, loc="best", ncol=2)
        figure = out_dir / "question_ie_share.png"
        fig.savefig(figure, bbox_inches="tight")
        plt.close(fig)
    return Answer(
        "ie-share", "Balanced versus Indo-European-heavy pre-training",
        "Does more Indo-European pre-training speech favour Indo-European targets, and does their lead persist when "
        "the pre-training is balanced?", tuple(found), ("model", "Indo-European share", "pre-training", *targets),
        rows, figure,
        "One line per held-out target: its CER relative to its mean over the models against the Indo-European share "
        "of the pre-training speech; a line falling to the right: that target gains from more Indo-European speech.",
        limits,
        {"targets": targets, "models": models, "shares": shares.tolist(), "slopes": slopes.tolist()})


# ------------------------------------------------------------------ phonological distance
def _family_distance(pretraining: Sequence[str], target: str) -> int:
    """0: a pre-training language of the target's subgroup; 1: of its family; 2: neither."""
    t = language(target)
    best = 2
    for code in pretraining:
        p = language(code)
        if p.family == t.family and p.family != "unknown":
            best = min(best, 0 if p.subgroup == t.subgroup else 1)
    return best


def _spearman_within(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over columns (targets) of Spearman's ρ between x and y (models x targets); columns with
    a missing value, or where x or y is constant, left out."""
    from scipy import stats

    ok = np.isfinite(x).all(axis=0) & np.isfinite(y).all(axis=0)
    if not ok.any() or x.shape[0] < 3:
        return math.nan
    rx, ry = stats.rankdata(x[:, ok], axis=0), stats.rankdata(y[:, ok], axis=0)
    rx, ry = rx - rx.mean(axis=0), ry - ry.mean(axis=0)
    denominator = np.sqrt((rx ** 2).sum(axis=0) * (ry ** 2).sum(axis=0))
    valid = denominator > 0
    if not valid.any():
        return math.nan
    return float(np.mean((rx * ry).sum(axis=0)[valid] / denominator[valid]))


def _partial_within(x: np.ndarray, z: np.ndarray, y: np.ndarray) -> float:
    """Mean over targets of the partial Spearman ρ(x, y | z): the correlation of x's and y's ranks
    once each is regressed on z's ranks (columns with a missing value left out)."""
    from scipy import stats

    ok = np.isfinite(x).all(axis=0) & np.isfinite(y).all(axis=0)
    if not ok.any() or x.shape[0] < 4:
        return math.nan
    rx, ry, rz = (stats.rankdata(v[:, ok], axis=0) for v in (x, y, z))
    rz = rz - rz.mean(axis=0)
    var_z = (rz ** 2).sum(axis=0)

    def residual(r: np.ndarray) -> np.ndarray:
        r = r - r.mean(axis=0)
        beta = np.divide((r * rz).sum(axis=0), var_z, out=np.zeros(r.shape[1]), where=var_z > 0)
        return r - beta * rz

    ex, ey = residual(rx), residual(ry)
    denominator = np.sqrt((ex ** 2).sum(axis=0) * (ey ** 2).sum(axis=0))
    valid = denominator > 1e-12
    if not valid.any():
        return math.nan
    return float(np.mean((ex * ey).sum(axis=0)[valid] / denominator[valid]))


def phonology(scores: Scores, pre: Mapping[str, Pretraining], out_dir: Path | None = None,
              table_of: Mapping[str, Mapping[str, float]] | None = None) -> Answer | None:
    """At least three monolingual models (as the study's relatedness analysis) and two targets none
    of them heard, all in the phone table."""
    from harness.data import phones

    if table_of is None:
        codes = {t for _, t in scores} | {c for p in pre.values() for c in p.languages}
        table_of = {code: found for code in codes if (found := phones.distribution(code)) is not None}
    mono: dict[float, list[str]] = {}
    for m, p in pre.items():  # monolingual models with the same amount of speech
        if len(p.languages) == 1 and p.languages[0] in table_of and any((m, t) in scores for t in table_of):
            mono.setdefault(round(p.total_minutes, 3), []).append(m)
    models = sorted(max(mono.values(), key=len)) if mono else []
    if len(models) < 3 or len({pre[m].languages for m in models}) < 2:
        return None
    targets = _held_out(scores, models, pre)
    targets = [t for t in targets if t in table_of]
    if len(targets) < 2:
        return None
    cer = _mean_table(scores, models, targets)
    distance = np.array([[phones.uncovered_share(pre[m].languages, t, table_of) for t in targets] for m in models])
    jaccard = np.array([[phones.jaccard_distance(pre[m].languages, t, table_of) for t in targets] for m in models])
    family = np.array([[_family_distance(pre[m].languages, t) for t in targets] for m in models], float)
    index = {t: j for j, t in enumerate(targets)}

    def columns(picked: Sequence[str], what: np.ndarray) -> np.ndarray:
        return what[:, [index[t] for t in picked]]

    def gain(table: np.ndarray) -> np.ndarray:
        """1 − relative CER, less the model's mean over the targets: how much better the model does on a
        target than on average, beyond its overall quality (model and target main effects removed)."""
        g = 1.0 - _relative(table)
        return g - np.nanmean(g, axis=1, keepdims=True)

    def centred(x: np.ndarray) -> np.ndarray:
        """Less each model's mean over the targets (as the gain): distance relative to the model's own."""
        return x - np.nanmean(x, axis=1, keepdims=True)

    def rho_distance(t: np.ndarray, picked=targets) -> float:
        return _spearman_within(centred(columns(picked, distance)), gain(t))

    def rho_family(t: np.ndarray, picked=targets) -> float:
        return _spearman_within(centred(columns(picked, family)), gain(t))

    def rho_partial(t: np.ndarray, picked=targets) -> float:
        return _partial_within(centred(columns(picked, distance)), centred(columns(picked, family)), gain(t))

    plain = 1.0 - _relative(cer)
    raw = {"distance": _spearman_within(distance, plain), "family": _spearman_within(family, plain),
           "partial": _partial_within(distance, family, plain)}
    found = []
    estimates = {}
    for key, statistic, name, what in (
            ("distance", rho_distance, "phonological distance (share of the target's phones unheard)",
             "Phonological distance"),
            ("family", rho_family, "family distance (0 same subgroup, 1 same family, 2 other)", "Family relatedness"),
            ("partial", rho_partial, "phonological distance given family distance (partial ρ)",
             "Phonological distance beyond family")):
        estimate = statistic(cer)
        estimates[key] = estimate
        x = centred(family if key == "family" else distance)
        used = int(sum(np.ptp(x[:, j]) > 1e-12 for j in range(len(targets))))
        if not np.isfinite(estimate) or used == 0:
            found.append(Finding("phonology", f"{what}: not testable — it does not vary within the targets.",
                                 tested=False))
            continue
        lo, hi = cluster_bootstrap(scores, models, targets, statistic)
        p, min_p = permutation_p(cer, statistic)
        found.append(Finding(
            "phonology",
            f"{what} against relative gain, within {used} of {len(targets)} targets ({', '.join(targets)}; "
            f"{len(models)} monolingual models): mean Spearman ρ = {estimate:+.2f} (permutation test over the models, "
            f"{_fmt_p(p)}).", p,
            effect=Effect(f"mean within-target Spearman ρ, {name} vs relative gain", estimate, lo, hi,
                          reading="negative: more distant, less gain"),
            design="Spearman ρ over models within each target (where the distance varies), averaged; the models "
                   "relabelled the same way on every target",
            notes=(*_power_note(min_p, f"{len(models)} models"),
                   *_left_out(scores, models, targets, pre),
                   f"Without removing each model's mean (model quality and distance mixed, as comparing models on one "
                   f"target does): mean ρ = {raw[key]:+.2f}.",
                   "Relative gain = 1 − CER / the target's mean over these models, and each distance, less the "
                   "model's own mean over the targets: a model that is better everywhere, or has a larger inventory, "
                   "counts once, not as evidence on every target.")))
    rows = tuple((m, pre[m].describe(), *(f"{distance[i, j]:.2f} / {jaccard[i, j]:.2f} / {int(family[i, j])} → "
                                          f"{cer[i, j]:.3f}" for j in range(len(targets)))) for i, m in enumerate(models))
    figure = None
    if out_dir is not None:
        plt = _plt()
        fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.0), dpi=110)
        markers = {0: "o", 1: "s", 2: "^"}
        colors = plt.get_cmap("tab10")
        panels = ((distance, 1.0 - _relative(cer), "share of the target's phones absent from the pre-training language",
                   "gain: 1 − CER / target's mean over models", "as measured"),
                  (centred(distance), gain(cer), "the same, less the model's mean over the targets",
                   "the same, less the model's mean over the targets", "what the test uses (model means removed)"))
        for ax, (x, y, xlabel, ylabel, title) in zip(axes, panels):
            for j, t in enumerate(targets):
                for i in range(len(models)):
                    ax.scatter(x[i, j], y[i, j], color=colors(j % 10), marker=markers[int(family[i, j])], s=28)
                order = np.argsort(x[:, j])
                ax.plot(x[order, j], y[order, j], color=colors(j % 10), linewidth=0.6, alpha=0.6, label=t)
            ax.axhline(0.0, color="grey", linewidth=0.6)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_title(title, fontsize=9)
        for f, mk in markers.items():
            axes[0].scatter([], [], color="grey", marker=mk, label=("same subgroup", "same family", "other family")[f])
        axes[0].legend(fontsize=7, loc="best", ncol=2)
        figure = out_dir / "question_phonology.png"
        fig.savefig(figure, bbox_inches="tight")
        plt.close(fig)
    return Answer(
        "phonology", "Phonological distance",
        "Does a model transfer better to targets whose phones its pre-training languages share, and does that say "
        "more than family membership?", tuple(found), ("model", "pre-training", *targets), rows, figure,
        "Per held-out target (colour), each model: the share of the target's phone tokens its pre-training language "
        "lacks (x) against its gain there (y), the marker giving family relatedness; left as measured, right with "
        "each model's mean over the targets removed from both (what the test correlates).",
        (f"Phones are eSpeak NG's IPA symbols ({phones.source()}); an IPA symbol is not the same sound across "
         "eSpeak's languages, and real speech varies more.",
         "Cell entries: uncovered share / Jaccard distance of inventories / family distance → test CER."),
        {"targets": targets, "models": models, "uncovered_share": distance.tolist(), "jaccard": jaccard.tolist(),
         "family_distance": family.tolist(), "estimates": estimates})


# ------------------------------------------------------------------ ranking sensitivity
def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's τ-b (ties counted as scipy does), for the few models of a ranking."""
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 2:
        return math.nan
    i, j = np.triu_indices(len(a), 1)
    sa, sb = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    denominator = math.sqrt(float((sa != 0).sum()) * float((sb != 0).sum()))
    return float((sa * sb).sum() / denominator) if denominator > 0 else math.nan


def _tau_matrix(tables: np.ndarray) -> tuple[float, np.ndarray]:
    """tables: points x models x targets. Mean Kendall τ over point pairs and targets, and the
    points x points matrix of τ averaged over targets."""
    k = tables.shape[0]
    taus = np.full((k, k), np.nan)
    for a in range(k):
        taus[a, a] = 1.0
        for b in range(a + 1, k):
            per = [_kendall(tables[a, :, j], tables[b, :, j]) for j in range(tables.shape[2])]
            taus[a, b] = taus[b, a] = float(np.nanmean(per)) if np.isfinite(per).any() else math.nan
    upper = taus[np.triu_indices(k, 1)]
    return (float(np.nanmean(upper)) if np.isfinite(upper).any() else math.nan), taus


def ranking(scores_by_point: Mapping[str, Scores], tuned: Scores, models: Sequence[str], targets: Sequence[str],
            out_dir: Path | None = None, test_rows: Mapping[tuple[str, str, str, int], Any] | None = None
            ) -> Answer | None:
    """``scores_by_point``: point label -> (model, target) -> seed -> CER; ``tuned``: the same at
    the values chosen on dev. ``test_rows``: (point, model, target, seed) -> the cell's
    :class:`harness.report.bootstrap.EditCounts`, for an interval over test utterances (else over
    targets and seeds)."""
    points = list(scores_by_point)
    if len(points) < 2 or len(models) < 3 or not targets:
        return None
    tables = np.array([_mean_table(scores_by_point[p], models, targets) for p in points])
    tuned_table = _mean_table(tuned, models, targets)
    mean_tau, taus = _tau_matrix(tables)
    def mean_tau_to_tuned(a: int) -> float:
        values = [_kendall(tables[a, :, j], tuned_table[:, j]) for j in range(len(targets))]
        return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan

    to_tuned = [mean_tau_to_tuned(a) for a in range(len(points))]
    if not np.isfinite(tuned_table).all(axis=0).any() or not np.isfinite(mean_tau):
        return None

    def winner(column: np.ndarray) -> str | None:
        return models[int(np.nanargmin(column))] if np.isfinite(column).any() else None

    best_tuned = [winner(tuned_table[:, j]) for j in range(len(targets))]
    cases = [(a, j) for a in range(len(points)) for j in range(len(targets))
             if best_tuned[j] is not None and winner(tables[a, :, j]) is not None]
    changes = sum(winner(tables[a, :, j]) != best_tuned[j] for a, j in cases)
    finite_tuned = [x for x in to_tuned if np.isfinite(x)] or [math.nan]
    low = high = math.nan
    how = ""
    if test_rows:
        from harness.report.bootstrap import resample_indices

        # each test set resampled with its own draws (seeded by its ids, as the report's intervals):
        # cells on the same test set share them, so the whole ranking is resampled at once
        draws: dict[tuple[int, int], np.ndarray] = {}
        by_cell: dict[tuple[str, str, str], list[np.ndarray]] = {}
        for key, counts in test_rows.items():
            slot = (counts.seed, len(counts.ids))
            if slot not in draws:
                draws[slot] = resample_indices(len(counts.ids), counts.seed, RESAMPLES)
            by_cell.setdefault(key[:3], []).append(counts.rates(draws[slot]))
        stack = np.full((RESAMPLES, *tables.shape), np.nan)
        for a, p in enumerate(points):
            for i, m in enumerate(models):
                for j, t in enumerate(targets):
                    if (p, m, t) in by_cell:
                        stack[:, a, i, j] = np.mean(by_cell[(p, m, t)], axis=0)
        samples = [_tau_matrix(stack[r])[0] for r in range(RESAMPLES)]
        finite = [x for x in samples if np.isfinite(x)]
        if finite:
            low, high = (float(v) for v in np.percentile(finite, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2]))
            how = "resampling the test utterances (the same draws for every cell on a test set)"
    if not how and len(targets) >= 2:
        rng = np.random.default_rng(SEED)
        samples = [_tau_matrix(tables[:, :, rng.integers(0, len(targets), len(targets))])[0] for _ in range(RESAMPLES)]
        finite = [x for x in samples if np.isfinite(x)]
        if finite:
            low, high = (float(v) for v in np.percentile(finite, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2]))
            how = "resampling targets"
    found = [Finding(
        "ranking",
        f"Ranking sensitivity ({len(models)} models, {len(targets)} targets, {len(points)} recipes): the rankings of "
        f"two recipes agree with mean Kendall τ = {mean_tau:+.2f} (1: the same ranking, 0: unrelated); against the "
        f"ranking after choosing each model's recipe on dev, τ = {min(finite_tuned):+.2f} to {max(finite_tuned):+.2f}; "
        f"the best model differs from the tuned one in {changes} of {len(cases)} recipe × target cases.", None,
        effect=Effect("mean Kendall τ between two recipes' rankings", mean_tau, low, high,
                      reading=f"interval {how}" if how else ""),
        design="Kendall τ-b between model rankings per target, averaged over recipe pairs and targets",
        notes=("Descriptive: no p-value; the interval says how sure the agreement is.",
               "Seeds are averaged before ranking; with one seed, training noise is part of what moves a ranking."))]
    rows = tuple((p, f"{to_tuned[a]:+.2f}", *(", ".join(models[i] for i in np.argsort(tables[a, :, j]))
                                              for j in range(len(targets)))) for a, p in enumerate(points))
    rows += (("chosen on dev", "+1.00", *(", ".join(models[i] for i in np.argsort(tuned_table[:, j]))
                                         for j in range(len(targets)))),)
    figure = None
    if out_dir is not None:
        plt = _plt()
        fig, axes = plt.subplots(1, len(targets), figsize=(2.2 + 2.6 * len(targets), 3.6), dpi=110, squeeze=False)
        labels = [*points, "dev-chosen"]
        for j, t in enumerate(targets):
            ax = axes[0, j]
            ranks = np.array([np.argsort(np.argsort(tables[a, :, j])) + 1 for a in range(len(points))]
                             + [np.argsort(np.argsort(tuned_table[:, j])) + 1])
            for i, m in enumerate(models):
                ax.plot(range(len(labels)), ranks[:, i], marker="o", label=m)
            ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=6)
            ax.set_yticks(range(1, len(models) + 1))
            ax.invert_yaxis()
            ax.set_title(t, fontsize=9)
            if j == 0:
                ax.set_ylabel("rank (1: lowest test CER)")
        axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        figure = out_dir / "question_ranking.png"
        fig.savefig(figure, bbox_inches="tight")
        plt.close(fig)
    return Answer(
        "ranking", "Ranking sensitivity",
        "How much does the ranking of the models depend on the fine-tuning recipe (learning rate, schedule)?",
        tuple(found), ("recipe", "τ vs dev-chosen", *targets), rows, figure,
        "Per target, each model's rank (1: lowest test CER) under each recipe of the sweep and after choosing each "
        "model's recipe on dev; crossing lines are a ranking that depends on the recipe.",
        ("A benchmark that fixes one recipe for every model (as SUPERB does) reports one column of this picture.",),
        {"points": points, "models": models, "targets": targets, "tau_matrix": taus.tolist(),
         "tau_to_tuned": to_tuned})


# ---------------------------------------------------------------------------- the report's entry point
TOPICS = ("diversity", "indo-european share", "phonology", "ranking")


def answers(cells: Sequence[Any], values: pd.DataFrame, blank: frozenset | set = frozenset(),
            out_dir: Path | None = None, tag: str = "") -> list[Answer]:
    """The questions these results can answer (cells and values of one dataset and protocol)."""
    pre = pretraining_of(cells)
    # within a target a model still on the CTC blank plateau is a result (it did not learn to
    # transcribe in the budget), so it counts as measured; a target where every model is blank
    # says nothing and is left out
    by_target: dict[str, set[str]] = {}
    for row in values.itertuples(index=False):
        by_target.setdefault(row.language, set()).add(row.model)
    silent = {t for t, ms in by_target.items() if all((m, t) in blank for m in ms)}
    scores = scores_of(values[~values["language"].isin(silent)])
    found = []
    for ask in (diversity, indo_european_share, phonology):
        answer = ask(scores, pre, out_dir)
        if answer is not None:
            used = set(answer.data.get("models", ())), set(answer.data.get("targets", ()))
            flagged = sorted(f"{m} on {t}" for m, t in blank if m in used[0] and t in used[1])
            if flagged:
                answer = dataclasses.replace(answer, limits=(
                    *answer.limits, f"Blank output counted as measured (CER near 1: the model had not left the CTC "
                                    f"blank plateau in the budget, in at least one seed): {', '.join(flagged)}."))
            if tag and answer.figure is not None:
                renamed = answer.figure.with_name(f"{answer.figure.stem}{tag}{answer.figure.suffix}")
                answer.figure.replace(renamed)
                answer = dataclasses.replace(answer, figure=renamed)
            found.append(answer)
    return found


def ranking_answer(swept_cells: Sequence[Any], selection: Any, values_of: Callable[[Sequence[Any]], pd.DataFrame],
                   hypotheses: Mapping[str, Sequence[tuple[str, str, str]]] | None = None,
                   out_dir: Path | None = None) -> tuple[tuple[str, str], Answer] | None:
    """Ranking sensitivity over a sweep's recipes (choices on dev; no data-amount regimes), of the
    first (dataset, protocol) in sorted order; with that pair."""
    from harness.plan.sweep import format_value
    from harness.report.bootstrap import EditCounts
    from harness.report.selection import _grid_order

    if selection is None or not selection.tuned or selection.regimes:
        return None
    cells = [c for c in swept_cells if c.key in selection.point_by_key]
    groups = sorted({(c.dataset, c.protocol) for c in cells})
    if not groups:
        return None
    dataset, protocol = groups[0]
    cells = [c for c in cells if (c.dataset, c.protocol) == (dataset, protocol) and not c.record.is_blank()]
    by_point: dict[Any, list[Any]] = {}
    for c in cells:
        by_point.setdefault(selection.point_by_key[c.key], []).append(c)
    ordered = sorted(by_point, key=lambda point: _grid_order(point, selection.axes))
    labels = {point: ", ".join(f"{k.split('.')[-1]}={format_value(v)}" for k, v in point) for point in ordered}
    scores_by_point = {labels[p]: scores_of(values_of(by_point[p])) for p in ordered}
    tuned = scores_of(values_of([c for c in cells if c.key in selection.chosen_keys]))
    models = sorted({m for sc in scores_by_point.values() for m, _ in sc})
    targets = sorted({t for sc in scores_by_point.values() for _, t in sc})
    complete = [m for m in models if all((m, t) in sc for sc in scores_by_point.values() for t in targets)]
    rows = None
    if hypotheses:
        rows = {(labels[selection.point_by_key[c.key]], c.model, c.language, c.seed): EditCounts(hypotheses[c.key])
                for c in cells if hypotheses.get(c.key) and c.model in complete}
    answer = ranking(scores_by_point, tuned, complete, targets, out_dir, rows)
    return None if answer is None else ((dataset, protocol), answer)
