"""The model x language matrix (mean +- sd over seeds) as a table, CSV, JSON and Markdown.

Every "best" and every ranking honours the metric's direction (``lower_is_better``), and a cell
whose test hypotheses are (almost) all empty — a model still on the CTC blank plateau — is
flagged wherever it appears and never ranked above a model that transcribes something. With
several protocols, each gets its own matrices, rankings and statistics.

What the report says besides the matrix — what ran, what it cost, sample transcripts, loss
curves, bootstrap intervals — is computed in :mod:`harness.report.facts` (intervals in
:mod:`harness.report.bootstrap`) and rendered by :mod:`harness.report.page`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from html import escape as html_escape
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from harness import __version__
from harness.report.bootstrap import Interval
from harness.languages import language
from harness.plan.cells import DEFAULT_PROTOCOL
from harness.engine.scoring import BLANK_SHARE, is_blank
from harness.store.results import StoredCell
from harness.report.stats import correction_note
from harness.plan.sweep import Point, SweepAxis

#: marks a blank-output cell in tables
BLANK_MARK = "†"


def cells_frame(cells: Sequence[StoredCell]) -> pd.DataFrame:
    """One row per (cell, split, metric); ``blank`` says the cell's hypotheses of that split are
    (almost) all empty."""
    rows = [
        {"key": c.key, "protocol": c.protocol, "model": c.model, "dataset": c.dataset, "language": c.language,
         "seed": c.seed, "split": split, "metric": metric, "value": value, "blank": is_blank(c.record, split)}
        for c in cells
        for split, scores in c.metrics.items()
        for metric, value in scores.items()
    ]
    return pd.DataFrame(rows, columns=["key", "protocol", "model", "dataset", "language", "seed", "split", "metric",
                                       "value", "blank"])


def summary_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample standard deviation and count over seeds; ``blank``: how many of those seeds
    output (almost) only blanks."""
    columns = ["protocol", "model", "dataset", "language", "split", "metric", "mean", "sd", "n", "blank"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    grouped = frame.groupby(["protocol", "model", "dataset", "language", "split", "metric"], sort=True)
    out = grouped.agg(mean=("value", "mean"), sd=("value", "std"), n=("value", "count"),
                      blank=("blank", "sum")).reset_index()
    out["sd"] = out["sd"].fillna(0.0)
    out["blank"] = out["blank"].astype(int)
    return out[columns]


def protocols_of(summary: pd.DataFrame) -> list[str]:
    """The protocols in a summary, the default first."""
    return sorted(set(summary["protocol"]), key=lambda p: (p != DEFAULT_PROTOCOL, p))


def _mean(values: Sequence) -> float:
    values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(values) / len(values) if values else float("nan")


def data_frame(cells: Sequence[StoredCell]) -> pd.DataFrame:
    """Per dataset and language: the language's metadata and what the cells trained and tested on.

    Hours, utterances and speakers are means over the cells (seeds may draw different training
    subsets). Train hours are shown as requested (``train_hours_requested``) and as used — what
    the loop trained on, after its own skips — and ``train_exhausted`` says in how many seeds'
    draws the split held less than requested. Skipped rows are counted as in one cell: per seed
    (a range when seeds differ, as training draws may), so dev and test rows, the same for every
    seed and model, are counted once.
    """
    groups: dict[tuple[str, str], list[StoredCell]] = {}
    for c in cells:
        groups.setdefault((c.dataset, c.language), []).append(c)
    rows = []
    for (dataset, code), members in sorted(groups.items()):
        lang = language(code)
        row: dict = {"dataset": dataset, "language": code, "name": lang.name, "family": lang.family,
                     "subgroup": lang.subgroup, "script": lang.script}
        data = [m.record.data for m in members]
        trained = [m.record.train.to_json() for m in members]
        row["train_hours_requested"] = _mean([d.get("train_hours_requested") for d in data])
        for key in ("train_hours", "train_utterances"):  # what the loop trained on, else what the dataset gave
            row[key] = _mean([t.get(key, d.get(key)) for t, d in zip(trained, data)])
        seeds = sorted({m.seed for m in members})
        exhausted = sorted({m.seed for m, d in zip(members, data) if d.get("train_exhausted")})
        row["train_exhausted"] = f"yes ({len(exhausted)} of {len(seeds)} seeds)" if exhausted else "no"
        for key in ("train_speakers", "test_hours", "test_utterances"):
            row[key] = _mean([d.get(key) for d in data])
        draws = {}  # one per seed: every model of a seed saw the same data
        for m in members:
            draws.setdefault(m.seed, m.record.skipped)
        reasons = sorted({(split, reason) for draw in draws.values()
                          for split, found in draw.items() for reason in found})
        skipped = []
        for split, reason in reasons:
            counts = [int(draw.get(split, {}).get(reason, 0)) for draw in draws.values()]
            low, high = min(counts), max(counts)
            skipped.append(f"{split}:{reason} {low}" if low == high else f"{split}:{reason} {low}–{high}")
        row["skipped"] = ", ".join(skipped) or "none"
        rows.append(row)
    return pd.DataFrame(rows)


def _data_table(frame: pd.DataFrame, fmt: str) -> str:
    shown = frame.copy()
    for key in ("train_hours_requested", "train_hours", "test_hours"):
        shown[key] = shown[key].map(lambda v: "-" if v != v else f"{v:.2f}")
    for key in ("train_utterances", "train_speakers", "test_utterances"):
        shown[key] = shown[key].map(lambda v: "-" if v != v else f"{v:.0f}")
    return tabulate(shown.values.tolist(), headers=list(shown.columns), tablefmt=fmt, disable_numparse=True)


def parallel_notes(cells: Sequence[StoredCell]) -> list[str]:
    """One note per dataset whose cells say (``record["data"]["parallel_sentences"]``) that its
    languages read the same sentences, when the report holds two or more of its languages."""
    said: dict[str, tuple[str, set[str]]] = {}
    for c in cells:
        text = c.record.data.get("parallel_sentences")
        if text:
            said.setdefault(c.dataset, (str(text), set()))[1].add(c.language)
    return [f"{dataset}: {', '.join(sorted(langs))} read parallel sentences ({text}), so their test sets say the "
            "same things in each language" for dataset, (text, langs) in sorted(said.items()) if len(langs) > 1]


#: printed under the data table when a training split ran out
EXHAUSTED_NOTE = ("train_exhausted: the training split held less usable audio than train_hours_requested, so "
                  "those cells trained on all of it (train_hours)")


def _column(dataset: str, lang: str, datasets: set[str]) -> str:
    return lang if len(datasets) == 1 else f"{dataset}:{lang}"


@dataclass(frozen=True)
class Matrix:
    metric: str
    split: str
    models: list[str]
    columns: list[str]
    #: (model, column) -> (mean, sd, n)
    values: dict[tuple[str, str], tuple[float, float, int]]
    lower_is_better: bool = True
    #: (model, column) where most seeds output (almost) only blanks
    blank: frozenset[tuple[str, str]] = frozenset()
    protocol: str = DEFAULT_PROTOCOL

    def _order(self, column: str) -> list[tuple[bool, float, str]]:
        """(blank, sort value, model) of the scored models of a column, best first: by the metric in
        its direction, blank-output cells after every other."""
        sign = 1.0 if self.lower_is_better else -1.0
        scored = [(model, self.values[(model, column)][0]) for model in self.models if (model, column) in self.values]
        return sorted((((model, column) in self.blank, sign * mean, model) for model, mean in scored
                       if not math.isnan(mean)))

    def best(self, column: str) -> str | None:
        """The best model of a column; None when no model transcribes anything there."""
        order = self._order(column)
        return order[0][2] if order and not order[0][0] else None

    def rows(self, mark: Callable[[str], str] = lambda text: f"*{text}*",
             note: Callable[[str, str], str] | None = None) -> list[list[str]]:
        """Table rows; the best model of each column goes through ``mark``, ``note(model, column)``
        is added after each value, blank-output cells get :data:`BLANK_MARK`."""
        out = []
        best = {column: self.best(column) for column in self.columns}
        for model in self.models:
            row = [model]
            for column in self.columns:
                if (model, column) not in self.values:
                    row.append("-")
                    continue
                mean, sd, n = self.values[(model, column)]
                text = f"{mean:.3f} ± {sd:.3f}" if n > 1 else f"{mean:.3f}"
                if note is not None:
                    text += note(model, column)
                if (model, column) in self.blank:
                    text += f" {BLANK_MARK}"
                if best[column] == model:
                    text = mark(text)
                row.append(text)
            out.append(row)
        return out

    def table(self, fmt: str = "simple") -> str:
        bold = "**" if fmt in {"github", "pipe"} else "*"
        return tabulate(self.rows(lambda t: f"{bold}{t}{bold}"), headers=["model", *self.columns], tablefmt=fmt,
                        disable_numparse=True)

    def direction(self) -> str:
        return "lower is better" if self.lower_is_better else "higher is better"

    def footnote(self) -> str:
        if not self.blank:
            return ""
        return (f"{BLANK_MARK} blank output: at least {BLANK_SHARE:.0%} of the test hypotheses are empty in most seeds "
                f"(the model is still on the CTC blank plateau); never ranked best.")


def matrix(summary: pd.DataFrame, metric: str = "cer", split: str = "test", lower_is_better: bool = True,
           protocol: str | None = None) -> Matrix:
    """The model x language matrix of one metric and split (of one protocol: by default the
    summary's first)."""
    if protocol is None:
        protocol = protocols_of(summary)[0] if len(summary) else DEFAULT_PROTOCOL
    part = summary[(summary["metric"] == metric) & (summary["split"] == split) & (summary["protocol"] == protocol)]
    datasets = set(part["dataset"])
    values = {}
    blank = set()
    for row in part.itertuples(index=False):
        column = _column(row.dataset, row.language, datasets)
        values[(row.model, column)] = (row.mean, row.sd, int(row.n))
    # a model-language is blank when most of its seeds are, judged on the test split
    test = summary[(summary["metric"] == metric) & (summary["split"] == "test") & (summary["protocol"] == protocol)]
    for row in test.itertuples(index=False):
        if row.blank * 2 > row.n:
            blank.add((row.model, _column(row.dataset, row.language, datasets)))
    models = sorted(set(part["model"]))
    keyed = {(_column(d, lang, datasets)): (d, lang) for d, lang in zip(part["dataset"], part["language"])}
    # languages grouped by family, then by code
    columns = sorted(keyed, key=lambda c: (language(keyed[c][1]).family, keyed[c][0], keyed[c][1]))
    return Matrix(metric, split, models, columns, values, lower_is_better, frozenset(blank), protocol)


def cell_values(cells: Sequence[StoredCell], metric: str = "cer", split: str = "test") -> pd.DataFrame:
    """One row per cell (model, dataset, language, seed, value) for the statistics."""
    rows = [(c.protocol, c.model, c.dataset, c.language, c.seed, c.metrics.get(split, {}).get(metric))
            for c in cells]
    frame = pd.DataFrame(rows, columns=["protocol", "model", "dataset", "language", "seed", "value"])
    return frame.dropna(subset=["value"])


def _facts(cell: StoredCell) -> dict:
    """The typed model facts (:class:`harness.api.ModelFacts`) stored with a cell."""
    return cell.record.model_facts


def pretraining_languages(cells: Sequence[StoredCell]) -> dict[str, list[str]]:
    """model -> pre-training languages, from the model facts stored with each result."""
    return {c.model: list(_facts(c)["pretraining_languages"]) for c in cells if _facts(c).get("pretraining_languages")}


def pretrained_models(cells: Sequence[StoredCell]) -> dict[str, bool]:
    """model -> whether it was pre-trained, for the models whose stored facts say."""
    return {c.model: bool(_facts(c)["pretrained"]) for c in cells if _facts(c).get("pretrained") is not None}


def _group_name(dataset: str, protocol: str, protocols: set[str]) -> str:
    return dataset if protocols <= {DEFAULT_PROTOCOL} else f"{dataset}, protocol {protocol}"


def blank_findings(cells: Sequence[StoredCell]):
    """One finding per model whose test output is (almost) all blank on some languages."""
    from harness.report.stats import Finding

    blank: dict[tuple[str, str], dict[str, list[bool]]] = {}
    for c in cells:
        blank.setdefault((c.protocol, c.model), {}).setdefault(c.language, []).append(is_blank(c.record))
    out = []
    for (protocol, model), langs in sorted(blank.items()):
        flagged = sorted(lang for lang, flags in langs.items() if sum(flags) * 2 > len(flags))
        if flagged:
            where = f" ({protocol})" if protocol != DEFAULT_PROTOCOL else ""
            out.append(Finding(
                "blank", f"Blank output: {model}{where} outputs (almost) nothing on {', '.join(flagged)} — at least "
                         f"{BLANK_SHARE:.0%} of its test hypotheses are empty: it is still on the CTC blank plateau "
                         "(train longer, or check its learning rate). Its scores there measure no transcription and "
                         "are never ranked best.", tested=False))
    return out


def train_hours(cells: Sequence[StoredCell]) -> dict[str, float]:
    """language -> mean training hours over its cells (``record["data"]["train_hours"]``), for the
    confounds the statistics name."""
    found: dict[str, list[float]] = {}
    for c in cells:
        hours = c.record.data.get("train_hours")
        if isinstance(hours, (int, float)):
            found.setdefault(c.language, []).append(float(hours))
    return {lang: sum(v) / len(v) for lang, v in found.items()}


def findings(cells: Sequence[StoredCell], metric: str = "cer", lower_is_better: bool = True,
             by_gender: Mapping[str, Mapping[str, Any]] | None = None,
             extra: Mapping[str, Sequence[Any]] | None = None) -> dict[str, list]:
    """Statistics per dataset and protocol (languages of different datasets, and results of
    different protocols, are not pooled); blank-output models first. One Holm correction runs over
    every finding with a p-value, across groups (:func:`harness.report.stats.adjust`).

    ``by_gender`` (key -> gender -> :class:`harness.report.gender.GenderScore`): adds the speaker
    gender finding to each group (tested where its cells' test genders are recorded, else "not
    testable" with the reason); None: no gender finding. ``extra``: group name -> more findings
    (the open questions', :mod:`harness.report.questions`), corrected with the rest."""
    from harness.report.stats import adjust, all_findings

    values = cell_values(cells, metric)
    pretraining = pretraining_languages(cells)
    pretrained = pretrained_models(cells)
    protocols = set(values["protocol"])
    out = {}
    for (dataset, protocol), part in values.groupby(["dataset", "protocol"]):
        in_group = [c for c in cells if c.dataset == dataset and c.protocol == protocol]
        blank = {(c.model, c.language) for c in in_group if is_blank(c.record)}
        out[_group_name(dataset, protocol, protocols)] = [
            *blank_findings(in_group),
            *all_findings(part, pretraining, metric, pretrained, lower_is_better=lower_is_better, blank=blank,
                          hours=train_hours(in_group)),
            *(_gender_findings(in_group, by_gender, dataset, blank) if by_gender is not None else []),
            *(extra or {}).get(_group_name(dataset, protocol, protocols), []),
        ]
    return adjust(out)


def question_answers(cells: Sequence[StoredCell], metric: str, out_dir: Path, swept_cells: Sequence[StoredCell] = (),
                     selection: Any = None, hypotheses: Mapping[str, Sequence[tuple[str, str, str]]] | None = None
                     ) -> dict[str, list]:
    """group name -> the open questions these results answer (:mod:`harness.report.questions`)."""
    from harness.report import questions

    values = cell_values(cells, metric)
    protocols = set(values["protocol"])
    out: dict[str, list] = {}
    groups = sorted(values.groupby(["dataset", "protocol"]), key=lambda item: item[0])
    for n, ((dataset, protocol), part) in enumerate(groups):
        in_group = [c for c in cells if c.dataset == dataset and c.protocol == protocol]
        blank = {(c.model, c.language) for c in in_group if is_blank(c.record)}
        found = questions.answers(in_group, part, blank, out_dir, tag="" if n == 0 else f"_{n}")
        if found:
            out[_group_name(dataset, protocol, protocols)] = found
    if metric == "cer" and selection is not None:
        ranked = questions.ranking_answer(swept_cells, selection, lambda cs: cell_values(cs, metric), hypotheses,
                                          out_dir)
        if ranked is not None:
            (dataset, protocol), answer = ranked
            out.setdefault(_group_name(dataset, protocol, protocols or {protocol}), []).append(answer)
    return out


def _gender_findings(cells: Sequence[StoredCell], by_gender: Mapping[str, Mapping[str, Any]], dataset: str,
                     blank) -> list:
    from harness.report import gender as gender_
    from harness.report.stats import gender_tests

    recorded = [c for c in cells if c.record.genders.get("test") is not None]
    reason = ""
    if not recorded:
        reason = f"dataset {dataset} records no speaker gender"
        if dataset == "synthetic":
            reason += (" (its voices are eSpeak NG variants: m1–m7 declare themselves male, f1 and f4 female, the "
                       "klatt variants nothing, and every utterance's pitch is drawn at random: a variant's label is "
                       "not a speaker's gender); Common Voice and FLEURS record it")
        else:
            reason += (" for these cells' test utterances (Common Voice and FLEURS do, where speakers gave it; cells "
                       "stored before bench kept genders have none)")
    elif not any(c.key in by_gender for c in recorded):
        reason = ("the test genders were recorded but their files beside the results store are missing "
                  "(copy the store's .outputs folder along with it)")
    scores = gender_.frame(cells, by_gender)
    if recorded and scores.empty and not reason:
        reason = "no test split of these cells has both female and male speakers"
    return gender_tests(scores, dataset, blank, gender_.speakers(cells), recorded=not reason, reason=reason)


#: a lower-is-better metric whose every trained cell scores at least this is no better than an
#: empty transcript (an error rate of 1.0): it carries no information about the models
NO_INFORMATION = 1.0


def uninformative(frame: pd.DataFrame, metric: str, lower_is_better: bool = True, split: str = "test") -> str | None:
    """Why a metric carries no information in these results, or None. ``frame``: one row per
    cell, split and metric (:func:`cells_frame`). For an error rate (lower is better), every cell
    that transcribes something (not blank output) scoring at least :data:`NO_INFORMATION` means no
    model beats an empty transcript on it: its table and heatmap rank noise."""
    if not lower_is_better or frame.empty:
        return None
    part = frame[(frame["metric"] == metric) & (frame["split"] == split)]
    trained = part[~part["blank"].astype(bool)]["value"]
    if trained.empty or (trained < NO_INFORMATION).any():
        return None
    return (f"{metric.upper()} carries no information here: every trained cell (blank output aside) scores between "
            f"{trained.min():.3f} and {trained.max():.3f} on {split}, no better than an empty "
            f"transcript ({NO_INFORMATION:.1f}); the models insert or garble words at this scale. Its table and "
            f"heatmap are shown last and should not be read as a ranking.")


def rankings(m: Matrix) -> dict[str, list[tuple[int, str, float, bool]]]:
    """Per language: (rank, model, mean, blank), best first (in the metric's direction; blank-output
    cells last)."""
    return {column: [(i + 1, model, m.values[(model, column)][0], blank)
                     for i, (blank, _, model) in enumerate(m._order(column))]
            for column in m.columns}


def _families_row(m: Matrix) -> list[str]:
    """A first row naming each column's language family (columns are grouped by family)."""
    return ["(family)", *[language(c.split(":")[-1]).family for c in m.columns]]


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"), ("±", r"$\pm$"),
                 ("†", r"$^\dagger$")):
        text = text.replace(a, b)
    return text


