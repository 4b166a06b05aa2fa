"""What a report says besides the matrix: what ran (header), what it cost, what the models output,
how training went (loss curves) and how sure each score is (bootstrap intervals).

Everything comes from the stored records (:class:`harness.store.results.StoredCell`) and the stored test
hypotheses handed in by the caller; nothing here opens the store. A value that differs across
cells is shown with each of its values and how many cells have it, never as one of them.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import __version__
from harness.report.bootstrap import EditCounts, Interval, interval_of, mean_interval_of
from harness.languages import language
from harness.plan.cells import DEFAULT_PROTOCOL
from harness.store.results import StoredCell

Rows = Sequence[tuple[str, str, str]]

#: test utterances shown per model x language
SAMPLES = 3
#: updates between two points of a stored loss curve (see harness.engine.fit)
LOSS_EVERY = 25


# ---------------------------------------------------------------------------- helpers
def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return "-" if value is None else str(value)


def distinct(values: Sequence[Any]) -> str:
    """One value as itself; several as "N values: a (k cells); b (m cells)"."""
    counts = Counter(_text(v) for v in values)
    if not counts:
        return "-"
    if len(counts) == 1:
        return next(iter(counts))
    return f"{len(counts)} values: " + "; ".join(f"{v} ({n} cell{'s' * (n != 1)})" for v, n in sorted(counts.items()))


def _per_key(dicts: Sequence[Mapping[str, Any]]) -> str:
    """key=value pairs; a key whose value differs across cells shows each value."""
    keys = sorted({k for d in dicts for k in d})
    return ", ".join(f"{k}={distinct([d.get(k) for d in dicts])}" for k in keys) or "-"


def label(cell: StoredCell, protocols: set[str]) -> str:
    """The model's name, with its protocol when the report has several (or a non-default one)."""
    return cell.model if protocols <= {DEFAULT_PROTOCOL} else f"{cell.model} ({cell.protocol})"


def _column(cell: StoredCell, datasets: set[str]) -> str:
    return cell.language if len(datasets) == 1 else f"{cell.dataset}:{cell.language}"


def _columns(cells: Sequence[StoredCell]) -> list[str]:
    datasets = {c.dataset for c in cells}
    keyed = {_column(c, datasets): (c.dataset, c.language) for c in cells}
    return sorted(keyed, key=lambda col: (language(keyed[col][1]).family, *keyed[col]))


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _machine(cell: StoredCell) -> str:
    m = cell.record.machine
    parts = [m.get("gpu") or m.get("cpu") or m.get("processor") or "?"]
    if m.get("cpu_capability"):
        parts.append(f"kernels {m['cpu_capability']}")
    if m.get("torch_threads"):
        parts.append(f"{m['torch_threads']} threads")
    parts.append(f"device {cell.record.device}")
    if m.get("python"):
        parts.append(f"Python {m['python']}")
    return ", ".join(parts)


def _identity(cell: StoredCell) -> dict:
    return cell.record.identity


