"""Plan a run (resolve every name first, so typos fail before any work) and execute it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.api import DatasetRequest, DatasetSpec, DatasetSplits, MetricSpec, ModelSpec
from harness.config import RunConfig
from harness.errors import BenchError, did_you_mean
from harness.matrix import Cell, cell_identity, cell_key
from harness.plugins import Registered, Registry
from harness.progress import Progress
from harness.provenance import git_revision, machine, package_versions
from harness.store import ResultStore
from harness.train import CellOutcome, fine_tune_and_evaluate

ALL = "all"


@dataclass(frozen=True)
class PlannedCell:
    cell: Cell
    key: str
    identity: dict[str, Any]
    model: Registered[ModelSpec]
    dataset: Registered[DatasetSpec]
    model_options: Mapping[str, Any]
    dataset_options: Mapping[str, Any]


@dataclass(frozen=True)
class Plan:
    cells: tuple[PlannedCell, ...]
    metrics: tuple[MetricSpec, ...]


def _resolve_model(name: str, config: RunConfig, registry: Registry) -> tuple[Registered[ModelSpec], dict]:
    options = dict(config.model_options.get(name, {}))
    alias_of = options.pop("from", None)
    if alias_of is not None and name not in registry.models:
        if not isinstance(alias_of, str):
            raise BenchError(f"[models.{name}] from must be a model name such as 'hf:/path/to/checkpoint'")
        found = registry.model(alias_of)
        spec = dataclasses.replace(found.spec, name=name, metadata={**found.spec.metadata, "from": alias_of})
        return Registered(spec, found.origin), options
    return registry.model(name), options


def plan_run(config: RunConfig, registry: Registry) -> Plan:
    model_names = list(config.models)
    if ALL in model_names:
        aliases = [n for n, opts in config.model_options.items() if "from" in opts]
        model_names = sorted(set(registry.models) | set(aliases))
    model_names = registry.expand_models(model_names)
    models = {name: _resolve_model(name, config, registry) for name in model_names}

    dataset_names = sorted(registry.datasets) if ALL in config.datasets else list(config.datasets)
    datasets = {name: registry.dataset(name) for name in dataset_names}
    metrics = tuple(registry.metric(name).spec for name in config.metrics)

    cells: list[PlannedCell] = []
    for dname, dataset in datasets.items():
        options = dict(config.dataset_options.get(dname, {}))
        if dataset.spec.options:
            for key in options:
                if key not in dataset.spec.options:
                    raise BenchError(
                        f"[datasets.{dname}]: unknown option {key!r}.{did_you_mean(key, dataset.spec.options)}",
                        f"options of {dname}: {', '.join(dataset.spec.options)}",
                    )
        supported = dataset.spec.languages
        langs = list(supported) if ALL in config.langs else list(config.langs)
        for lang in langs:
            if lang not in supported:
                raise BenchError(
                    f"dataset {dname!r} has no language {lang!r}.{did_you_mean(lang, supported)} "
                    f"Languages of {dname}: {', '.join(supported)}.",
                    "choose --langs from that list (codes as in Common Voice), or --langs all",
                )
            for seed in config.seeds:
                for mname, (model, model_options) in models.items():
                    cell = Cell(mname, dname, lang, seed)
                    identity = cell_identity(
                        cell,
                        model_version=model.spec.version,
                        model_metadata=model.spec.metadata,
                        model_options=model_options,
                        dataset_version=dataset.spec.version,
                        dataset_options=options,
                        train=config.train,
                    )
                    cells.append(PlannedCell(cell, cell_key(identity), identity, model, dataset,
                                             model_options, options))
    return Plan(tuple(cells), metrics)


@dataclass(frozen=True)
class RunSummary:
    planned: int
    already_done: int
    computed: int
    seconds: float


def merge_skipped(*parts: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Sum skip counts by split and reason (the dataset's and the training loop's)."""
    out: dict[str, dict[str, int]] = {}
    for part in parts:
        for split, reasons in part.items():
            for reason, count in reasons.items():
                if count:
                    out.setdefault(split, {})[reason] = out.get(split, {}).get(reason, 0) + int(count)
    return out