def latex_table(m: Matrix) -> str:
    rows = m.rows(lambda text: "\x00" + text)  # marked, escaped, then bolded
    rows = [[r"\textbf{" + _latex_escape(c[1:]) + "}" if c.startswith("\x00") else _latex_escape(c) for c in row]
            for row in rows]
    header = ["model", *[_latex_escape(c) for c in m.columns]]
    body = tabulate(rows, headers=header, tablefmt="latex_raw", disable_numparse=True)
    caption = (f"{m.metric.upper()} ({m.split}{', ' + m.protocol if m.protocol != DEFAULT_PROTOCOL else ''}), "
               f"mean $\\pm$ sd over seeds; best per language in bold ({m.direction()}).")
    return "\\begin{table}[ht]\n\\centering\n" + body + f"\n\\caption{{{caption}}}\n\\end{{table}}\n"


def heatmap(m: Matrix, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    data = np.array([[m.values.get((model, c), (np.nan,))[0] for c in m.columns] for model in m.models])
    fig, ax = plt.subplots(figsize=(max(4.5, 2.4 + 0.8 * len(m.columns)), 1.2 + 0.45 * len(m.models)), dpi=110)
    cmap = "viridis_r" if m.lower_is_better else "viridis"  # the better, the brighter
    finite = data[np.isfinite(data)]
    image = ax.imshow(data, cmap=cmap, aspect="auto", vmin=0.0, vmax=max([1.0, *finite.tolist()]))
    ax.set_xticks(range(len(m.columns)), m.columns, rotation=45, ha="right")
    ax.set_yticks(range(len(m.models)), m.models)
    for i in range(len(m.models)):
        for j in range(len(m.columns)):
            if not np.isnan(data[i, j]):
                mark = f" {BLANK_MARK}" if (m.models[i], m.columns[j]) in m.blank else ""
                ax.text(j, i, f"{data[i, j]:.2f}{mark}", ha="center", va="center", fontsize=8,
                        color="white" if (data[i, j] > 0.5) == m.lower_is_better else "black")
    fig.colorbar(image, ax=ax, label=m.metric.upper())
    where = f", {m.protocol}" if m.protocol != DEFAULT_PROTOCOL else ""
    ax.set_title(f"{m.metric.upper()} on {m.split}{where} (mean over seeds; {m.direction()})", fontsize=9)
    fig.savefig(path, bbox_inches="tight")  # a title wider than one column's figure is not cut
    plt.close(fig)
    return path


def _html_rows(m: Matrix) -> list[list[str]]:
    import html

    rows = m.rows(lambda text: "\x00" + text)
    return [[f"<b>{html.escape(c[1:])}</b>" if c.startswith("\x00") else html.escape(c) for c in row] for row in rows]


def layer_weights_figure(cells: Sequence[StoredCell], path: Path) -> Path | None:
    """The layer weights learned by the ``superb`` protocol: per model, layers x languages (mean
    over seeds), side by side. None when no cell learned any."""
    weights: dict[str, dict[str, list[list[float]]]] = {}
    for c in cells:
        learned = c.record.train.layer_weights
        if learned:
            label = c.model if c.protocol == "superb" else f"{c.model} ({c.protocol})"
            weights.setdefault(label, {}).setdefault(c.language, []).append(list(learned))
    if not weights:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = sorted(weights)
    fig, axes = plt.subplots(1, len(models), figsize=(0.6 + 2.6 * len(models), 3.4), dpi=110, squeeze=False)
    top = max(float(np.max(np.mean(runs, axis=0))) for langs in weights.values() for runs in langs.values())
    for ax, model in zip(axes[0], models):
        langs = sorted(weights[model], key=lambda code: (language(code).family, code))
        layers = max(len(runs[0]) for runs in weights[model].values())
        data = np.full((layers, len(langs)), np.nan)
        for j, code in enumerate(langs):
            mean = np.mean(weights[model][code], axis=0)
            data[: len(mean), j] = mean
        image = ax.imshow(data, cmap="magma", aspect="auto", origin="lower", vmin=0.0, vmax=top)
        for i in range(layers):
            for j in range(len(langs)):
                if not np.isnan(data[i, j]):
                    ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if data[i, j] > 0.6 * top else "white")
        ax.set_xticks(range(len(langs)), langs)
        ax.set_yticks(range(layers), ["in"] + [str(i) for i in range(1, layers)])
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("language")
    axes[0][0].set_ylabel("layer (in: transformer input)")
    fig.colorbar(image, ax=list(axes[0]), label="softmax weight")
    fig.suptitle("superb: learned weight of each upstream layer (mean over seeds)", fontsize=10)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def interval_rows(m: Matrix, intervals: Mapping[tuple[str, str, str, str], Interval],
                  datasets: Sequence[str]) -> list[list[str]]:
    """Rows of a matrix with each model-language's bootstrap interval beside its mean ± sd."""
    keyed = {}
    for (protocol, model, dataset, lang), interval in intervals.items():
        if protocol == m.protocol:
            keyed[(model, _column(dataset, lang, set(datasets)))] = interval

    def note(model: str, column: str) -> str:
        interval = keyed.get((model, column))
        return f" {interval.text()}" if interval is not None else " [-]"

    return m.rows(lambda text: text, note)