# ---------------------------------------------------------------------------- header
def header(cells: Sequence[StoredCell]) -> list[tuple[str, str]]:
    """(label, text) lines saying what the report is about."""
    protocols = {c.protocol for c in cells}
    # a language is counted once however many datasets it comes from; datasets are their own dimension
    dims = [(len({c.model for c in cells}), "model"), (len({c.language for c in cells}), "language")]
    if len({c.dataset for c in cells}) > 1:
        dims.append((len({c.dataset for c in cells}), "dataset"))
    dims.append((len({c.seed for c in cells}), "seed"))
    if len(protocols) > 1:
        dims.append((len(protocols), "protocol"))
    full = math.prod(n for n, _ in dims)
    gaps = f" (not a full matrix: {full - len(cells)} of {full} combinations have no result)" if full > len(cells) else ""
    out: list[tuple[str, str]] = [("cells", f"{len(cells)}: " + " × ".join(f"{n} {what}{'s' * (n != 1)}"
                                                                          for n, what in dims) + gaps),
                                  ("preset", distinct([c.record.preset for c in cells]))]
    by_protocol: dict[str, list[StoredCell]] = {}
    for c in cells:
        by_protocol.setdefault(c.protocol, []).append(c)
    out.append(("protocols", "; ".join(
        f"{p} version {distinct([_identity(c).get('protocol', {}).get('version') for c in members])}"
        + (f" ({_per_key([_identity(c).get('protocol', {}).get('options', {}) for c in members])})"
           if any(_identity(c).get("protocol", {}).get("options") for c in members) else "")
        for p, members in sorted(by_protocol.items()))))
    by_model: dict[str, list[StoredCell]] = {}
    for c in cells:
        by_model.setdefault(c.model, []).append(c)
    for model, members in sorted(by_model.items()):
        meta = [_identity(c).get("model", {}).get("metadata", {}) for c in members]
        options = [_identity(c).get("model", {}).get("options", {}) for c in members]
        text = _per_key(meta)
        if any(options):
            text += f"; options: {_per_key(options)}"
        out.append((f"model {model}", text))
    by_dataset: dict[str, list[StoredCell]] = {}
    for c in cells:
        by_dataset.setdefault(c.dataset, []).append(c)
    for dataset, members in sorted(by_dataset.items()):
        langs: dict[str, list[StoredCell]] = {}
        for c in members:
            langs.setdefault(c.language, []).append(c)
        hours = "; ".join(
            f"{code} {distinct([_hours(c) for c in group])}"
            for code, group in sorted(langs.items(), key=lambda kv: (language(kv[0]).family, kv[0])))
        version = distinct([_identity(c).get("dataset", {}).get("version") for c in members])
        options = _per_key([_identity(c).get("dataset", {}).get("options", {}) for c in members])
        out.append((f"dataset {dataset}", f"version {version}; {options}"))
        out.append((f"train hours ({dataset})", hours))
    out.append(("recipe", _per_key([_identity(c).get("train", {}) for c in cells])))
    out.append(("seeds", ", ".join(str(s) for s in sorted({c.seed for c in cells}))))
    out.append(("bench", f"version {distinct([c.record.packages.get('bench') for c in cells])}, "
                         f"git revision {distinct([c.record.git_revision for c in cells])} "
                         f"(this report by bench {__version__})"))
    packages = [{k: v for k, v in c.record.packages.items() if k != "bench"} for c in cells]
    out.append(("packages", _per_key(packages)))
    out.append(("machines", distinct([_machine(c) for c in cells])))
    if cells:
        first = min(c.finished_at - c.duration_s for c in cells)
        last = max(c.finished_at for c in cells)
        out.append(("ran", f"{_when(first)} – {_when(last)}"))
    return out


def _hours(cell: StoredCell) -> str | None:
    hours = cell.record.data.get("train_hours")
    return f"{hours:.2f} h" if isinstance(hours, (int, float)) else None


# ---------------------------------------------------------------------------- cost
def cost_rows(cells: Sequence[StoredCell]) -> list[dict[str, Any]]:
    """Per cell: training, feature-encoding and evaluation seconds, the cell's wall time, seconds of
    training audio processed and per second of training."""
    rows = []
    for c in sorted(cells, key=lambda c: (c.protocol, c.model, c.dataset, c.language, c.seed)):
        train = c.record.train
        evals = train.eval_seconds or {}
        rows.append({
            "protocol": c.protocol, "model": c.model, "dataset": c.dataset, "language": c.language, "seed": c.seed,
            "device": c.record.device,
            "updates": train.updates,
            "train_s": train.train_seconds, "encode_s": train.encode_seconds,
            "eval_s": sum(evals.values()) if isinstance(evals, Mapping) and evals else None,
            "wall_s": c.duration_s, "audio_s": train.audio_seconds,
            "audio_per_s": train.audio_seconds_per_second,
        })
    return rows