def _record(planned: PlannedCell, outcome: CellOutcome, data: DatasetSplits, config: RunConfig) -> dict[str, Any]:
    device = outcome.train_info.get("device", "cpu")
    return {
        "identity": planned.identity,
        "model_origin": str(planned.model.origin),
        "dataset_origin": str(planned.dataset.origin),
        "data": dict(data.info),
        "skipped": merge_skipped(data.skipped, outcome.skipped),
        "vocabulary": list(outcome.vocabulary),
        "train": outcome.train_info,
        "eval": {n: {"utterances": r.utterances, "seconds": r.seconds} for n, r in outcome.splits.items()},
        "runtime": dataclasses.asdict(config.runtime),
        "preset": config.preset,
        "seed": planned.cell.seed,
        "packages": package_versions(),
        "git_revision": git_revision(),
        "machine": machine(device),
    }


def _data_request(planned: PlannedCell, config: RunConfig) -> DatasetRequest:
    cell = planned.cell
    return DatasetRequest(cell.language, cell.seed, planned.dataset_options, config.cache_dir / "datasets" / cell.dataset)


def execute(plan: Plan, config: RunConfig, store: ResultStore, progress: Progress | None = None) -> RunSummary:
    start = time.perf_counter()
    done = store.done_keys(c.key for c in plan.cells)
    pending = [c for c in plan.cells if c.key not in done]
    if progress:
        progress.log(f"{len(plan.cells)} cells planned, {len(done)} already in {store.path}, {len(pending)} to compute")
    checked: set = set()
    for planned in pending:  # fail on a missing checkpoint or data before computing anything
        cell = planned.cell
        if cell.model not in checked and planned.model.spec.check is not None:
            planned.model.spec.check()
        checked.add(cell.model)
        data_key = (cell.dataset, cell.language, repr(sorted(planned.dataset_options.items())))
        if data_key not in checked and planned.dataset.spec.check is not None:
            planned.dataset.spec.check(_data_request(planned, config))
        checked.add(data_key)
    data_memo: tuple[tuple, DatasetSplits] | None = None
    computed = 0
    for planned in pending:
        cell = planned.cell
        if progress:
            progress.start_cell(f"{cell.model} {cell.dataset}:{cell.language} seed {cell.seed}")
        cell_start = time.perf_counter()
        memo_key = (cell.dataset, cell.language, cell.seed, repr(sorted(planned.dataset_options.items())))
        if data_memo is None or data_memo[0] != memo_key:
            data_memo = (memo_key, planned.dataset.spec.load(_data_request(planned, config)))
        data = data_memo[1]
        outcome = fine_tune_and_evaluate(
            planned.model.spec.build, data, cell.language, cell.seed, config.train, config.runtime,
            plan.metrics, planned.model_options, progress,
        )
        metrics = {name: result.metrics for name, result in outcome.splits.items()}
        record = _record(planned, outcome, data, config)
        store.put(
            planned.key,
            model=cell.model, dataset=cell.dataset, language=cell.language, seed=cell.seed,
            metrics=metrics, record=record,
            hypotheses={name: result.hypotheses for name, result in outcome.splits.items()},
            duration_s=time.perf_counter() - cell_start,
        )
        computed += 1
        if progress:
            scores = " ".join(f"{m}={v:.3f}" for m, v in metrics.get("test", {}).items())
            skipped = "; ".join(f"{split}: " + ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
                                for split, reasons in record["skipped"].items())
            progress.finish_cell(f"done  {cell.label()}: test {scores} ({time.perf_counter() - cell_start:.0f} s)"
                                 + (f"; skipped {skipped}" if skipped else ""))
    return RunSummary(len(plan.cells), len(done), computed, time.perf_counter() - start)