def _caption(m: Matrix) -> str:
    brighter = "lower" if m.lower_is_better else "higher"
    return (f"Read across a row for one model, down a column for one language; brighter means {brighter} "
            f"{m.metric.upper()} (better); {BLANK_MARK} marks blank output.")


def decoding_table(rows: Sequence[Mapping]) -> tuple[list[str], list[list[str]], str]:
    """The report's decoding table: speed per hour of test audio and the weights chosen on dev."""
    head = ["decoder", "cells", "s per hour of test audio", "dev s (tuning)", "grid points", "LM build s",
            "chosen on dev (mean)"]
    body = [[r["decoder"], str(r["cells"]), f"{r['seconds_per_audio_hour']:.3g}", f"{r['dev_seconds']:.1f}",
             str(r["grid_points"]), f"{r['build_seconds']:.1f}",
             " ".join(f"{k}={v:.2f}" for k, v in r["weights"].items()) or "-"] for r in rows]
    note = ("Decoding of the stored model outputs (no training): seconds of decoding per hour of test audio "
            "(test decoded once, with the weights chosen on dev), seconds spent on dev trying every grid point, "
            "and the weights chosen on dev, averaged over cells. Greedy decoding here is of the stored outputs "
            "(the model's forward pass is in eval_s above).")
    return head, body, note


