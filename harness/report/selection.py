"""Choices made on dev: which swept value each model gets, decided without looking at test.

For each protocol x model x dataset x language (and data regime), every point of the swept
settings is scored by its mean dev metric over the seeds it has; the best point (honouring the
metric's direction; a point whose dev output is blank for most seeds ranks after any that
transcribes something; ties go to the first in grid order) is chosen, and the report shows test
at that point only. :func:`select_on_dev` reads nothing but dev scores — the tests plant test
scores that disagree with dev to hold it to that.

A dataset's training amount (``train_hours``, ``train_minutes``) is never chosen: it is a data
regime, kept apart (:func:`regime_cells` names each regime's dataset ``synthetic
[train_minutes=2]``, so matrices, statistics and comparisons treat it as data of its own) and
drawn as a learning curve (:func:`learning_curve_figure`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.plan.sweep import Point, SweepAxis, format_value, point_label, sorted_values, value_in_identity
from harness.engine.scoring import is_blank
from harness.store.results import StoredCell

#: the split choices are made on; never "test"
CHOICE_SPLIT = "dev"

Group = tuple[str, str, str, str, Point]  # protocol, model, dataset, language, regime


@dataclass(frozen=True)
class Candidate:
    """One point of a group's grid: its dev score (mean over seeds) and how many seeds had it."""

    point: Point
    dev: float
    seeds: int
    #: seeds whose dev output was (almost) only blanks
    blank: int = 0


@dataclass(frozen=True)
class Choice:
    """The point chosen on dev for one protocol x model x dataset x language (x regime)."""

    protocol: str
    model: str
    dataset: str
    language: str
    #: the data-amount values of this regime (empty without a data-amount sweep)
    regime: Point
    chosen: Point
    #: every point scored, in grid order
    candidates: tuple[Candidate, ...]
    #: swept keys whose chosen value is the smallest or largest of its grid
    at_edge: tuple[str, ...] = ()
    #: how many points the grid has (more than ``candidates`` while cells are missing)
    grid_points: int = 0

    @property
    def incomplete(self) -> bool:
        """Whether some points of the grid have no dev score yet (cells not run, or failed)."""
        return len(self.candidates) < self.grid_points

    def note(self) -> str:
        parts = []
        if self.incomplete:
            parts.append(f"only {len(self.candidates)} of {self.grid_points} grid points scored on dev")
        if self.at_edge:
            parts.append("best at the grid's edge (" + ", ".join(self.at_edge) + "): widen it")
        return "; ".join(parts)

    @property
    def dev(self) -> float:
        return next(c.dev for c in self.candidates if c.point == self.chosen)

    def as_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "model": self.model, "dataset": self.dataset, "language": self.language,
                "regime": dict(self.regime), "chosen": dict(self.chosen), "dev": self.dev,
                "at_edge": list(self.at_edge), "grid_points": self.grid_points,
                "candidates": [{"point": dict(c.point), "dev": c.dev, "seeds": c.seeds, "blank_seeds": c.blank}
                               for c in self.candidates]}


@dataclass(frozen=True)
class Selection:
    axes: tuple[SweepAxis, ...]
    metric: str
    lower_is_better: bool
    choices: tuple[Choice, ...]
    #: keys of the cells at the chosen points (every seed)
    chosen_keys: frozenset[str]
    #: every cell's point, by key
    point_by_key: Mapping[str, Point] = dataclasses.field(default_factory=dict)

    @property
    def tuned(self) -> tuple[SweepAxis, ...]:
        """The axes chosen on dev (not data amounts)."""
        return tuple(a for a in self.axes if not a.is_data_amount)

    @property
    def regimes(self) -> tuple[SweepAxis, ...]:
        return tuple(a for a in self.axes if a.is_data_amount)

    def statement(self) -> str:
        """``train.lr chosen on dev (CER) from {3e-05, 0.0001, 0.0003}`` — what every table says."""
        if not self.tuned:
            return ""
        grids = "; ".join(f"{a.key} from {a.grid()}" for a in self.tuned)
        return (f"Chosen on dev ({self.metric.upper()}, mean over seeds) per model and language: {grids}; "
                "test is reported at the chosen value only.")

    def edge_choices(self) -> list[Choice]:
        return [c for c in self.choices if c.at_edge]


