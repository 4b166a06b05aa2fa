"""Views of stored cells decoded by other decoders, from their stored outputs (no retraining).

For each stored cell and each requested decoder, :func:`decode_views` reads the cell's dev and
test log-probabilities and its training text from the outputs folder beside the store
(:mod:`harness.store.outputs`), builds the decoder for the cell (its language model, say), tunes
the decoder's tuned options on dev (:mod:`harness.decoding.tuning`), decodes test once with the
chosen values, and scores both splits with the run's metrics. The result is a
:class:`harness.store.StoredCell` whose ``decoder`` names the decoder (its protocol label is then
``PROTOCOL+DECODER``), so tables, statistics and comparisons keep decoders apart unchanged.

``greedy`` is the stored cell itself (its stored hypotheses and scores, exactly); when the cell
has stored outputs, they are decoded greedily once more to time greedy decoding, and a
difference from the stored hypotheses is reported (there should be none). Cells stored before
bench kept outputs are reported under ``greedy`` only, and a note says so.

Decoded views are cached beside the outputs (``<store>.outputs/decoded/``) by the digest of
everything they depend on (outputs, training text, decoder name, version and options, metric
versions), so ``bench run --decoders`` followed by ``bench report --decoders`` decodes once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.api import DecoderRequest, DecoderSpec, MetricSpec
from harness.decoding.tuning import grid, tune_on_dev
from harness.engine.scoring import Rows, score_splits
from harness.errors import BenchError
from harness.store.outputs import OutputStore
from harness.store.record import DecodingFacts
from harness.store.results import StoredCell

GREEDY = "greedy"


@dataclass(frozen=True)
class Decoder:
    """A requested decoder: its spec and options (its ``[decoders.NAME]`` over its defaults)."""

    spec: DecoderSpec
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class DecodedViews:
    #: the cells under every decoder (greedy first), in the order given
    cells: list[StoredCell]
    #: test rows (utterance, reference, hypothesis) per view key
    hypotheses: dict[str, list[tuple[str, str, str]]]
    notes: list[str]


def resolve_decoders(names: Sequence[str], registry, configured: Mapping[str, Mapping[str, Any]]) -> list[Decoder]:
    """The requested decoders with their options, checked (unknown option names, availability)."""
    from harness.errors import did_you_mean

    for section in configured:
        if section not in registry.decoders:
            raise BenchError(f"[decoders.{section}] names no registered decoder.{did_you_mean(section, registry.decoders)}",
                             f"known decoders: {', '.join(sorted(registry.decoders))} (bench list --decoders)")
    out = []
    for name in names:
        spec = registry.decoder(name).spec
        given = dict(configured.get(name, {}))
        unknown = sorted(set(given) - set(spec.defaults))
        if unknown:
            raise BenchError(f"decoder {name!r} has no option {unknown[0]!r}.{did_you_mean(unknown[0], spec.defaults)}",
                             f"its options: {', '.join(sorted(spec.defaults)) or '(none)'}")
        if spec.check is not None:
            spec.check()
        options = {**spec.defaults, **given}
        grid(options, spec.tuned)  # a malformed grid fails before anything is decoded
        if spec.check_options is not None:
            spec.check_options(options)
        out.append(Decoder(spec, options))
    return out


def _aligned(rows: Rows, log_probs: Mapping[str, Any], key: str, split: str) -> list:
    missing = [utt for utt, _, _ in rows if utt not in log_probs]
    if missing:
        raise BenchError(f"the stored outputs of cell {key} ({split}) lack utterance {missing[0]!r}",
                         "the outputs folder does not belong to this store: copy it with the store, or run the cell "
                         "again")
    return [log_probs[utt] for utt, _, _ in rows]


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class _Cache:
    """Decoded views beside the outputs; quietly off where the folder cannot be written."""

    def __init__(self, outputs: OutputStore) -> None:
        self.root = outputs.root / "decoded"

    def get(self, digest: str) -> dict | None:
        try:
            return json.loads((self.root / f"{digest}.json").read_text())
        except (OSError, ValueError):
            return None

    def put(self, digest: str, payload: dict) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            path = self.root / f"{digest}.json"
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(payload))
            os.replace(tmp, path)
        except OSError:
            pass


def decode_cell(cell: StoredCell, decoder: Decoder, rows: Mapping[str, Rows], outputs: OutputStore,
                metrics: Sequence[MetricSpec], tune_metric: MetricSpec | None, cache_dir: Path) -> dict:
    """Decode one cell's stored outputs with ``decoder``: scores, outputs summary, facts and
    hypotheses per split (a JSON-able dict, as cached)."""
    spec, options = decoder.spec, dict(decoder.options)
    record = cell.record
    log_probs = {split: outputs.log_probs(record.log_probs[split].sha256) for split in ("dev", "test")
                 if split in record.log_probs and split in rows}
    text = outputs.text(record.train_text.sha256) if record.train_text is not None else []
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    decode = spec.build(DecoderRequest(vocabulary=tuple(record.vocabulary), language=cell.language,
                                       train_text=text, options=options, cache_dir=cache_dir))
    seconds["build"] = time.perf_counter() - start
    points = grid(options, spec.tuned)
    weights: dict[str, float] = points[0] if len(points) == 1 else {}
    dev_score = None
    hyps: dict[str, list[str]] = {}
    if "dev" in log_probs:
        dev_rows = rows["dev"]
        dev = _aligned(dev_rows, log_probs["dev"], cell.key, "dev")
        start = time.perf_counter()
        if spec.tuned and len(points) > 1:
            if tune_metric is None:
                raise BenchError(f"decoder {spec.name!r} tunes on {spec.tune_metric}, which is not a registered metric",
                                 "install the metric's plugin")
            tuned = tune_on_dev(decode, dev, [r for _, r, _ in dev_rows], tune_metric.compute, points,
                                tune_metric.lower_is_better)
            weights, dev_score = tuned.weights, tuned.score
        hyps["dev"] = decode(dev, weights)  # the chosen point once more: its hypotheses for the view
        seconds["dev"] = time.perf_counter() - start
    elif spec.tuned and len(points) > 1:
        raise BenchError(f"cell {cell.key} has no stored dev outputs to tune {spec.name} on",
                         f"give single values for {', '.join(spec.tuned)} (--set decoders.{spec.name}.NAME=VALUE)")
    test = _aligned(rows["test"], log_probs["test"], cell.key, "test")
    start = time.perf_counter()
    hyps["test"] = decode(test, weights)  # once, with the values chosen on dev
    seconds["test"] = time.perf_counter() - start
    decoded = {split: [(utt, ref, hyp) for (utt, ref, _), hyp in zip(rows[split], hyps[split])] for split in hyps}
    scores, versions, summary = score_splits(metrics, decoded)
    facts = DecodingFacts(decoder=spec.name, version=spec.version, options=options, weights=weights,
                          tune_metric=spec.tune_metric if spec.tuned else None, dev_score=dev_score,
                          grid_points=len(points), seconds=seconds,
                          audio_seconds={s: record.eval[s].seconds for s in hyps if s in record.eval})
    return {"metrics": scores, "metric_versions": versions, "outputs": summary, "decoding": facts.to_json(),
            "hypotheses": {split: [list(r) for r in rs] for split, rs in decoded.items()}}


def decode_views(cells: Sequence[StoredCell], store, decoders: Sequence[Decoder], metrics: Sequence[MetricSpec],
                 cache_dir: Path, tune_metrics: Mapping[str, MetricSpec] | None = None,
                 log: Callable[[str], None] | None = None) -> DecodedViews:
    """Every cell under every decoder in ``decoders`` (see the module's docstring)."""
    outputs = OutputStore.beside(store.path)
    cache = _Cache(outputs)
    tune_metrics = dict(tune_metrics or {})
    views: list[StoredCell] = []
    hypotheses: dict[str, list[tuple[str, str, str]]] = {}
    without: list[StoredCell] = []
    mismatched: list[str] = []
    for decoder in decoders:
        for cell in cells:
            rows = {split: store.hypotheses(cell.key, split) for split in ("dev", "test")}
            if decoder.name == GREEDY and not cell.record.has_log_probs:
                views.append(cell)
                hypotheses[cell.key] = rows["test"]
                continue
            if not cell.record.has_log_probs:
                if cell not in without:
                    without.append(cell)
                continue
            digest = _digest({"cell": cell.key, "outputs": {s: f.sha256 for s, f in cell.record.log_probs.items()},
                              "text": cell.record.train_text.sha256 if cell.record.train_text else None,
                              "decoder": [decoder.name, decoder.spec.version, dict(decoder.options)],
                              "metrics": sorted((m.name, m.version) for m in metrics)})
            result = cache.get(digest)
            if result is None:
                if log is not None:
                    log(f"decoding {cell.model} {cell.dataset}:{cell.language} seed {cell.seed} with {decoder.name}")
                tune = tune_metrics.get(decoder.spec.tune_metric)
                result = decode_cell(cell, decoder, rows, outputs, metrics, tune, cache_dir)
                cache.put(digest, result)
            decoded = {split: [tuple(r) for r in rs] for split, rs in result["hypotheses"].items()}
            facts = DecodingFacts(**result["decoding"])
            if decoder.name == GREEDY:  # the stored cell exactly; the decoding only timed and checked
                if decoded.get("test") != [tuple(r) for r in rows["test"]]:
                    mismatched.append(cell.key)
                views.append(dataclasses.replace(cell, record=dataclasses.replace(cell.record, decoding=facts)))
                hypotheses[cell.key] = rows["test"]
                continue
            record = dataclasses.replace(cell.record, decoding=facts, metric_versions=result["metric_versions"],
                                         outputs=result["outputs"])
            key = f"{cell.key}+{decoder.name}"
            views.append(dataclasses.replace(cell, key=key, metrics=result["metrics"], record=record,
                                             decoder=decoder.name))
            hypotheses[key] = decoded["test"]
    notes = []
    if without and any(d.name != GREEDY for d in decoders):
        others = ", ".join(d.name for d in decoders if d.name != GREEDY)
        notes.append(f"{len(without)} cell(s) were computed before bench stored model outputs, so they are decoded "
                     f"greedily only (not by {others}): "
                     + ", ".join(f"{c.model} {c.language} seed {c.seed}" for c in without[:5])
                     + (" ..." if len(without) > 5 else "") + "; run them again (a new store) to decode them otherwise")
    if mismatched:
        notes.append(f"warning: greedy decoding of the stored outputs of {len(mismatched)} cell(s) differs from their "
                     "stored hypotheses (the stored ones are reported)")
    return DecodedViews(views, hypotheses, notes)


def speed_rows(cells: Sequence[StoredCell]) -> list[dict[str, Any]]:
    """Per decoder: seconds of decoding per hour of test audio (test decoded once), the dev
    tuning's grid size and seconds, and the mean chosen weights."""
    groups: dict[str, list[DecodingFacts]] = {}
    for c in cells:
        if c.record.decoding is not None:
            groups.setdefault(c.record.decoding.decoder, []).append(c.record.decoding)
    rows = []
    for name, facts in groups.items():
        test_s = sum(f.seconds.get("test", 0.0) for f in facts)
        test_h = sum(f.audio_seconds.get("test", 0.0) for f in facts) / 3600
        dev_s = sum(f.seconds.get("dev", 0.0) for f in facts)
        build_s = sum(f.seconds.get("build", 0.0) for f in facts)
        weights: dict[str, list[float]] = {}
        for f in facts:
            for k, v in f.weights.items():
                weights.setdefault(k, []).append(v)
        rows.append({"decoder": name, "cells": len(facts),
                     "seconds_per_audio_hour": test_s / test_h if test_h else math.nan,
                     "test_seconds": test_s, "dev_seconds": dev_s, "build_seconds": build_s,
                     "grid_points": max(f.grid_points for f in facts),
                     "weights": {k: sum(v) / len(v) for k, v in weights.items()}})
    return rows