def write_reports(cells: Sequence[StoredCell], out_dir: Path, metrics: Sequence[str],
                  json_copy: Path | None = None, lower_is_better: Mapping[str, bool] | None = None,
                  hypotheses: Mapping[str, Sequence[tuple[str, str, str]]] | None = None,
                  sweep: Sequence[SweepAxis] = (), points: Mapping[str, Point] | None = None,
                  genders: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Path]:
    """Write the matrix as CSV, JSON, Markdown, LaTeX, heatmaps (PNG) and one HTML page.

    ``lower_is_better``: the direction of each metric (default: lower is better); every "best",
    ranking and colour scale follows it. ``hypotheses``: key -> the cell's stored test rows
    (utterance, reference, hypothesis), for the sample transcripts and the bootstrap intervals of
    CER (left out: neither is reported). ``sweep``: the run's swept settings (``points``: each
    cell's point, by key; read from the cells' identities when left out): per model and
    language the point best on dev is chosen (:mod:`harness.report.selection`) and every table,
    statistic and summary is of the chosen cells; data amounts are kept apart as regimes.
    ``genders``: key -> the test utterances' speaker genders (``record.genders``), for the CER by
    speaker gender and its finding (left out: cells without are "not testable").
    """
    from harness.report import facts as facts_
    from harness.report import page as page_
    from harness.report import selection as selection_
    from harness.report import summaries as summaries_

    hypotheses = dict(hypotheses or {})
    direction = {m: True for m in metrics} | dict(lower_is_better or {})
    out_dir.mkdir(parents=True, exist_ok=True)
    swept_cells = list(cells)
    selection = None
    if sweep and metrics:  # choices on dev; everything below is of the chosen cells
        selection = selection_.select_on_dev(swept_cells, sweep, metrics[0], direction[metrics[0]], points)
        cells = selection_.regime_cells([c for c in swept_cells if c.key in selection.chosen_keys], sweep,
                                        selection.point_by_key)
    frame = cells_frame(cells)
    summary = summary_frame(frame)
    protocols = protocols_of(summary) if len(summary) else [DEFAULT_PROTOCOL]
    from harness.report import gender as gender_

    by_gender = gender_.scores_by_cell(cells, hypotheses, genders or {})
    asked = question_answers(cells, metrics[0], out_dir, swept_cells, selection, hypotheses) if metrics else {}
    found = findings(cells, metrics[0], direction[metrics[0]], by_gender,
                     {g: [f for a in items for f in a.findings] for g, items in asked.items()}) if metrics else {}
    # metrics that carry no information here: said so, and their tables come after the others
    silent = {m: why for m in metrics if (why := uninformative(frame, m, direction[m])) is not None}
    shown_metrics = [m for m in metrics if m not in silent] + [m for m in metrics if m in silent]
    # what ran, what it trained on and what training cost: each cell once (a decoder's view of a
    # cell, harness.decoding.stage, trained nothing); decoding has its own table
    trained = [c for c in cells if c.decoder == "greedy"]
    data = data_frame(trained)
    facts = facts_.header(trained)
    cost = facts_.cost_rows(trained)
    from harness.decoding.stage import speed_rows

    decoding = speed_rows(cells)
    per_model_cost, total_cost = facts_.cost_summary(cost)
    shown = facts_.samples(cells, hypotheses)
    cell_ci, group_ci = facts_.intervals(cells, hypotheses)
    sd_of = {(r.protocol, r.model, r.dataset, r.language): (r.mean, r.sd, int(r.n))
             for r in summary.itertuples(index=False) if r.metric == "cer" and r.split == "test"}
    across = summaries_.across_languages(summary, direction)
    curve_rows = selection_.learning_curve_rows(selection, swept_cells) if selection is not None else []
    paths = {"csv": out_dir / "matrix.csv", "json": out_dir / "matrix.json", "md": out_dir / "matrix.md",
             "tex": out_dir / "matrix.tex", "html": out_dir / "report.html"}
    summary.to_csv(paths["csv"], index=False)
    payload = {
        "bench_version": __version__,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "header": dict(facts),
        "metrics": {m: {"lower_is_better": direction[m]} for m in metrics},
        "cells": [
            {"key": c.key, "protocol": c.protocol, "model": c.model, "dataset": c.dataset, "language": c.language,
             "seed": c.seed, "decoder": c.decoder,
             "decoding": c.record.decoding.to_json() if c.record.decoding is not None else None,
             "metrics": c.metrics, "metric_versions": dict(c.record.metric_versions),
             "blank_output": is_blank(c.record), "outputs": dict(c.record.outputs),
             "cer_test_interval": cell_ci[c.key].as_dict() if c.key in cell_ci else None,
             "cer_test_by_gender": ({g: v.as_dict() for g, v in by_gender[c.key].items()}
                                    if c.key in by_gender else None),
             "layer_weights": c.record.train.to_json().get("layer_weights"),
             "loss_curve": list(c.record.train.loss_curve) or None,
             "dev_curve": [list(point) for point in c.record.train.dev_curve] or None,
             "selected_update": c.record.train.selected_update,
             "git_revision": c.record.git_revision, "finished_at": c.finished_at,
             "duration_s": c.duration_s}
            for c in cells
        ],
        "summary": summary.to_dict(orient="records"),
        "intervals": [
            {"protocol": p, "model": m, "dataset": d, "language": lang, "metric": "cer", "split": "test",
             "mean": sd_of.get((p, m, d, lang), (None,))[0], "sd": sd_of.get((p, m, d, lang), (None, None))[1],
             "n": sd_of.get((p, m, d, lang), (None, None, None))[2], **interval.as_dict()}
            for (p, m, d, lang), interval in sorted(group_ci.items())
        ],
        "cost": {"cells": cost, "models": per_model_cost, "total": total_cost},
        "decoding": decoding,
        "samples": shown,
        "data": data.to_dict(orient="records"),
        "findings": {d: [f.as_dict() for f in items] for d, items in found.items()},
        "statistics": {"correction": correction_note(found) if found else None,
                       "uninformative_metrics": {m: why for m, why in silent.items()}},
        "across_languages": [item.as_dict() for item in across],
        "questions": {g: [_adjusted(a, found.get(g, [])).as_dict() for a in items] for g, items in asked.items()},
    }
    if selection is not None:
        payload["sweep"] = {
            "axes": [{"key": a.key, "values": list(a.values), "chosen_on_dev": not a.is_data_amount}
                     for a in selection.axes],
            "metric": selection.metric, "split": selection_.CHOICE_SPLIT, "statement": selection.statement(),
            "choices": [choice.as_dict() for choice in selection.choices],
            "learning_curves": curve_rows,
            "cells": [{"key": c.key, "protocol": c.protocol, "model": c.model, "dataset": c.dataset,
                       "language": c.language, "seed": c.seed, "point": dict(selection.point_by_key.get(c.key, ())),
                       "chosen": c.key in selection.chosen_keys, "metrics": c.metrics} for c in swept_cells],
        }
    text = json.dumps(payload, indent=2, default=float) + "\n"
    paths["json"].write_text(text)
    if json_copy is not None:
        json_copy.parent.mkdir(parents=True, exist_ok=True)
        json_copy.write_text(text)
        paths["baseline"] = json_copy
    md = ["# bench results\n", "## What ran\n", page_.facts_markdown(facts)]
    for group, items in found.items():
        md.append(f"## Statistics ({group}, {metrics[0].upper()} on test)\n")
        md += [f"- {f.text()}" for f in items]
        md.append("")
    if found:
        md.append(f"Statistics: {correction_note(found)}\n")
    md += [f"Note: {why}\n" for why in silent.values()]
    tex = []
    blocks = page_.findings_html(found, metrics[0], correction_note(found) if found else "",
                                 list(silent.values())) if metrics else []
    if asked:
        _question_blocks(asked, found, out_dir, paths, md, blocks)
    if selection is not None:
        _sweep_blocks(selection, swept_cells, curve_rows, out_dir, paths, md, blocks)
    datasets = sorted({c.dataset for c in cells})
    for protocol in protocols:
        named = len(protocols) > 1 or protocol != DEFAULT_PROTOCOL
        suffix = f" — protocol {protocol}" if named else ""
        tag = f"_{protocol}" if named else ""
        for metric in shown_metrics:
            for split in ("test", "dev"):
                m = matrix(summary, metric, split, direction[metric], protocol)
                if not m.models:
                    continue
                title = (f"{metric.upper()} ({split}){suffix}, mean ± sd over seeds; best per language in bold "
                         f"({m.direction()})")
                chosen = selection.statement() if selection is not None else ""
                note = " ".join(part for part in (chosen, silent.get(metric, ""), m.footnote()) if part)
                md += [f"## {title}\n", tabulate([_families_row(m), *m.rows(lambda t: f"**{t}**")],
                                                 headers=["model", *m.columns], tablefmt="github",
                                                 disable_numparse=True) + "\n" + (f"\n{note}\n" if note else "")]
                tex.append(latex_table(m))
                body = page_.scroll(tabulate([_families_row(m), *_html_rows(m)], headers=["model", *m.columns],
                                             tablefmt="unsafehtml", disable_numparse=True))
                body += f"<p class='caption'>{html_escape(note)}</p>" if note else ""
                if split == "test":
                    png = heatmap(m, out_dir / f"heatmap_{metric}{tag}.png")
                    paths[f"heatmap_{metric}{tag}"] = png
                    body += page_.figure_html(png, f"{metric.upper()} heatmap{suffix}", _caption(m))
                blocks.append((title, body))
                if split == "test" and metric == "cer" and group_ci:
                    ci_title = (f"CER (test){suffix}: mean ± sd over seeds and 95 % bootstrap interval over test "
                                f"utterances")
                    ci_note = ("Each interval resamples the test utterances with replacement (1000 times, seeded "
                               "by the test set) and recomputes the corpus-level CER, averaged over seeds: it shows "
                               "how much the score depends on the test sample; ± sd shows how much on training "
                               "noise.")
                    rows = interval_rows(m, group_ci, datasets)
                    md += [f"## {ci_title}\n", ci_note + "\n",
                           tabulate(rows, headers=["model", *m.columns], tablefmt="github", disable_numparse=True)
                           + "\n"]
                    blocks.append((ci_title, f"<p class='caption'>{html_escape(ci_note)}</p>"
                                   + page_.html_table(["model", *m.columns], rows)))
                if split == "test":
                    md.append(f"### Ranking of models per language ({metric.upper()}, test{suffix}, {m.direction()})\n")
                    md.append(tabulate([[c, ", ".join(f"{r}. {model} ({mean:.3f}{' ' + BLANK_MARK if blank else ''})"
                                                      for r, model, mean, blank in ranked)]
                                        for c, ranked in rankings(m).items()], headers=["language", "ranking"],
                                       tablefmt="github") + "\n")
    if by_gender:
        heads, rows = gender_.table_rows(cells, by_gender, lambda c: c.model if len(protocols) == 1
                                         else f"{c.model} ({c.protocol})")
        title = "CER (test) by speaker gender, mean over seeds"
        note = ("Per model and dataset:language: the CER of the test utterances of female (F), male (M) and other "
                "(O) speakers, as the dataset records them, each the corpus-level CER over that gender's utterances "
                "(their number in brackets); the finding above tests female − male over model × language pairs.")
        md += [f"## {title}\n", note + "\n", page_.md_table(heads, rows) + "\n"]
        blocks.append((title, f"<p class='caption'>{html_escape(note)}</p>" + page_.html_table(heads, rows)))
    for metric in shown_metrics[:1]:
        heads, rows = summaries_.summary_rows(across, metric, "test")
        if rows:
            title = f"{metric.upper()} (test) across languages: macro-average, worst languages, spread"
            note = ("Per model, over the languages it has results for (each language counts once): the mean, the "
                    f"worst languages ({'highest' if direction[metric] else 'lowest'} {metric.upper()}) and their "
                    "mean, and how far apart its best and worst language are.")
            md += [f"## {title}\n", note + "\n", page_.md_table(heads, rows) + "\n"]
            blocks.append((title, f"<p class='caption'>{html_escape(note)}</p>" + page_.html_table(heads, rows)))
    weights_png = layer_weights_figure(trained, out_dir / "layer_weights.png")
    if weights_png is not None:
        paths["layer_weights"] = weights_png
        blocks.append(("Layer weights learned by the superb protocol", page_.figure_html(
            weights_png, "layer weights", "Per model, one column per language: the softmax weight the downstream "
                                          "gave each upstream layer (bottom: transformer input); brighter = more.")))
        md += ["## Layer weights (superb)\n", "![layer weights](layer_weights.png)\n"]
    curves_png = facts_.loss_figure(trained, out_dir / "loss_curves.png")
    if curves_png is not None:
        paths["loss_curves"] = curves_png
        caption = ("One panel per model (row) and language (column), one line per seed: the training loss falling "
                   "means the model learns; a flat line near the start means it has not left the blank plateau.")
        blocks.append(("Training curves", page_.figure_html(curves_png, "training loss curves", caption)))
        md += ["## Training curves\n", f"![training loss curves](loss_curves.png)\n\n{caption}\n"]
    empty_head, empty_rows = facts_.empty_table(cells)
    empty_note = ("Share of empty test hypotheses per cell (one value per seed, in seed order); "
                  f"at least {BLANK_SHARE:.0%} flags blank output.")
    md += ["## What the models output\n", empty_note + "\n", page_.md_table(empty_head, empty_rows) + "\n"]
    outputs_html = f"<p class='caption'>{html_escape(empty_note)}</p>" + page_.html_table(empty_head, empty_rows)
    if any(group["utterances"] for group in shown):
        md.append(page_.samples_markdown(shown))
        outputs_html += page_.samples_html(shown)
    blocks.append(("What the models output", outputs_html))
    model_head, model_rows, cell_head, cell_rows, total = facts_.cost_tables(cost, set(protocols))
    cost_note = ("Seconds per model summed over its cells: training, feature encoding (frozen encoder outputs "
                 "cached once), evaluation (dev and test) and the cell's wall time; audio s / s is seconds of "
                 "training audio processed per second of training.")
    md += ["## Cost\n", total + "\n", cost_note + "\n", page_.md_table(model_head, model_rows) + "\n",
           "### Per cell\n", page_.md_table(cell_head, cell_rows) + "\n"]
    blocks.append(("Cost", f"<p>{html_escape(total)}</p><p class='caption'>{html_escape(cost_note)}</p>"
                   + page_.html_table(model_head, model_rows)
                   + f"<details><summary>per cell ({len(cell_rows)} cells)</summary>"
                   + page_.html_table(cell_head, cell_rows) + "</details>"))
    if decoding:
        head, rows, note = decoding_table(decoding)
        md += ["### Decoding\n", note + "\n", page_.md_table(head, rows) + "\n"]
        blocks.append(("Cost of decoding", f"<p class='caption'>{html_escape(note)}</p>" + page_.html_table(head, rows)))
    if not data.empty:
        title = "Data: languages and what the cells trained and tested on (mean over cells)"
        exhausted = (data["train_exhausted"] != "no").any()
        md += [f"## {title}\n", _data_table(data, "github") + "\n"]
        if exhausted:
            md.append(f"Note: {EXHAUSTED_NOTE}.\n")
        parallel = parallel_notes(cells)
        md += [f"Note: {note}.\n" for note in parallel]
        blocks.append((title, page_.scroll(_data_table(data, "html"))
                       + (f"<p><b>Note:</b> {EXHAUSTED_NOTE}.</p>" if exhausted else "")
                       + "".join(f"<p><b>Note:</b> {html_escape(note)}.</p>" for note in parallel)))
    paths["md"].write_text("\n".join(md))
    paths["tex"].write_text("\n".join(tex))
    paths["html"].write_text(page_.page(facts, blocks))
    return paths