def point_of(cell: StoredCell, axes: Sequence[SweepAxis], points: Mapping[str, Point] | None = None) -> Point:
    """A stored cell's point: from the plan when it is known there, else read from its identity."""
    if points and cell.key in points:
        return tuple(points[cell.key])
    return tuple((a.key, value_in_identity(cell.record.identity, a.key)) for a in axes)


def _split_point(point: Point, axes: Sequence[SweepAxis]) -> tuple[Point, Point]:
    regime_keys = {a.key for a in axes if a.is_data_amount}
    return (tuple((k, v) for k, v in point if k in regime_keys),
            tuple((k, v) for k, v in point if k not in regime_keys))


def _grid_order(point: Point, axes: Sequence[SweepAxis]) -> tuple:
    order = []
    for key, value in point:
        axis = next(a for a in axes if a.key == key)
        ranked = sorted_values(axis.values)
        order.append(ranked.index(value) if value in ranked else len(ranked))
    return tuple(order)


def select_on_dev(cells: Sequence[StoredCell], axes: Sequence[SweepAxis], metric: str = "cer",
                  lower_is_better: bool = True, points: Mapping[str, Point] | None = None) -> Selection:
    """Choose, per group, the tuned point with the best mean dev ``metric`` over seeds.

    Only ``cell.metrics["dev"]`` and the dev outputs are read. Cells without a dev score for
    ``metric`` do not take part; a group none of whose points has one gets no choice (and its
    cells are left out of the chosen ones)."""
    axes = tuple(axes)
    scores: dict[Group, dict[Point, list[tuple[float, bool]]]] = {}
    members: dict[tuple[Group, Point], list[str]] = {}
    point_by_key = {c.key: point_of(c, axes, points) for c in cells}
    for c in cells:
        regime, tuned = _split_point(point_by_key[c.key], axes)
        group = (c.protocol, c.model, c.dataset, c.language, regime)
        members.setdefault((group, tuned), []).append(c.key)
        value = c.metrics.get(CHOICE_SPLIT, {}).get(metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        scores.setdefault(group, {}).setdefault(tuned, []).append((float(value), is_blank(c.record, CHOICE_SPLIT)))
    tuned_axes = [a for a in axes if not a.is_data_amount]
    sign = 1.0 if lower_is_better else -1.0
    choices = []
    chosen_keys: set[str] = set()
    for group, by_point in sorted(scores.items(), key=lambda item: repr(item[0])):
        candidates = sorted(
            (Candidate(p, sum(v for v, _ in vals) / len(vals), len(vals), sum(b for _, b in vals))
             for p, vals in by_point.items()),
            key=lambda cand: _grid_order(cand.point, tuned_axes))
        best = min(candidates, key=lambda cand: (cand.blank * 2 > cand.seeds, sign * cand.dev,
                                                 _grid_order(cand.point, tuned_axes)))
        edges = []
        for key, value in best.point:
            axis = next(a for a in tuned_axes if a.key == key)
            bounds = axis.edges()
            if bounds is not None and value in bounds:
                edges.append(key)
        protocol, model, dataset, language, regime = group
        grid_points = 1
        for axis in tuned_axes:
            grid_points *= len(axis.values)
        choices.append(Choice(protocol, model, dataset, language, regime, best.point, tuple(candidates), tuple(edges),
                              grid_points))
        chosen_keys.update(members[(group, best.point)])
    return Selection(axes, metric, lower_is_better, tuple(choices), frozenset(chosen_keys), point_by_key)


def regime_name(dataset: str, regime: Point) -> str:
    """The dataset of a data regime as reports show it: ``synthetic [train_minutes=2]``."""
    return f"{dataset} [{point_label(regime)}]" if regime else dataset


def regime_cells(cells: Sequence[StoredCell], axes: Sequence[SweepAxis],
                 points: Mapping[str, Point] | None = None) -> list[StoredCell]:
    """The cells with each data regime's dataset named apart (unchanged without a data-amount sweep)."""
    if not any(a.is_data_amount for a in axes):
        return list(cells)
    out = []
    for c in cells:
        regime, _ = _split_point(point_of(c, axes, points), axes)
        out.append(dataclasses.replace(c, dataset=regime_name(c.dataset, regime)) if regime else c)
    return out


def choice_rows(selection: Selection, cells: Sequence[StoredCell]) -> tuple[list[str], list[list[str]]]:
    """The table of choices: one row per group with the chosen value(s), dev and test there (test
    read only here, after the choice) and the grid-edge flag."""
    test: dict[str, float] = {}
    by_key = {c.key: c for c in cells}
    metric = selection.metric
    heads = ["protocol", "model", "dataset", "language", "chosen on dev", f"dev {metric.upper()}",
             f"test {metric.upper()}", "grid", "note"]
    rows = []
    for choice in selection.choices:
        keys = [c.key for c in cells if c.key in selection.chosen_keys and c.model == choice.model
                and c.language == choice.language and c.dataset == choice.dataset and c.protocol == choice.protocol
                and _split_point(selection.point_by_key[c.key], selection.axes)[0] == choice.regime]
        values = [by_key[k].metrics.get("test", {}).get(metric) for k in keys]
        values = [v for v in values if v is not None]
        test[repr(choice)] = sum(values) / len(values) if values else float("nan")
        note = choice.note()
        rows.append([choice.protocol, choice.model, regime_name(choice.dataset, choice.regime), choice.language,
                     point_label(choice.chosen), f"{choice.dev:.3f}", f"{test[repr(choice)]:.3f}",
                     "; ".join(a.grid() for a in selection.tuned), note])
    return heads, rows


def _log_scale(values: Sequence[float]) -> bool:
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and len(values) > 1 and max(positive) / min(positive) >= 9.5


def sensitivity_figure(selection: Selection, path: Path) -> Path | None:
    """Per model (columns) and tuned numeric setting (rows): the dev metric against the swept
    value, one line per language (other swept settings at their chosen values), the chosen value
    marked. None when nothing numeric was tuned."""
    axes = [a for a in selection.tuned if a.numeric and len(a.values) > 1]
    if not axes or not selection.choices:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({(c.protocol, c.model) for c in selection.choices})
    width, height = 1.2 + 2.8 * len(models), 0.9 + 2.2 * len(axes)
    fig, grid = plt.subplots(len(axes), len(models), figsize=(width, height), dpi=90, squeeze=False)
    fig.subplots_adjust(left=0.9 / width, right=1 - 0.2 / width, bottom=0.7 / height, top=1 - 0.6 / height,
                        wspace=0.3, hspace=0.45)
    for i, axis in enumerate(axes):
        for j, (protocol, model) in enumerate(models):
            ax = grid[i][j]
            for choice in (c for c in selection.choices if (c.protocol, c.model) == (protocol, model)):
                others = {k: v for k, v in choice.chosen if k != axis.key}
                line = sorted((dict(c.point)[axis.key], c.dev) for c in choice.candidates
                              if {k: v for k, v in c.point if k != axis.key} == others)
                if not line:
                    continue
                label = choice.language + (f" {regime_name(choice.dataset, choice.regime)}" if choice.regime else "")
                drawn = ax.plot([x for x, _ in line], [y for _, y in line], marker="o", markersize=3, linewidth=1.0,
                                label=label)
                ax.plot([dict(choice.chosen)[axis.key]], [choice.dev], marker="*", markersize=10,
                        color=drawn[0].get_color())
            if _log_scale(axis.values):
                ax.set_xscale("log")
                ax.minorticks_off()  # the grid's own values as ticks (log minor labels pile up on a short range)
            numeric = [v for v in axis.values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if numeric:
                ax.set_xticks(numeric, [f"{v:g}" for v in numeric])
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.set_xlabel(axis.key, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"dev {selection.metric.upper()}", fontsize=8)
            if i == 0:
                ax.set_title(model if protocol == "finetune" else f"{model} [{protocol}]", fontsize=9)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6)
    fig.suptitle(f"sensitivity: dev {selection.metric.upper()} (mean over seeds) against each swept setting; "
                 "★ the value chosen", fontsize=9, x=0.01, ha="left")
    fig.savefig(path)
    plt.close(fig)
    return path


def learning_curve_rows(selection: Selection, cells: Sequence[StoredCell],
                        split: str = "test") -> list[dict[str, Any]]:
    """Per data-amount axis, model and language: the metric (mean and sd over seeds) at each
    training amount, at the tuned values chosen on dev for that amount."""
    rows = []
    chosen = [c for c in cells if c.key in selection.chosen_keys]
    for axis in selection.regimes:
        groups: dict[tuple, list[float]] = {}
        for c in chosen:
            value = c.metrics.get(split, {}).get(selection.metric)
            amount = dict(selection.point_by_key.get(c.key, ())).get(axis.key)
            if value is None or amount is None:
                continue
            groups.setdefault((c.protocol, c.model, c.dataset, c.language, amount), []).append(float(value))
        for (protocol, model, dataset, language, amount), values in sorted(groups.items(), key=repr):
            mean = sum(values) / len(values)
            sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
            rows.append({"axis": axis.key, "protocol": protocol, "model": model, "dataset": dataset,
                         "language": language, "amount": amount, "split": split, "metric": selection.metric,
                         "mean": mean, "sd": sd, "n": len(values)})
    return rows


def learning_curve_figure(rows: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Per language (columns) and data-amount setting (rows): the test metric against the
    training amount (log scale), one line per model, the band ± sd over seeds."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_keys = sorted({r["axis"] for r in rows})
    columns = sorted({(r["dataset"], r["language"]) for r in rows})
    width, height = 1.2 + 2.8 * len(columns), 0.9 + 2.2 * len(axes_keys)
    fig, grid = plt.subplots(len(axes_keys), len(columns), figsize=(width, height), dpi=90, squeeze=False,
                             sharey=True)
    fig.subplots_adjust(left=0.9 / width, right=1 - 0.2 / width, bottom=0.7 / height, top=1 - 0.6 / height,
                        wspace=0.15, hspace=0.45)
    for i, key in enumerate(axes_keys):
        for j, (dataset, language) in enumerate(columns):
            ax = grid[i][j]
            here = [r for r in rows if r["axis"] == key and (r["dataset"], r["language"]) == (dataset, language)]
            for protocol, model in sorted({(r["protocol"], r["model"]) for r in here}):
                line = sorted((r["amount"], r["mean"], r["sd"]) for r in here
                              if (r["protocol"], r["model"]) == (protocol, model))
                xs = [x for x, _, _ in line]
                ys = [y for _, y, _ in line]
                drawn = ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.0,
                                label=model if protocol == "finetune" else f"{model} [{protocol}]")
                ax.fill_between(xs, [y - s for _, y, s in line], [y + s for _, y, s in line], alpha=0.15,
                                color=drawn[0].get_color())
            if all(r["amount"] > 0 for r in here):
                ax.set_xscale("log")
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.set_xlabel(key.split(".")[-1], fontsize=8)
            if i == 0:
                ax.set_title(f"{dataset}:{language}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{rows[0]['split']} {rows[0]['metric'].upper()}", fontsize=8)
    handles, labels = grid[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=7, ncol=min(len(handles), 4))
    fig.suptitle("learning curves: test metric against the training amount (log scale), mean ± sd over seeds",
                 fontsize=9, x=0.01, ha="left")
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["CHOICE_SPLIT", "Candidate", "Choice", "Selection", "choice_rows", "format_value", "learning_curve_figure",
           "learning_curve_rows", "point_of", "regime_cells", "regime_name", "select_on_dev", "sensitivity_figure"]