def _sum(rows: Sequence[Mapping], key: str) -> float:
    return float(sum(r[key] for r in rows if isinstance(r.get(key), (int, float))))


def cost_summary(rows: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per model (and protocol) and for the whole matrix: cells, seconds, throughput."""
    groups: dict[tuple[str, str], list[Mapping]] = {}
    for r in rows:
        groups.setdefault((r["protocol"], r["model"]), []).append(r)

    def summarise(part: Sequence[Mapping]) -> dict[str, Any]:
        audio, train = _sum(part, "audio_s"), _sum(part, "train_s")
        return {"cells": len(part), "train_s": train, "encode_s": _sum(part, "encode_s"),
                "eval_s": _sum(part, "eval_s"), "wall_s": _sum(part, "wall_s"), "audio_s": audio,
                "audio_per_s": audio / train if train > 0 else None,
                "devices": sorted({str(r["device"]) for r in part})}

    per_model = [{"protocol": p, "model": m, **summarise(part)} for (p, m), part in sorted(groups.items())]
    return per_model, summarise(rows)


def _fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def cost_tables(rows: Sequence[Mapping[str, Any]], protocols: set[str]) -> tuple[list[str], list[list[str]],
                                                                                   list[str], list[list[str]], str]:
    """(per-model headers, rows, per-cell headers, rows, total sentence), formatted."""
    per_model, total = cost_summary(rows)
    show_protocol = not protocols <= {DEFAULT_PROTOCOL}
    model_head = ["model", "cells", "train s", "encode s", "eval s", "wall s", "audio s / s", "device"]
    model_rows = [[f"{r['model']} ({r['protocol']})" if show_protocol else r["model"], str(r["cells"]),
                   _fmt(r["train_s"]), _fmt(r["encode_s"]), _fmt(r["eval_s"]), _fmt(r["wall_s"]),
                   _fmt(r["audio_per_s"]), ", ".join(r["devices"])] for r in per_model]
    cell_head = ["model", "language", "seed", "device", "updates", "train s", "encode s", "eval s", "wall s",
                 "audio s / s"]
    cell_rows = [[f"{r['model']} ({r['protocol']})" if show_protocol else r["model"],
                  r["language"] if len({x["dataset"] for x in rows}) == 1 else f"{r['dataset']}:{r['language']}",
                  str(r["seed"]), str(r["device"]), _fmt(r["updates"]), _fmt(r["train_s"]), _fmt(r["encode_s"]),
                  _fmt(r["eval_s"]), _fmt(r["wall_s"]), _fmt(r["audio_per_s"])] for r in rows]
    sentence = (f"Total compute: {total['cells']} cells, {duration(total['wall_s'])} of cell time "
                f"({duration(total['train_s'])} training, {duration(total['encode_s'])} feature encoding, "
                f"{duration(total['eval_s'])} evaluation) on {', '.join(total['devices']) or '?'}; "
                f"{total['audio_s'] / 3600:.2f} h of training audio processed"
                + (f", {total['audio_per_s']:.1f} s of audio per second of training." if total["audio_per_s"]
                   else "."))
    return model_head, model_rows, cell_head, cell_rows, sentence


# ---------------------------------------------------------------------------- transcripts
def _rank(utterance: str) -> str:
    return hashlib.sha1(utterance.encode()).hexdigest()


def sample_ids(id_sets: Sequence[set[str]], k: int = SAMPLES) -> list[str]:
    """``k`` utterance ids present in every set, chosen by a hash of the id (so the same ones for
    every model, seed and run), in id order."""
    if not id_sets:
        return []
    common = set.intersection(*id_sets)
    return sorted(sorted(common, key=_rank)[:k])


def diff_ops(reference: str, hypothesis: str) -> list[tuple[str, str, str]]:
    """(op, reference part, hypothesis part) by character: op is equal, delete, insert or replace."""
    matcher = difflib.SequenceMatcher(None, reference, hypothesis, autojunk=False)
    return [(op, reference[i1:i2], hypothesis[j1:j2]) for op, i1, i2, j1, j2 in matcher.get_opcodes()]


def diff_markdown(reference: str, hypothesis: str) -> str:
    """The hypothesis with what it lacks as ``[-x-]`` and what it adds as ``{+y+}``."""
    if not hypothesis.strip():
        return "(empty)"
    out = []
    for op, ref, hyp in diff_ops(reference, hypothesis):
        if op == "equal":
            out.append(hyp)
        if op in ("delete", "replace"):
            out.append(f"[-{ref}-]")
        if op in ("insert", "replace"):
            out.append(f"{{+{hyp}+}}")
    return "".join(out)


def diff_html(reference: str, hypothesis: str) -> str:
    """The hypothesis with what it lacks in ``<del>`` and what it adds in ``<ins>``."""
    from html import escape

    if not hypothesis.strip():
        return "<em>(empty)</em>"
    out = []
    for op, ref, hyp in diff_ops(reference, hypothesis):
        if op == "equal":
            out.append(escape(hyp))
        if op in ("delete", "replace"):
            out.append(f"<del>{escape(ref)}</del>")
        if op in ("insert", "replace"):
            out.append(f"<ins>{escape(hyp)}</ins>")
    return "".join(out)


def samples(cells: Sequence[StoredCell], hypotheses: Mapping[str, Rows], k: int = SAMPLES) -> list[dict[str, Any]]:
    """Per dataset and language: ``k`` test utterances (the same for every model), their reference
    and each model's hypothesis (its first seed), and each model's share of empty hypotheses per seed."""
    protocols = {c.protocol for c in cells}
    groups: dict[tuple[str, str], list[StoredCell]] = {}
    for c in cells:
        groups.setdefault((c.dataset, c.language), []).append(c)
    out = []
    for (dataset, code), members in sorted(groups.items(), key=lambda kv: (language(kv[0][1]).family, *kv[0])):
        with_rows = [c for c in members if hypotheses.get(c.key)]
        ids = sample_ids([{u for u, _, _ in hypotheses[c.key]} for c in with_rows], k)
        first: dict[str, StoredCell] = {}
        for c in sorted(with_rows, key=lambda c: c.seed):
            first.setdefault(label(c, protocols), c)
        utterances = []
        for utt in ids:
            entry: dict[str, Any] = {"id": utt, "reference": None, "hypotheses": {}}
            for name, c in sorted(first.items()):
                row = next(r for r in hypotheses[c.key] if r[0] == utt)
                entry["reference"] = entry["reference"] if entry["reference"] is not None else row[1]
                entry["hypotheses"][name] = {"seed": c.seed, "text": row[2]}
            utterances.append(entry)
        empty: dict[str, dict[str, float | None]] = {}
        for c in sorted(members, key=lambda c: c.seed):
            share = c.record.outputs.get("test", {}).get("empty_hypotheses")
            empty.setdefault(label(c, protocols), {})[str(c.seed)] = share
        out.append({"dataset": dataset, "language": code, "utterances": utterances, "empty_hypotheses": empty})
    return out


def empty_table(cells: Sequence[StoredCell]) -> tuple[list[str], list[list[str]]]:
    """Model x language: the share of empty test hypotheses, per seed."""
    protocols = {c.protocol for c in cells}
    datasets = {c.dataset for c in cells}
    columns = _columns(cells)
    values: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for c in cells:
        share = c.record.outputs.get("test", {}).get("empty_hypotheses")
        if isinstance(share, (int, float)):
            values.setdefault((label(c, protocols), _column(c, datasets)), []).append((c.seed, share))
    models = sorted({label(c, protocols) for c in cells})
    rows = [[m, *[" / ".join(f"{v:.0%}" for _, v in sorted(values[(m, col)])) if (m, col) in values else "-"
                  for col in columns]] for m in models]
    return ["model", *columns], rows


# ---------------------------------------------------------------------------- loss curves
def loss_figure(cells: Sequence[StoredCell], path: Path) -> Path | None:
    """Training loss per model x language, one line per seed; None when no cell stored a curve."""
    curves = [(c, c.record.train.loss_curve) for c in cells]
    curves = [(c, curve) for c, curve in curves if curve]
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    protocols = {c.protocol for c in cells}
    datasets = {c.dataset for c in cells}
    models = sorted({label(c, protocols) for c, _ in curves})
    columns = _columns([c for c, _ in curves])
    width, height = 1.3 + 2.3 * len(columns), 0.9 + 1.5 * len(models)
    fig, axes = plt.subplots(len(models), len(columns), figsize=(width, height), dpi=90, squeeze=False, sharex=True,
                             sharey=True)
    # fixed margins in inches: no layout engine (it measured every tick label: seconds per page)
    fig.subplots_adjust(left=1.1 / width, right=1 - 0.2 / width, bottom=0.5 / height, top=1 - 0.55 / height,
                        wspace=0.12, hspace=0.15)
    dev_axes: dict[int, Any] = {}  # train.eval_every: dev CER on a second axis of the same panel
    for c, curve in sorted(curves, key=lambda item: item[0].seed):
        ax = axes[models.index(label(c, protocols))][columns.index(_column(c, datasets))]
        updates = c.record.train.updates or LOSS_EVERY * len(curve)
        xs = [min(LOSS_EVERY * (i + 1), updates) for i in range(len(curve))]
        drawn = ax.plot(xs, curve, linewidth=1.0, label=f"seed {c.seed}")
        dev = c.record.train.dev_curve
        if dev:
            twin = dev_axes.setdefault(id(ax), ax.twinx())
            twin.plot([u for u, _ in dev], [v for _, v in dev], linestyle="--", marker=".", linewidth=0.9,
                      color=drawn[0].get_color())
            twin.tick_params(labelsize=6)
            chosen = c.record.train.selected_update
            if chosen is not None:
                twin.plot([chosen], [dict(dev).get(chosen, float("nan"))], marker="*", markersize=8,
                          color=drawn[0].get_color())
    for i, model in enumerate(models):
        axes[i][0].set_ylabel(model, fontsize=8)
        for j, column in enumerate(columns):
            ax = axes[i][j]
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(4, integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(4))
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(column, fontsize=9)
            if i == len(models) - 1:
                ax.set_xlabel("update", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if len(handles) > 1:
        fig.legend(handles, labels, loc="upper right", fontsize=7, ncol=min(len(handles), 5))
    title = "training loss (CTC, mean over each 25 updates)"
    if dev_axes:
        title += "; dashed, right axis: dev CER during training (★ the update kept, train.select = best-dev)"
    fig.suptitle(title, fontsize=10 if not dev_axes else 8, x=0.01, ha="left")
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------- intervals
def intervals(cells: Sequence[StoredCell], hypotheses: Mapping[str, Rows]) -> tuple[
        dict[str, Interval], dict[tuple[str, str, str, str], Interval]]:
    """The bootstrap intervals of test CER: key -> the cell's, and (protocol, model, dataset,
    language) -> the mean over seeds'; cells without stored test rows have none. Edit counts are
    computed once per cell."""
    tests = {c.key: EditCounts(hypotheses[c.key]) for c in cells if hypotheses.get(c.key)}
    per_cell = {key: interval_of(test) for key, test in tests.items()}
    groups: dict[tuple[str, str, str, str], list[EditCounts]] = {}
    for c in sorted(cells, key=lambda c: c.seed):
        if c.key in tests:
            groups.setdefault((c.protocol, c.model, c.dataset, c.language), []).append(tests[c.key])
    per_group = {key: interval for key, members in groups.items()
                 if (interval := mean_interval_of(members)) is not None}
    return per_cell, per_group