def _sweep_blocks(selection, swept_cells: Sequence[StoredCell], curve_rows, out_dir: Path, paths: dict, md: list,
                  blocks: list) -> None:
    """The report's part on a sweep: the choices made on dev (grid-edge choices flagged), the
    sensitivity picture and the data-regime learning curves."""
    from harness.report import page as page_
    from harness.report import selection as selection_

    if selection.tuned:
        heads, rows = selection_.choice_rows(selection, swept_cells)
        title = "Choices made on dev"
        edge = selection.edge_choices()
        note = selection.statement() + (
            f" {len(edge)} of {len(selection.choices)} choices are at the edge of their grid: the best value may lie "
            "beyond it — widen the grid." if edge else " No choice is at the edge of its grid.")
        md += [f"## {title}\n", note + "\n", page_.md_table(heads, rows) + "\n"]
        body = f"<p class='caption'>{html_escape(note)}</p>" + page_.html_table(heads, rows)
        png = selection_.sensitivity_figure(selection, out_dir / "sensitivity.png")
        if png is not None:
            paths["sensitivity"] = png
            caption = ("Per model, the dev metric (mean over seeds) against each swept setting, one line per "
                       "language; the star marks the value chosen. A flat line: the model does not care; a minimum "
                       "at the end of a line: the grid is too narrow.")
            body += page_.figure_html(png, "sensitivity to the swept settings", caption)
            md.append(f"![sensitivity](sensitivity.png)\n\n{caption}\n")
        blocks.append((title, body))
    if curve_rows:
        png = selection_.learning_curve_figure(curve_rows, out_dir / "learning_curves.png")
        title = "Learning curves: the metric against the amount of training data"
        caption = ("Per language, one line per model: test metric (mean ± sd over seeds, at the values chosen on dev "
                   "for each amount) against the training amount, log scale.")
        heads = ["model", "dataset", "language", "setting", "amount", "mean", "sd", "seeds"]
        rows = [[r["model"] if r["protocol"] == "finetune" else f"{r['model']} [{r['protocol']}]", r["dataset"],
                 r["language"], r["axis"], f"{r['amount']:g}", f"{r['mean']:.3f}", f"{r['sd']:.3f}", str(r["n"])]
                for r in curve_rows]
        body = f"<p class='caption'>{html_escape(caption)}</p>"
        if png is not None:
            paths["learning_curves"] = png
            body += page_.figure_html(png, "learning curves", caption)
            md.append(f"## {title}\n\n![learning curves](learning_curves.png)\n\n{caption}\n")
        body += page_.html_table(heads, rows)
        md.append(page_.md_table(heads, rows) + "\n")
        blocks.append((title, body))


def _adjusted(answer: Any, group_findings: Sequence[Any]) -> Any:
    """The answer with its findings as the page's correction left them."""
    import dataclasses

    by_sentence = {(f.topic, f.sentence): f for f in group_findings}
    return dataclasses.replace(answer, findings=tuple(by_sentence.get((f.topic, f.sentence), f)
                                                      for f in answer.findings))


def _question_blocks(asked: Mapping[str, Sequence[Any]], found: Mapping[str, Sequence[Any]], out_dir: Path,
                     paths: dict, md: list, blocks: list) -> None:
    """The page's "Open questions" part: per answer its question, findings, picture, table and limits."""
    from harness.report import page as page_

    several = len(asked) > 1
    for group, items in asked.items():
        for answer in items:
            answer = _adjusted(answer, found.get(group, []))
            title = f"Open question: {answer.title}" + (f" ({group})" if several else "")
            body = f"<p class='lead'>{html_escape(answer.question)}</p><ul>"
            body += "".join(f"<li class='{'sig' if f.significant else 'ns'}'>{html_escape(f.text())}</li>"
                            for f in answer.findings) + "</ul>"
            md += [f"## {title}\n", f"{answer.question}\n"] + [f"- {f.text()}" for f in answer.findings] + [""]
            if answer.figure is not None:
                paths[f"question_{answer.key}"] = answer.figure
                body += page_.figure_html(answer.figure, answer.title, answer.caption)
                md.append(f"![{answer.title}]({answer.figure.name})\n\n{answer.caption}\n")
            if answer.rows:
                body += page_.html_table(list(answer.headers), [list(r) for r in answer.rows])
                md.append(page_.md_table(list(answer.headers), [list(r) for r in answer.rows]) + "\n")
            body += "".join(f"<p class='caption'><b>Limits:</b> {html_escape(x)}</p>" for x in answer.limits)
            md += [f"Limits: {x}\n" for x in answer.limits]
            blocks.append((title, body))
